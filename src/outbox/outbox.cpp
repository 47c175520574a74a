#include "outbox/outbox.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <nlohmann/json.hpp>
#include <utility>

#include "outbox/open_record.hpp"
#include "publish/payloads.hpp"

namespace kg::outbox {
namespace {
// How often the sender looks up from a delivery it waits on (stop, connection lost).
constexpr auto kAckPoll = std::chrono::milliseconds(200);
constexpr auto kRetryPause = std::chrono::milliseconds(200);
// A head message in flight when the connection dropped this many times in a row is taken for one
// the broker refuses by disconnecting (over its max_packet_size, denied by an ACL that
// disconnects); it is moved aside so that the messages behind it flow on.
constexpr int kMaxLossesInFlight = 3;
// Once a message of some size was moved aside, one loss is enough for a message at least as large:
// a broker's max_packet_size refuses every snapshot, and three reconnects for each would let them
// pile up faster than they are moved aside. Until a message that large is acknowledged again.
constexpr int kMaxLossesAtRefusedSize = 1;
// An alert is a small message no broker refuses for its size: a link that drops while one is in
// flight is taken for a bad link far longer before the alert is moved aside, never after one loss.
constexpr int kMaxLossesForAnAlert = 10;
constexpr auto kStoreErrorPause = std::chrono::seconds(1);
}  // namespace

const Overflow::Limits Outbox::kOverflowLimits{};

Outbox::Outbox(SqliteStore& store, publish::MqttLink& link, publish::Topics topics, std::string site,
               std::shared_ptr<spdlog::logger> log)
    : store_(store),
      link_(link),
      topics_(std::move(topics)),
      site_(std::move(site)),
      log_(std::move(log)),
      overflow_(kOverflowLimits),
      last_stream_seq_(store_.last_stream_seq()),
      acknowledged_(store_.highest_acknowledged()) {}

Outbox::~Outbox() { stop(std::chrono::milliseconds(0)); }

void Outbox::submit(const events::Event& event) {
    Message message{0, topics_.events(), publish::event_payload(event, site_), 1, false, Priority::alert};
    if (event.state == events::EventState::end) {
        message.open_event = {OpenEventMark::Kind::close, event.id, {}};
    } else {
        // An update refreshes the record: an end after a crash carries the scores last sent.
        message.open_event = {OpenEventMark::Kind::open, event.id, open_record(event)};
    }
    if (event.state == events::EventState::start && !event.evidence.clip.empty()) {
        // The start promises the room a clip report: recorded with it, so that a run that dies
        // before the clip is cut leaves the next start a report to send.
        message.clip = {ClipMark::Kind::pending, event.id, clip_record(event)};
    }
    if (accept(std::move(message), true)) {
        // Logged once committed: this line is the gateway's promise that the message will arrive.
        log_->info("event {} queued: {}/{}/{} score {:.2f}", event.message_id(), event.source, event.check,
                   event.label, event.score);
    }
}

void Outbox::submit_snapshot(const events::Event& event, std::string jpeg) {
    enqueue({0, topics_.event_snapshot(event.id), std::move(jpeg), 1, false, Priority::evidence});
}

void Outbox::submit_clip(const events::ClipReport& clip) {
    auto payload = publish::clip_payload(clip, site_);
    Message message{0, topics_.event_clip(clip.event_id), std::move(payload), 1, false, Priority::evidence};
    // Written or not, the clip is reported: the next start has nothing to report for it.
    message.clip = {ClipMark::Kind::reported, clip.event_id, {}};
    accept(std::move(message), true);
}

void Outbox::number(Message& message) {
    message.stream_seq = ++last_stream_seq_;
    // The payloads are this project's own JSON objects (publish/payloads.cpp): the two fields go in
    // before the closing brace, without parsing the message again.
    if (message.payload.empty() || message.payload.back() != '}')
        throw std::logic_error("a numbered message must be a JSON object: " + message.topic);
    message.payload.pop_back();
    fmt::format_to(std::back_inserter(message.payload), R"(,"stream":"{}","seq":{}}})", store_.stream(),
                   message.stream_seq);
}

bool Outbox::accept(Message message, bool numbered) {
    {
        // One producer at a time: what the store could not take stays ahead of what comes after it,
        // and the numbers follow that order.
        std::lock_guard order(enqueue_mutex_);
        if (numbered) number(message);
        if (overflow_.size() > 0) flush_overflow();
        const auto appended = overflow_.size() > 0 ? Appended::store_failed : append(message);
        if (appended == Appended::refused) return false;
        if (appended == Appended::store_failed && !keep_in_memory(std::move(message))) return false;
    }
    {
        std::lock_guard lock(mutex_);  // orders the wake-up after the sender's check
        ++submissions_;
    }
    cv_.notify_all();
    return true;
}

std::size_t Outbox::queue_answers(std::vector<Message> messages) {
    if (messages.empty()) return 0;
    std::size_t accepted = 0;
    {
        std::lock_guard order(enqueue_mutex_);
        if (overflow_.size() > 0) flush_overflow();
        // The memory overflow is for live messages: an answer it took could push them out, and the
        // room asks again for what is not answered.
        if (overflow_.size() > 0) throw StoreError("the outbox store fails (messages wait in memory)");
        try {
            std::size_t refused = 0, dropped = 0;
            for (const auto& r : store_.append_all(messages)) {
                refused += r.stored ? 0 : 1;
                dropped += r.dropped;
            }
            store_recovered();
            accepted = messages.size() - refused;
            if (refused > 0 || dropped > 0) {
                log_->error(
                    "outbox full: {} of {} replay answers refused, {} older replay answers dropped for them",
                    refused, messages.size(), dropped);
            }
        } catch (const StoreError& e) {
            store_failed(e.what());
            throw;
        }
    }
    {
        std::lock_guard lock(mutex_);  // orders the wake-up after the sender's check
        ++submissions_;
    }
    cv_.notify_all();
    return accepted;
}

Outbox::Appended Outbox::append(Message& message) {
    try {
        const auto result = store_.append(message);
        store_recovered();
        if (!result.stored) {
            const std::size_t size = message.payload.size() + message.topic.size();
            const std::size_t budget = store_.limits().max_bytes;
            // Once a minute at most: a queue full for days of an outage refused every roll-up, each
            // a line (the review of the 53rd session: thousands a day).
            if (refused_lines_.pass() > 0)
                log_->error(
                    "outbox full: refused a message of {} bytes for {}: {} ({} refused in total; said at "
                    "most "
                    "once a minute)",
                    size, message.topic,
                    size > budget ? fmt::format("it alone exceeds outbox.max_size ({} bytes)", budget)
                                  : std::string("only more important messages could make room for it"),
                    store_.refused_total());
            return Appended::refused;  // for good, not a failure of the store
        }
        if (result.dropped > 0 && dropped_lines_.pass() > 0) {
            log_->error(
                "outbox full: dropped {} older messages to keep {} ({} dropped in total; said at most once a "
                "minute)",
                result.dropped, message.topic, store_.dropped_total());
        }
        return Appended::stored;
    } catch (const StoreError& e) {
        store_failed(e.what());
        return Appended::store_failed;
    }
}

bool Outbox::keep_in_memory(Message message) {
    const auto topic = message.topic;
    const auto pushed = overflow_.push(std::move(message));
    if (!pushed.kept) {
        log_->error(
            "message for {} lost: the outbox store fails and the memory overflow is full ({} lost in total)",
            topic, overflow_.dropped_total());
        return false;
    }
    if (pushed.dropped > 0) {
        log_->error("outbox memory overflow full: dropped {} older messages to keep {}", pushed.dropped,
                    topic);
    }
    return true;
}

void Outbox::flush_overflow() {
    // In chunks, one transaction each: a commit per message held the producers' lock for 10 000
    // syncs after a full disk was mended (minutes on an SD card), and every camera's analysis and
    // the supervision tick, which feeds the watchdog, with it.
    // Messages wait in memory only because the store failed, and it may still (a store that
    // removed a sent message can still be too full to add one): one message first, doubling while
    // they go in (a disk with room for a few takes them); one failure ends the try. Trying 500 and
    // halving cost nine failed transactions of up to 64 MiB each, on every producer's call.
    constexpr std::size_t kChunk = 500;
    std::size_t chunk_size = 1;
    std::size_t moved = 0, refused = 0, dropped = 0;
    for (;;) {
        auto chunk = overflow_.first(chunk_size);
        if (chunk.empty()) break;
        std::vector<std::int64_t> ids;
        ids.reserve(chunk.size());
        for (auto& m : chunk) ids.push_back(std::exchange(m.seq, 0));
        std::vector<SqliteStore::Appended> results;
        try {
            results = store_.append_all(chunk);
            store_recovered();
        } catch (const StoreError& e) {
            store_failed(e.what());
            break;
        }
        chunk_size = std::min(kChunk, chunk_size * 2);
        for (std::size_t i = 0; i < ids.size(); ++i) {
            overflow_.pop(ids[i]);  // stored, or refused by the budget for good (counted below)
            refused += results[i].stored ? 0 : 1;
            dropped += results[i].dropped;
        }
        moved += ids.size();
    }
    if (refused > 0 || dropped > 0) {
        log_->error(
            "outbox full: of the messages moved from memory, {} refused (only more important messages could "
            "make room for them, or one alone exceeds outbox.max_size), {} older messages dropped for them "
            "({} refused and {} dropped in total)",
            refused, dropped, store_.refused_total(), store_.dropped_total());
    }
    if (moved > 0) log_->info("{} messages moved from memory into the outbox store", moved - refused);
}

void Outbox::store_failed(const std::string& error) {
    store_errors_.fetch_add(1);
    std::lock_guard lock(problem_mutex_);
    if (store_problem_.empty()) {
        log_->error("outbox store failing: {}; messages are kept in memory (up to {}) and sent from there",
                    error, kOverflowLimits.max_messages);
    }
    store_problem_ = error;
}

void Outbox::store_recovered() {
    std::lock_guard lock(problem_mutex_);
    if (store_problem_.empty()) return;
    store_problem_.clear();
    log_->info("outbox store works again");
}

std::optional<std::string> Outbox::store_problem() const {
    std::lock_guard lock(problem_mutex_);
    if (store_problem_.empty()) return std::nullopt;
    return fmt::format("outbox store failing ({} messages kept in memory): {}", overflow_.size(),
                       store_problem_);
}

std::vector<events::Event> Outbox::left_open(TimePoint now, const std::string& reason,
                                             const std::set<std::string>& except) {
    std::vector<events::Event> ends;
    try {
        for (const auto& open : store_.open_events()) {
            if (except.count(open.id) > 0) continue;
            try {
                ends.push_back(end_from_record(open.id, open.record, now, reason));
            } catch (const std::runtime_error& e) {
                // Written by another version, or damaged: never readable, so not kept for ever.
                log_->error("{}; no end is sent for it", e.what());
                store_.forget_open_event(open.id);
            }
        }
    } catch (const StoreError& e) {
        store_failed(e.what());
        log_->error("cannot read the events the previous run left open ({}): they are ended at a later start",
                    e.what());
    }
    if (!ends.empty()) {
        log_->warn(
            "{} event(s) left open in the room by the previous run (it did not stop cleanly, or their ends "
            "were "
            "dropped from a full outbox or moved aside): ending them with '{}'",
            ends.size(), reason);
    }
    return ends;
}

std::vector<events::ClipReport> Outbox::clips_left_pending(const std::string& error) {
    std::vector<events::ClipReport> reports;
    try {
        for (const auto& pending : store_.pending_clips()) {
            try {
                reports.push_back(clip_from_record(pending.id, pending.record, error));
            } catch (const std::runtime_error& e) {
                log_->error("{}; no clip report is sent for it", e.what());
                store_.forget_pending_clip(pending.id);
            }
        }
    } catch (const StoreError& e) {
        store_failed(e.what());
        log_->error(
            "cannot read the clips the previous run left pending ({}): they are reported at a later start",
            e.what());
    }
    if (!reports.empty()) {
        log_->warn("{} clip(s) promised by the previous run were never reported (it did not stop cleanly)",
                   reports.size());
    }
    return reports;
}

// A replayed `start` whose snapshot the evidence folder may still hold: (id, relative path). Only
// the name the gateway gives a start snapshot, inside the folder: the path is read from the
// outbox's own database, but a damaged or foreign one must not make the gateway publish any file.
void Outbox::note_snapshot(const std::string& payload,
                           std::vector<std::pair<std::string, std::string>>& out) {
    const auto j = nlohmann::json::parse(payload, nullptr, false);
    if (!j.is_object()) return;
    const auto state = j.find("state");
    const auto id = j.find("id");
    const auto evidence = j.find("evidence");
    if (state == j.end() || !state->is_string() || *state != "start" || id == j.end() || !id->is_string() ||
        evidence == j.end() || !evidence->is_object())
        return;
    const auto snapshot = evidence->find("snapshot");
    if (snapshot == evidence->end() || !snapshot->is_string()) return;
    const std::filesystem::path path(snapshot->get<std::string>());
    const auto normal = path.lexically_normal();
    if (path.is_absolute() || normal.empty() || *normal.begin() == ".." ||
        path.filename() != id->get<std::string>() + "-start.jpg")
        return;
    out.emplace_back(id->get<std::string>(), normal.string());
}

// After the whole answer, so that no alert's copy waits behind pictures; only into room the queue
// has free (at most half of it), so that a picture never pushes out a message, an alert's copy
// least of all; in batches of a few MiB, one commit each, asking `stopping` between them. A picture
// refused, or a store that fails, ends the pictures of this answer: the room cannot ask for them,
// and the next request that replays their starts brings them.
void Outbox::queue_snapshots(const std::vector<std::pair<std::string, std::string>>& snapshots,
                             const std::function<bool()>& stopping, ReplayAnswer& a) {
    constexpr std::size_t kBatchBytes = 4u << 20;
    const auto& limits = store_.limits();
    std::vector<Message> batch;
    std::size_t batch_bytes = 0;
    const auto flush = [&] {
        if (batch.empty()) return true;
        const auto n = batch.size();
        const auto accepted = queue_answers(std::move(batch));
        a.snapshots += accepted;
        batch.clear();
        batch_bytes = 0;
        return accepted == n;
    };
    try {
        for (const auto& [id, relative] : snapshots) {
            if (stopping && stopping()) break;
            auto jpeg = snapshot_reader_(relative);
            if (!jpeg) continue;
            if (store_.bytes() + batch_bytes + jpeg->size() > limits.max_bytes / 2 ||
                store_.size() + batch.size() + 1 > limits.max_messages / 2) {
                log_->warn(
                    "replay: start snapshots left out from {}: the outbox has no room for them to spare", id);
                break;
            }
            batch_bytes += jpeg->size();
            batch.push_back({0, topics_.event_snapshot(id), std::move(*jpeg), 1, false, Priority::replay});
            if (batch_bytes >= kBatchBytes && !flush()) break;
        }
        flush();
    } catch (const StoreError& e) {
        log_->warn("replay: start snapshots left out: {}", e.what());
    }
}

Outbox::ReplayAnswer Outbox::answer(const ReplayRequest& request, TimePoint now,
                                    const std::function<bool()>& stopping) {
    ReplayAnswer a;
    std::vector<Message> out;  // the answers of one chunk, committed together
    const auto lost = [&](std::int64_t from, std::int64_t to, const char* reason) {
        const publish::Lost l{request.stream, from, to, reason, request.request_id};
        out.push_back({0, topics_.lost(), publish::lost_payload(l, site_, now), 1, false, Priority::replay});
        a.lost += static_cast<std::size_t>(to - from + 1);
        ++a.lost_messages;
    };
    if (request.stream != store_.stream()) {
        // Its outbox was replaced (moved aside as corrupt, deleted): nothing of it can come again.
        lost(request.from, request.to, "unknown stream");
        queue_answers(std::move(out));
        return a;
    }
    std::int64_t to = 0;
    {
        std::lock_guard order(enqueue_mutex_);
        to = std::min(request.to, last_stream_seq_);
    }
    a.ignored = static_cast<std::size_t>(request.to - std::max(to, request.from - 1));
    const auto among = [](const std::vector<std::int64_t>& v, std::int64_t n) {
        return std::binary_search(v.begin(), v.end(), n);
    };
    std::int64_t run_from = 0;  // the lost run being gathered (it may span chunks), 0 if none
    const char* run_reason = nullptr;
    const auto end_run = [&](std::int64_t last) {
        if (run_from > 0) lost(run_from, last, run_reason);
        run_from = 0;
    };
    // In chunks: a request of 10000 kept messages would hold them all in memory at once. Each number
    // is looked up once, so one moving from queued to sent between two chunks is still seen once.
    constexpr std::int64_t kChunk = 500;
    std::vector<std::pair<std::string, std::string>> snapshots;  // (event id, path) of replayed starts
    for (std::int64_t first = request.from; first <= to; first += kChunk) {
        if (first > request.from && stopping && stopping()) {
            // What was answered is queued; the room asks again for the rest.
            a.stopped_at = first;
            return a;
        }
        const std::int64_t last = std::min(to, first + kChunk - 1);
        SqliteStore::Whereabouts where;
        {
            // Nothing moves from memory into the store meanwhile, and nothing waits there: numbers
            // held in memory would be missing from the store's answer.
            std::lock_guard order(enqueue_mutex_);
            if (overflow_.size() > 0) throw StoreError("the outbox store fails (messages wait in memory)");
            where = store_.whereabouts(
                first, last,
                std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
        }
        auto kept = where.kept.begin();
        for (std::int64_t n = first; n <= last; ++n) {
            const bool is_kept = kept != where.kept.end() && kept->stream_seq == n;
            // Queued first: a kept message may have a replayed copy of itself still queued.
            if (among(where.queued, n)) {  // on its way
                end_run(n - 1);
                ++a.queued;
                if (is_kept) ++kept;
                continue;
            }
            if (is_kept) {
                end_run(n - 1);
                if (snapshot_reader_ && kept->topic == topics_.events())
                    note_snapshot(kept->payload, snapshots);
                // Unchanged: the same message_id, stream, seq and topic; receivers deduplicate. It
                // keeps its number, so that a request while it is queued finds it on its way.
                out.push_back(
                    {0, std::move(kept->topic), std::move(kept->payload), 1, false, Priority::replay});
                out.back().stream_seq = n;
                ++a.replayed;
                ++kept;
                continue;
            }
            const char* reason = among(where.dead, n) ? "moved aside" : "not kept";
            if (run_from > 0 && reason != run_reason) end_run(n - 1);
            if (run_from == 0) {
                run_from = n;
                run_reason = reason;
            }
        }
        queue_answers(std::move(out));
        out.clear();
    }
    end_run(to);
    queue_answers(std::move(out));
    queue_snapshots(snapshots, stopping, a);
    return a;
}

void Outbox::start() {
    if (const auto n = store_.size(); n > 0)
        log_->info("{} messages queued by an earlier run (before a restart or reload) wait to be sent", n);
    thread_ = std::thread([this] { run(); });
}

void Outbox::stop(std::chrono::milliseconds drain) {
    if (!thread_.joinable()) return;
    const auto deadline = std::chrono::steady_clock::now() + drain;
    while (std::chrono::steady_clock::now() < deadline && depth() > 0 && link_.connected()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    {
        std::lock_guard order(enqueue_mutex_);
        if (overflow_.size() > 0) flush_overflow();
    }
    settle_with_store();
    if (!unsettled_.empty()) {
        log_->error(
            "{} ends or clip reports delivered while the outbox store failed are not in its records: "
            "the next start sends them again",
            unsettled_.size());
    }
    if (const auto n = overflow_.size(); n > 0)
        log_->error("{} messages held in memory are lost: the outbox store still fails", n);
    if (const auto n = store_.size(); n > 0)
        log_->warn("{} messages kept in the outbox for the next start", n);
}

void Outbox::set_aside(const Message& head, int losses) {
    const auto reason = fmt::format("the connection was lost {} times while it was in flight", losses);
    std::size_t pruned = 0;
    try {
        pruned = store_.bury(head, reason);
    } catch (const StoreError& e) {
        // Not moved: it stays at the head and is tried again, as before.
        store_failed(e.what());
        log_->error("cannot move message {} for {} aside: {}", head.seq, head.topic, e.what());
        return;
    }
    if (head.seq < 0) overflow_.pop(head.seq);
    smallest_refused_ = std::min(smallest_refused_, head.payload.size() + head.topic.size());
    log_->error(
        "message {} for {} ({} bytes) moved aside to the outbox's dead table: {}; the broker seems to refuse "
        "it (its max_packet_size or an ACL?); {} moved aside in total",
        head.seq, head.topic, head.payload.size() + head.topic.size(), reason, store_.dead_total());
    if (pruned > 0) {
        log_->warn("the outbox's dead table is full ({} messages or {} MiB): its {} oldest were deleted",
                   store_.limits().max_dead, store_.limits().max_dead_bytes >> 20, pruned);
    }
}

std::size_t Outbox::requeue_dead() {
    std::size_t back = 0;
    {
        std::lock_guard order(enqueue_mutex_);  // in order with what is submitted meanwhile
        back = store_.requeue_dead();
    }
    // Someone removed the cause: messages as large as those moved aside get the full count of
    // losses again.
    forgive_refused_ = true;
    {
        std::lock_guard lock(mutex_);
        ++submissions_;
    }
    cv_.notify_all();
    log_->info("{} messages moved aside were put back in the queue", back);
    return back;
}

void Outbox::settle_with_store() {
    // In order, each dropped once done; the first failure leaves the rest for the next call.
    const auto apply = [this](auto& items, const auto& op) {
        std::size_t done = 0;
        try {
            for (; done < items.size(); ++done) op(items[done]);
        } catch (const StoreError& e) {
            store_failed(e.what());
        }
        items.erase(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(done));
    };
    apply(unsettled_, [this](const Unsettled& u) {
        if (u.clip) {
            store_.forget_pending_clip(u.id);
        } else {
            store_.forget_open_event(u.id);
        }
    });
    apply(unremoved_, [this](std::int64_t seq) { store_.remove(seq); });
    if (unremoved_.empty()) unremoved_after_ = {};
    apply(sent_from_memory_, [this](const Message& m) { store_.record_sent(m); });
}

void Outbox::pause(std::chrono::milliseconds how_long) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, how_long, [this] { return stop_; });
}

std::optional<Message> Outbox::next() {
    try {
        // Memory first, then the store: a producer's flush that moves the memory's head into the
        // store between the two reads then shows it as the store's live head, sent from there. Read
        // the other way round, the moved alert's successor went out ahead of it, numbers out of
        // order (review).
        auto kept = overflow_.front();
        // Past the messages sent that the store could not remove yet, in each class.
        if (auto m = store_.front(unremoved_after_)) {
            // A read that works clears a one-off failure, unless messages still wait in memory
            // for the store to take them (a full disk still reads).
            if (overflow_.size() == 0) store_recovered();
            // An alert kept in memory (the store failing) does not wait behind stored roll-ups or
            // replay answers; no stored alert is left ahead of it, so the numbers stay in order.
            if ((m->priority == Priority::telemetry || m->priority == Priority::replay) && kept &&
                (kept->priority == Priority::alert || kept->priority == Priority::evidence))
                return kept;
            return m;
        }
    } catch (const StoreError& e) {
        store_failed(e.what());
        if (overflow_.size() == 0) pause(kStoreErrorPause);  // nothing else to send: do not spin
    }
    // The stored messages are older than those kept in memory: these come after them.
    return overflow_.front();
}

void Outbox::run() {
    // The head message handed to the broker and not yet acknowledged.
    struct InFlight {
        explicit InFlight(Message m) : message(std::move(m)) {}
        Message message;
        std::optional<publish::Delivery> delivery;
        std::uint64_t sent_on = 0;  // the connection it was last sent on, 0 if not sent
        int losses = 0;             // connections lost while it was in flight
    };
    std::optional<InFlight> flight;
    auto last_flush = std::chrono::steady_clock::now();
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            if (stop_) return;
        }
        if ((overflow_.size() > 0 || !unsettled_.empty() || !unremoved_.empty() ||
             !sent_from_memory_.empty()) &&
            std::chrono::steady_clock::now() - last_flush >= kStoreErrorPause) {
            // Made durable as soon as the store works again, even if nothing new is submitted.
            last_flush = std::chrono::steady_clock::now();
            std::lock_guard order(enqueue_mutex_);
            flush_overflow();
            settle_with_store();
        }
        if (forgive_refused_.exchange(false)) smallest_refused_ = std::numeric_limits<std::size_t>::max();
        if (!flight) {
            std::uint64_t seen = 0;
            {
                std::lock_guard lock(mutex_);
                seen = submissions_;
            }
            auto head = next();
            if (!head) {
                // Woken by what is submitted after the look, not by depth(): rows sent but not yet
                // removed (a full disk) count in it, and would keep the thread reading the store
                // in a loop for as long as the disk stays full.
                std::unique_lock lock(mutex_);
                cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_ || submissions_ != seen; });
                continue;
            }
            flight.emplace(std::move(*head));
        }
        const Message& head = flight->message;
        if (!link_.wait_connected(std::chrono::seconds(1))) continue;
        const auto connection = link_.connection();
        if (flight->sent_on != 0 && flight->sent_on != connection) {
            // Paho does not resend after a clean-session reconnect: the head goes again, once.
            flight->delivery.reset();
            flight->sent_on = 0;
            const std::size_t size = head.payload.size() + head.topic.size();
            const int limit = head.priority == Priority::alert ? kMaxLossesForAnAlert
                              : size >= smallest_refused_      ? kMaxLossesAtRefusedSize
                                                               : kMaxLossesInFlight;
            if (++flight->losses >= limit) {
                set_aside(head, flight->losses);
                flight.reset();
                continue;
            }
        }
        if (!flight->delivery) {
            flight->delivery = link_.send(head.topic, head.payload, head.qos, head.retain);
            if (!flight->delivery) {
                pause(kRetryPause);
                continue;
            }
            flight->sent_on = flight->delivery->connection();
        }
        // While the connection stays up the broker has the message: wait for its PUBACK however
        // long a slow uplink takes, rather than publish copies that queue behind it.
        switch (flight->delivery->wait_for(kAckPoll)) {
            case publish::Delivery::State::pending:
                continue;
            case publish::Delivery::State::failed:
                flight->delivery.reset();  // sent again, on this connection or the next
                pause(kRetryPause);
                continue;
            case publish::Delivery::State::acknowledged:
                break;
        }
        delivered_.fetch_add(1);
        // The broker takes messages this large after all (a flapping link, not its size limit,
        // lost the one moved aside): back to the full count of losses.
        if (head.payload.size() + head.topic.size() >= smallest_refused_)
            smallest_refused_ = std::numeric_limits<std::size_t>::max();
        if (head.stream_seq > acknowledged_.load()) acknowledged_ = head.stream_seq;
        if (head.seq < 0) {
            // Moved into the store meanwhile, it goes once more: receivers deduplicate.
            if (overflow_.pop(head.seq) && head.stream_seq > 0) {
                // Bounded as the overflow is: a disk full for days must not fill the memory with these.
                if (sent_from_memory_.size() >= kOverflowLimits.max_messages)
                    sent_from_memory_.erase(sent_from_memory_.begin());
                sent_from_memory_.push_back(head);
            }
            if (head.open_event.kind == OpenEventMark::Kind::close)
                unsettled_.push_back({false, head.open_event.id});
            if (head.clip.kind == ClipMark::Kind::reported) unsettled_.push_back({true, head.clip.event_id});
            settle_with_store();
        } else {
            try {
                store_.remove(head.seq);
                store_recovered();
            } catch (const StoreError& e) {
                // Delivered but not removed: skipped from now on, removed once the store works (sent
                // again only if the gateway stops first, and receivers deduplicate).
                unremoved_.push_back(head.seq);
                unremoved_after_.mark(head.priority, head.seq);
                store_failed(e.what());
            }
        }
        flight.reset();
    }
}

std::vector<std::string> Outbox::numbered_of_event(const std::string& topic, const std::string& event_id,
                                                   std::size_t limit) const {
    try {
        return store_.numbered_of_event(topic, event_id, limit);
    } catch (const std::exception& e) {
        log_->warn("the messages of event {} cannot be read from the outbox: {}", event_id, e.what());
        return {};
    }
}

std::vector<std::string> Outbox::latest_numbered(const std::string& topic, std::size_t limit,
                                                 const std::string& containing) const {
    try {
        return store_.latest_numbered(topic, limit, containing);
    } catch (const std::exception& e) {
        log_->warn("the events of the runs before cannot be read from the outbox: {}", e.what());
        return {};
    }
}

}  // namespace kg::outbox
