// The store's half of sequence tracking: each site's stream (seq_streams), its missing ranges
// (seq_missing) and the ranges it counted lost (seq_lost). The tracking itself is StreamTrack (sequence.cpp);
// this file loads it, applies one message and writes back what changed, inside the store's lock and one
// transaction (the message's own when the number came with one), so that instances sharing the database track
// one stream between them.

#include <map>

#include "monitor/iso_time.hpp"
#include "monitor/store.hpp"

namespace kg::monitor {

using sqlite::Stmt;

namespace {

TimePoint read_time(const std::string& text) { return parse_iso8601_utc(text).value_or(TimePoint{}); }

}  // namespace

std::optional<StreamTrack> Store::load_current_track(const std::string& site) {
    return load_track(site, nullptr);
}

std::optional<StreamTrack> Store::load_track(const std::string& site, const std::string* stream_id) {
    Stmt s(db_, stream_id
                    ? "SELECT stream, mark, top, lost FROM seq_streams WHERE site = ?1 AND stream = ?2"
                    : "SELECT stream, mark, top, lost FROM seq_streams WHERE site = ?1 AND current = 1");
    s.bind(1, site);
    if (stream_id) s.bind(2, *stream_id);
    if (!s.step()) return std::nullopt;
    const std::string stream = s.text(0);
    const std::int64_t mark = s.integer(1), top = s.integer(2), lost = s.integer(3);
    std::vector<MissingRange> missing;
    Stmt m(db_,
           "SELECT from_seq, to_seq, since, asked_at FROM seq_missing WHERE site = ? AND stream = ?"
           " ORDER BY from_seq");
    m.bind(1, site).bind(2, stream);
    while (m.step()) {
        MissingRange r{m.integer(0), m.integer(1), read_time(m.text(2)), std::nullopt};
        if (const auto asked = m.opt_text(3)) r.asked_at = read_time(*asked);
        missing.push_back(r);
    }
    return StreamTrack(stream, mark, top, lost, std::move(missing));
}

std::optional<TimePoint> Store::run_started(const std::string& site, const std::string& stream) {
    Stmt s(db_, "SELECT run_started FROM seq_streams WHERE site = ? AND stream = ?");
    s.bind(1, site).bind(2, stream);
    if (!s.step()) return std::nullopt;
    const auto text = s.opt_text(0);
    return text ? parse_iso8601_utc(*text) : std::nullopt;
}

std::optional<std::string> Store::site_following(const std::string& stream, const std::string& except) {
    Stmt s(db_, "SELECT site FROM seq_streams WHERE stream = ? AND site != ? AND current = 1 LIMIT 1");
    s.bind(1, stream).bind(2, except);
    if (!s.step()) return std::nullopt;
    return s.text(0);
}

bool Store::is_retired_stream(const std::string& site, const std::string& stream) {
    Stmt s(db_, "SELECT 1 FROM seq_streams WHERE site = ? AND stream = ? AND current = 0");
    s.bind(1, site).bind(2, stream);
    return s.step();
}

void Store::save_track(const std::string& site, const StreamTrack& before, const StreamTrack& after) {
    Stmt(db_, "UPDATE seq_streams SET mark = ?3, top = ?4, lost = ?5 WHERE site = ?1 AND stream = ?2")
        .bind(1, site)
        .bind(2, after.stream())
        .bind(3, after.mark())
        .bind(4, after.top())
        .bind(5, after.lost())
        .run();
    // Only the ranges that changed are written: one message touches one or two of them.
    std::map<std::int64_t, MissingRange> old;
    for (const auto& r : before.missing()) old[r.from] = r;
    std::map<std::int64_t, MissingRange> now;
    for (const auto& r : after.missing()) now[r.from] = r;
    for (const auto& [from, r] : old) {
        if (now.count(from)) continue;
        Stmt(db_, "DELETE FROM seq_missing WHERE site = ? AND stream = ? AND from_seq = ?")
            .bind(1, site)
            .bind(2, after.stream())
            .bind(3, from)
            .run();
    }
    for (const auto& [from, r] : now) {
        if (const auto it = old.find(from); it != old.end() && it->second == r) continue;
        Stmt s(db_,
               "INSERT OR REPLACE INTO seq_missing(site, stream, from_seq, to_seq, since, asked_at)"
               " VALUES(?,?,?,?,?,?)");
        s.bind(1, site).bind(2, after.stream()).bind(3, r.from).bind(4, r.to).bind(5, iso8601_utc(r.since));
        s.bind(6, r.asked_at ? std::optional<std::string>(iso8601_utc(*r.asked_at)) : std::nullopt).run();
    }
    save_lost(site, before, after);
}

void Store::save_lost(const std::string& site, const StreamTrack& before, const StreamTrack& after) {
    // A number is counted lost once: it left the missing ranges when it was, so the ranges written
    // here never overlap one already kept.
    const auto& lost = after.newly_lost();
    for (auto i = before.newly_lost().size(); i < lost.size(); ++i) {
        Stmt(db_, "INSERT OR REPLACE INTO seq_lost(site, stream, from_seq, to_seq) VALUES(?,?,?,?)")
            .bind(1, site)
            .bind(2, after.stream())
            .bind(3, lost[i].from)
            .bind(4, lost[i].to)
            .run();
    }
    if (lost.size() > before.newly_lost().size()) {
        // At most kMaxLostRanges: the lowest beyond them go (one walk of the primary key).
        Stmt oldest(db_,
                    "SELECT from_seq FROM seq_lost WHERE site = ? AND stream = ? ORDER BY from_seq DESC"
                    " LIMIT 1 OFFSET ?");
        oldest.bind(1, site).bind(2, after.stream()).bind(3, kMaxLostRanges);
        if (oldest.step()) {
            Stmt(db_, "DELETE FROM seq_lost WHERE site = ? AND stream = ? AND from_seq <= ?")
                .bind(1, site)
                .bind(2, after.stream())
                .bind(3, oldest.integer(0))
                .run();
        }
    }
}

bool Store::take_lost(const std::string& site, const std::string& stream, std::int64_t seq) {
    Stmt s(db_,
           "SELECT from_seq, to_seq FROM seq_lost WHERE site = ? AND stream = ? AND from_seq <= ?"
           " ORDER BY from_seq DESC LIMIT 1");
    s.bind(1, site).bind(2, stream).bind(3, seq);
    if (!s.step()) return false;
    const std::int64_t from = s.integer(0), to = s.integer(1);
    if (to < seq) return false;
    Stmt(db_, "DELETE FROM seq_lost WHERE site = ? AND stream = ? AND from_seq = ?")
        .bind(1, site)
        .bind(2, stream)
        .bind(3, from)
        .run();
    const auto keep = [&](std::int64_t lo, std::int64_t hi) {
        if (lo > hi) return;
        Stmt(db_, "INSERT INTO seq_lost(site, stream, from_seq, to_seq) VALUES(?,?,?,?)")
            .bind(1, site)
            .bind(2, stream)
            .bind(3, lo)
            .bind(4, hi)
            .run();
    };
    keep(from, seq - 1);
    keep(seq + 1, to);
    return true;
}

void Store::start_stream(const std::string& site, const StreamTrack& track, TimePoint now,
                         TrackResult& result) {
    Stmt(db_,
         "INSERT OR REPLACE INTO seq_streams(site, stream, mark, top, lost, started_at, current)"
         " VALUES(?,?,?,?,?,?,1)")
        .bind(1, site)
        .bind(2, track.stream())
        .bind(3, track.mark())
        .bind(4, track.top())
        .bind(5, track.lost())
        .bind(6, iso8601_utc(now))
        .run();
    Stmt(db_,
         "DELETE FROM seq_streams WHERE site = ?1 AND current = 0 AND stream NOT IN (SELECT stream FROM"
         " seq_streams WHERE site = ?1 AND current = 0 ORDER BY started_at DESC LIMIT ?2)")
        .bind(1, site)
        .bind(2, kRetiredStreams)
        .run();
    // The lost numbers of a stream no longer remembered: a late message of it is not recognised, so
    // nothing can be found among them. Those of the streams remembered stay (record_received).
    Stmt(db_,
         "DELETE FROM seq_lost WHERE site = ?1 AND stream <> ?2 AND stream NOT IN (SELECT stream FROM"
         " seq_streams WHERE site = ?1)")
        .bind(1, site)
        .bind(2, track.stream())
        .run();
    result.kind = TrackResult::Kind::started;
    result.changed = true;
}

void Store::retire_stream(const std::string& site, const StreamTrack& old, TimePoint now,
                          TrackResult& result) {
    // The site's outbox was replaced: the old stream's missing numbers went with it and will never
    // come. They are lost, no longer asked for.
    result.replaced_stream = old.stream();
    result.replaced_missing = old.missing_count();
    Stmt(db_, "DELETE FROM seq_missing WHERE site = ? AND stream = ?")
        .bind(1, site)
        .bind(2, old.stream())
        .run();
    Stmt(db_, "UPDATE seq_streams SET lost = lost + ?3 WHERE site = ?1 AND stream = ?2")
        .bind(1, site)
        .bind(2, old.stream())
        .bind(3, old.missing_count())
        .run();
    Stmt(db_, "UPDATE seq_streams SET current = 0 WHERE site = ?").bind(1, site).run();
    // Counted lost with the ones it lost before: a late message of one of them (the broker held it)
    // takes it off again.
    StreamTrack settled = old;
    settled.give_up_missed_before(TimePoint::max());
    save_lost(site, old, settled);
    end_alerts_of_replaced_outbox(site, now, result);
}

void Store::reinstate_stream(const std::string& site, std::optional<StreamTrack> current,
                             const StreamTrack& back, TimePoint now, TrackResult& result) {
    // The site's lost count carries on, as at any replacement; the returning stream's own missing
    // numbers were counted lost when it was retired, and a late one of them is still found.
    const std::int64_t lost = current ? current->lost() + current->missing_count() : back.lost();
    if (current) retire_stream(site, *current, now, result);
    Stmt(db_,
         "UPDATE seq_streams SET current = 1, lost = ?3, started_at = ?4 WHERE site = ?1 AND stream = ?2")
        .bind(1, site)
        .bind(2, back.stream())
        .bind(3, lost)
        .bind(4, iso8601_utc(now))
        .run();
    result.kind = TrackResult::Kind::started;
    result.reinstated = true;
    result.changed = true;
}

void Store::end_alerts_of_replaced_outbox(const std::string& site, TimePoint now, TrackResult& result) {
    // Every alert of the site still open belongs to the old stream: add_event records a message's
    // number before it stores the message, so the new stream's first alert is not among them. Their
    // ends were in the old outbox (or would have come from it after a crash), and the room would
    // show them open for good. The end time is the room's: when it learnt that no end will come.
    std::vector<EventMessage> ended;
    {
        Stmt s(db_,
               "SELECT id, source_kind, source, check_name, label, severity, start_time FROM alerts"
               " WHERE site = ? AND condition <> 'end'");
        s.bind(1, site);
        while (s.step()) {
            EventMessage m;
            m.id = s.text(0);
            m.site = site;
            m.source_kind = s.text(1);
            m.source = s.text(2);
            m.check = s.text(3);
            m.label = s.text(4);
            m.severity = static_cast<int>(s.integer(5));
            m.start_time = s.text(6);
            m.state = "end";
            m.end_reason = kEndOutboxReplaced;
            ended.push_back(std::move(m));
        }
    }
    for (const auto& m : ended) {
        end_as_outbox_replaced(m, now);
        result.ended_alerts.push_back(m.id);
    }
}

void Store::end_as_outbox_replaced(const EventMessage& alert, TimePoint now) {
    Stmt(db_,
         "UPDATE alerts SET condition = 'end', end_time = ?2, end_reason = ?3, updated_at = ?2 WHERE id = ?1")
        .bind(1, alert.id)
        .bind(2, iso8601_utc(now))
        .bind(3, std::string(kEndOutboxReplaced))
        .run();
    EventMessage end = alert;
    end.state = "end";
    end.end_reason = kEndOutboxReplaced;
    queue_notifications(end, IngestOutcome::updated, now);
}

void Store::add_seq_assumed() {
    // Per site, the numbers 1..upto its current stream was taken to have delivered before the room
    // watched, when a numbered message came before its first `gateway` message, which decides
    // (StreamTrack::reopen_first). Also made where it is written: a start that found the file busy
    // went on without it. Once a run: every gateway message asks.
    if (seq_assumed_made_) return;
    db_.exec(
        "CREATE TABLE IF NOT EXISTS seq_assumed (site TEXT PRIMARY KEY, stream TEXT NOT NULL, upto INTEGER "
        "NOT NULL)");
    seq_assumed_made_ = true;
}

bool Store::began_while_watching(const Sequence& s) const {
    return s.started && watching_since_ && *s.started >= *watching_since_;
}

std::optional<std::int64_t> Store::take_assumed(const std::string& site, const std::string& stream) {
    std::optional<std::int64_t> upto;
    add_seq_assumed();
    {
        Stmt q(db_, "SELECT upto FROM seq_assumed WHERE site = ? AND stream = ?");
        q.bind(1, site).bind(2, stream);
        if (q.step()) upto = q.integer(0);
    }
    // Decided by this gateway message, whatever it says; a row of a replaced stream goes too.
    if (upto) Stmt(db_, "DELETE FROM seq_assumed WHERE site = ?").bind(1, site).run();
    return upto;
}

template <typename Apply>
TrackResult Store::apply_track(const std::string& site, const Sequence& s, Creates creates, TimePoint now,
                               Apply apply) {
    ensure_site(site);
    TrackResult result;
    auto track = load_current_track(site);
    if (!track || track->stream() != s.stream) {
        if (creates == Creates::never) return result;
        if (is_retired_stream(site, s.stream)) {
            auto back = load_track(site, &s.stream);
            // A stream the site replaced is live again when the site's `gateway` message names it
            // from a run of the gateway that began after the run of the current stream: its outbox
            // came back (a disk mounted late, a folder mended and the gateway restarted). Left
            // retired, each new alert of it was stored ended and its losses went unasked (the 55th
            // session's review). A late copy of its old `gateway` message (another instance of a
            // share group lagging, a broker node's retained copy) is of a run that began before,
            // as is a numbered message of it, which says no run at all; and of two gateways with
            // one site id, the one started first never takes the site back.
            const auto current_run = track ? run_started(site, track->stream()) : std::nullopt;
            if (!back || creates != Creates::from_gateway || !s.run_started || !current_run ||
                *s.run_started <= *current_run || s.seq < back->top()) {
                result.retired_stream = true;
                return result;
            }
            reinstate_stream(site, std::move(track), *back, now, result);
            track = load_current_track(site);
        } else if (track) {
            // A site the room follows: the new stream is numbered from 1, and what the room has not
            // seen of it is missing (asked for), not taken as delivered.
            retire_stream(site, *track, now, result);
            track = StreamTrack::replacing(s.stream, track->lost() + track->missing_count());
        } else if (auto other = site_following(s.stream, site)) {
            // The stream of a site the room follows under another id: the gateway's site.id
            // changed. Its numbers so far were delivered under that id, and a replay of them goes
            // out under it too (the outbox keeps each message's topic). Followed from its first
            // number here, they were asked for every 5 minutes for a day, each answer counted a
            // duplicate of the other site, then declared lost (the months review).
            track = creates == Creates::from_gateway ? StreamTrack::from_gateway(s.stream, s.seq)
                                                     : StreamTrack::from_message(s.stream, s.seq);
            result.renamed_from = std::move(*other);
        } else if (began_while_watching(s)) {
            // A site new to the room whose stream began after the room started watching: its first
            // numbers were sent to the room, and those it has not seen (a broker without
            // persistence that restarted while the room was away lost them) are missing.
            track = StreamTrack::from_start(s.stream);
            result.from_first = true;
        } else {
            // A site the room has never followed (a monitor deployed after its gateway): what came
            // before was delivered before the room watched.
            track = creates == Creates::from_gateway ? StreamTrack::from_gateway(s.stream, s.seq)
                                                     : StreamTrack::from_message(s.stream, s.seq);
            // Heard of through a numbered message, which does not say when its stream began: the
            // site's first `gateway` message will.
            if (creates == Creates::from_message && track->mark() > 0) {
                add_seq_assumed();
                Stmt(db_, "INSERT OR REPLACE INTO seq_assumed(site, stream, upto) VALUES(?,?,?)")
                    .bind(1, site)
                    .bind(2, s.stream)
                    .bind(3, track->mark())
                    .run();
            }
        }
        if (!result.reinstated) start_stream(site, *track, now, result);
    } else {
        result.kind = TrackResult::Kind::tracked;
    }
    std::optional<std::int64_t> reopen;
    if (creates == Creates::from_gateway && result.kind == TrackResult::Kind::tracked) {
        if (const auto upto = take_assumed(site, s.stream); upto && began_while_watching(s)) reopen = upto;
    }
    const StreamTrack before = *track;
    std::optional<GivenUp> reopened_given_up;
    if (reopen) {
        track->reopen_first(*reopen, now, &reopened_given_up);
        result.from_first = true;
    }
    apply(*track, result);
    if (reopened_given_up) {
        // Both gave up numbers (the reopened ones are the oldest): one report of all of them.
        if (result.given_up) {
            result.given_up->from = std::min(result.given_up->from, reopened_given_up->from);
            result.given_up->to = std::max(result.given_up->to, reopened_given_up->to);
            result.given_up->count += reopened_given_up->count;
        } else {
            result.given_up = reopened_given_up;
        }
    }
    if (track->missing_count() != before.missing_count() || track->lost() != before.lost())
        result.changed = true;
    save_track(site, before, *track);
    if (creates == Creates::from_gateway && s.run_started) {
        // The latest run heard of on this stream (a gateway's clock may step back: never lowered).
        Stmt(db_,
             "UPDATE seq_streams SET run_started = ?3 WHERE site = ?1 AND stream = ?2 AND"
             " (run_started IS NULL OR run_started < ?3)")
            .bind(1, site)
            .bind(2, track->stream())
            .bind(3, iso8601_utc(*s.run_started))
            .run();
    }
    return result;
}

TrackResult Store::record_received(const std::string& site, const Sequence& s, TimePoint now) {
    auto result = apply_track(site, s, Creates::from_message, now, [&](StreamTrack& t, TrackResult& r) {
        // Not new: a copy (QoS 1, a replay answer), or a number counted lost that came after all.
        if (!t.receive(s.seq, now, &r.given_up) && take_lost(site, t.stream(), s.seq)) {
            t.found_lost(1);
            r.found = s.seq;
        }
    });
    // A late message of a stream the site replaced: its number was counted lost, by the old stream
    // or at the replacement, and the site's count (which the current stream carries on) drops.
    if (result.retired_stream && take_lost(site, s.stream, s.seq)) {
        if (auto current = load_current_track(site)) {
            const StreamTrack before = *current;
            current->found_lost(1);
            save_track(site, before, *current);
        }
        Stmt(db_, "UPDATE seq_streams SET lost = max(lost - 1, 0) WHERE site = ? AND stream = ?")
            .bind(1, site)
            .bind(2, s.stream)
            .run();
        result.found = s.seq;
        result.changed = true;
    }
    return result;
}

TrackResult Store::record_sent(const std::string& site, const Sequence& s, TimePoint now) {
    return apply_track(site, s, Creates::from_gateway, now,
                       [&](StreamTrack& t, TrackResult& r) { t.sent_up_to(s.seq, now, &r.given_up); });
}

TrackResult Store::track_received(const std::string& site, const Sequence& s, TimePoint now) {
    return in_transaction([&] { return record_received(site, s, now); });
}

TrackResult Store::track_lost(const std::string& site, const std::string& stream, std::int64_t from,
                              std::int64_t to, TimePoint now) {
    return in_transaction([&] {
        return apply_track(site, {stream, from}, Creates::never, now, [&](StreamTrack& t, TrackResult& r) {
            r.lost = t.lose(from, to, now, &r.given_up);
        });
    });
}

std::vector<DueReplay> Store::due_replays(TimePoint now, Duration after, Duration every) {
    std::lock_guard lock(mutex_);
    std::vector<std::string> sites;
    {
        Stmt s(db_, "SELECT DISTINCT site FROM seq_missing ORDER BY site");
        while (s.step()) sites.push_back(s.text(0));
    }
    std::vector<DueReplay> out;
    for (const auto& site : sites) {
        const auto track = load_current_track(site);
        if (!track) continue;
        auto ranges = track->due(now, after, every);
        if (!ranges.empty()) out.push_back({site, track->stream(), std::move(ranges)});
    }
    return out;
}

std::vector<GaveUp> Store::give_up_missed_before(TimePoint cutoff) {
    std::lock_guard lock(mutex_);
    std::vector<std::string> sites;
    {
        // Times are stored in one fixed-width UTC format, so text order is time order.
        Stmt s(db_, "SELECT DISTINCT site FROM seq_missing WHERE since <= ? ORDER BY site");
        s.bind(1, iso8601_utc(cutoff));
        while (s.step()) sites.push_back(s.text(0));
    }
    std::vector<GaveUp> out;
    for (const auto& site : sites) {
        sqlite::Transaction tx(db_);
        auto track = load_current_track(site);
        if (!track) continue;
        const StreamTrack before = *track;
        auto ranges = track->give_up_missed_before(cutoff);
        save_track(site, before, *track);
        tx.commit();
        if (!ranges.empty()) out.push_back({site, track->stream(), std::move(ranges)});
    }
    return out;
}

void Store::mark_asked(const std::string& site, const std::string& stream, std::int64_t from, std::int64_t to,
                       TimePoint now) {
    in_transaction([&] {
        return apply_track(site, {stream, from}, Creates::never, now,
                           [&](StreamTrack& t, TrackResult&) { t.asked(from, to, now); });
    });
}

std::optional<StreamTrack> Store::stream_track(const std::string& site) {
    std::lock_guard lock(mutex_);
    return load_current_track(site);
}

}  // namespace kg::monitor
