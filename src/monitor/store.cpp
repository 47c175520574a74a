#include "monitor/store.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <tuple>

#include "common/short_text.hpp"
#include "monitor/event_cause.hpp"
#include "monitor/iso_time.hpp"

namespace kg::monitor {

using nlohmann::json;
using sqlite::Stmt;
using sqlite::Transaction;

const char* to_string(IngestOutcome o) {
    switch (o) {
        case IngestOutcome::created:
            return "created";
        case IngestOutcome::updated:
            return "updated";
        case IngestOutcome::duplicate:
            return "duplicate";
        case IngestOutcome::stale:
            return "stale";
        case IngestOutcome::rejected:
            return "rejected";
        case IngestOutcome::expired:
            return "expired";
    }
    return "rejected";
}

namespace {

// Raised with every change of the tables a previous release cannot read as it did (see
// sqlite::Options::version); version 1 is the schema below with alerts.end_reason. rollups.parts
// needs no new version: a release before it writes its rows without, as it did. Version 2:
// notifications.kind may be "again:<n>", which a release before sent as an alert's end.
constexpr int kSchemaVersion = 2;
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS sites (
  site TEXT PRIMARY KEY, name TEXT, availability TEXT, availability_time TEXT, last_seen TEXT,
  gateway TEXT);
CREATE TABLE IF NOT EXISTS cameras (
  site TEXT NOT NULL, camera TEXT NOT NULL, name TEXT, online INTEGER, state TEXT NOT NULL,
  time TEXT, PRIMARY KEY (site, camera));
CREATE TABLE IF NOT EXISTS sensors (
  site TEXT NOT NULL, sensor TEXT NOT NULL, name TEXT, unit TEXT, online INTEGER, value REAL,
  state TEXT NOT NULL, time TEXT, PRIMARY KEY (site, sensor));
CREATE TABLE IF NOT EXISTS alerts (
  id TEXT PRIMARY KEY, site TEXT NOT NULL, source_kind TEXT NOT NULL, source TEXT NOT NULL,
  check_name TEXT NOT NULL, label TEXT NOT NULL, severity INTEGER NOT NULL, condition TEXT NOT NULL,
  start_time TEXT NOT NULL, end_time TEXT, score REAL, top_score REAL, value REAL, unit TEXT,
  last_seq INTEGER NOT NULL, received_at TEXT NOT NULL, updated_at TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'open', acknowledged_by TEXT, acknowledged_at TEXT,
  closed_by TEXT, closed_at TEXT, close_note TEXT, clip TEXT, end_reason TEXT);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts(status, severity, received_at);
CREATE INDEX IF NOT EXISTS alerts_site ON alerts(site, received_at);
CREATE TABLE IF NOT EXISTS event_messages (
  message_id TEXT PRIMARY KEY, event_id TEXT NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL,
  time TEXT, received_at TEXT NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS event_messages_event ON event_messages(event_id, received_at);
CREATE TABLE IF NOT EXISTS snapshots (
  event_id TEXT PRIMARY KEY, site TEXT NOT NULL, jpeg BLOB NOT NULL, received_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rollups (
  site TEXT NOT NULL, sensor TEXT NOT NULL, minute TEXT NOT NULL, unit TEXT, min REAL, mean REAL,
  max REAL, count INTEGER, parts TEXT, PRIMARY KEY (site, sensor, minute));
CREATE TABLE IF NOT EXISTS actions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, site TEXT NOT NULL,
  action TEXT NOT NULL, status_after TEXT NOT NULL, operator TEXT NOT NULL, note TEXT NOT NULL,
  time TEXT NOT NULL, monitor TEXT NOT NULL, published_at TEXT);
CREATE INDEX IF NOT EXISTS actions_event ON actions(event_id, seq);
CREATE INDEX IF NOT EXISTS actions_unpublished ON actions(published_at, seq);
CREATE INDEX IF NOT EXISTS alerts_closed ON alerts(status, closed_at);
CREATE TABLE IF NOT EXISTS deleted_alerts (
  id TEXT PRIMARY KEY, site TEXT NOT NULL, deleted_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS deleted_alerts_at ON deleted_alerts(deleted_at);
CREATE INDEX IF NOT EXISTS snapshots_received ON snapshots(received_at);
CREATE INDEX IF NOT EXISTS snapshots_site ON snapshots(site, received_at);
CREATE INDEX IF NOT EXISTS rollups_minute ON rollups(minute);
CREATE TABLE IF NOT EXISTS seq_streams (
  site TEXT NOT NULL, stream TEXT NOT NULL, mark INTEGER NOT NULL, top INTEGER NOT NULL,
  lost INTEGER NOT NULL DEFAULT 0, started_at TEXT NOT NULL, current INTEGER NOT NULL,
  PRIMARY KEY (site, stream));
CREATE TABLE IF NOT EXISTS seq_missing (
  site TEXT NOT NULL, stream TEXT NOT NULL, from_seq INTEGER NOT NULL, to_seq INTEGER NOT NULL,
  since TEXT NOT NULL, asked_at TEXT, PRIMARY KEY (site, stream, from_seq));
-- Numbers counted lost (a `lost` answer, given up), so that one arriving after all is no longer
-- counted (see StreamTrack::found_lost).
CREATE TABLE IF NOT EXISTS seq_lost (
  site TEXT NOT NULL, stream TEXT NOT NULL, from_seq INTEGER NOT NULL, to_seq INTEGER NOT NULL,
  PRIMARY KEY (site, stream, from_seq));
CREATE TABLE IF NOT EXISTS pending_clips (
  event_id TEXT PRIMARY KEY, site TEXT NOT NULL, report TEXT NOT NULL, received_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS pending_clips_site ON pending_clips(site, received_at);
-- Notifications to send (monitor/notifier.hpp): one per target, alert and kind, so a message
-- stored twice queues nothing twice. Times in ms since the epoch, the room's clock.
CREATE TABLE IF NOT EXISTS notifications (
  id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, event_id TEXT NOT NULL,
  kind TEXT NOT NULL, queued_at INTEGER NOT NULL, lease_until INTEGER NOT NULL DEFAULT 0,
  lease INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
  UNIQUE (target, event_id, kind));
CREATE INDEX IF NOT EXISTS notifications_target ON notifications(target, id);
)sql";

// The active alerts alone (a few hundred among a city's years of closed ones, bench/monitor_history.py):
// every site's open counts in /api/sites, and the dashboard's list and its count, read these; and
// the check names for /api/checks. Kept out of kSchema (add_read_indexes): on an existing database
// they are a write, and a build of some seconds the first time.
constexpr const char* kReadIndexes = R"sql(
CREATE INDEX IF NOT EXISTS alerts_active_site ON alerts(site, severity) WHERE status != 'closed';
CREATE INDEX IF NOT EXISTS alerts_active ON alerts(severity, received_at) WHERE status != 'closed';
CREATE INDEX IF NOT EXISTS alerts_check ON alerts(check_name);
CREATE INDEX IF NOT EXISTS alerts_active_check ON alerts(check_name, severity) WHERE status != 'closed';
-- In the lists' own order (severity, newest first, id), so that a list of closed or of all alerts
-- reads its first page off the index instead of sorting every one of them (600 000 closed alerts:
-- 0.5 s a list, the months review); with the status first for the status filters.
CREATE INDEX IF NOT EXISTS alerts_listed ON alerts(status, severity, received_at DESC, id);
CREATE INDEX IF NOT EXISTS alerts_ranked ON alerts(severity, received_at DESC, id);
-- An alert's history in the order it is shown (by number): its first and last 100 read off the
-- index, not sorted out of all its messages (a month of updates: 86 400). (The indexes these take
-- over from, alerts_status and event_messages_event, stay while an instance of an earlier release
-- may share the file: it would build them again at its start.)
CREATE INDEX IF NOT EXISTS event_messages_seq ON event_messages(event_id, seq, received_at);
)sql";

#define KG_ALERT_COLUMNS                                                                                     \
    "a.id, a.site, a.source_kind, a.source, a.check_name, a.label, a.severity, a.condition, a.start_time,"   \
    " a.end_time, a.score, a.top_score, a.value, a.unit, a.last_seq, a.received_at, a.updated_at, a.status," \
    " a.acknowledged_by, a.acknowledged_at, a.closed_by, a.closed_at, a.close_note, a.clip,"                 \
    " EXISTS(SELECT 1 FROM snapshots s WHERE s.event_id = a.id),"
constexpr const char* kAlertColumns = KG_ALERT_COLUMNS
    // Counted as they are stored (alerts.messages); counted here only for an alert stored by a
    // version before that column (NULL). Counted at each read, a month-old alert's 86 400 messages
    // cost every update of it 3 ms of the one ingest thread (the months review).
    " COALESCE(a.messages, (SELECT COUNT(*) FROM event_messages m WHERE m.event_id = a.id)), a.end_reason";
// The same on a database this process may only read, made before alerts.messages.
constexpr const char* kAlertColumnsUncounted =
    KG_ALERT_COLUMNS " (SELECT COUNT(*) FROM event_messages m WHERE m.event_id = a.id), a.end_reason";
#undef KG_ALERT_COLUMNS

std::optional<double> number(const json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_number()) return std::nullopt;
    return it->get<double>();
}

std::optional<std::string> text(const json& j, const char* key) {
    const auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
}

// What a site's gateway warned of its own configuration (settings that cannot work as meant), from
// its gateway message: texts only, a few, each cut short, so that one site cannot fill the list.
json config_warnings(const json& info) {
    json out = json::array();
    const auto it = info.find("config_warnings");
    if (it == info.end() || !it->is_array()) return out;
    std::size_t more = 0;
    for (const auto& w : *it) {
        if (!w.is_string() || w.get_ref<const std::string&>().empty()) continue;
        if (out.size() < Store::kMaxConfigWarnings)
            out.push_back(shortened_text(w.get<std::string>(), Store::kMaxConfigWarningBytes));
        else
            ++more;
    }
    // Not dropped unsaid: sensors copied from one bad template pass 16 easily.
    if (more > 0) out.push_back(fmt::format("... and {} more (see the site's log)", more));
    return out;
}

}  // namespace

Store::Store(const std::string& path, Retention retention)
    : retention_(retention),
      db_(path, {.label = "database",
                 // FULL: the broker had its PUBACK before the message was stored (Paho acknowledges
                 // on arrival), so a transaction a power cut took back would be an alert lost.
                 .synchronous = sqlite::Synchronous::full,
                 .foreign_keys = true,
                 .schema = kSchema,
                 .version = kSchemaVersion}) {
    add_column("alerts", "end_reason");
    add_column("rollups", "parts");
    add_column("seq_streams", "run_started");
    add_message_count();
    add_shown_columns();
    add_read_indexes();
    add_late_tables();
}

void Store::add_late_tables() {
    // Not in kSchema: a file this process may only read, made by a version before these tables, is
    // opened as before (Db runs the schema on it too), and simply has no start of watching.
    try {
        // The room's own facts: 'watching_since', when it began following sites.
        db_.exec("CREATE TABLE IF NOT EXISTS room (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
        add_seq_assumed();
    } catch (const sqlite::Error& e) {
        if (e.code() != SQLITE_READONLY && e.code() != SQLITE_BUSY && e.code() != SQLITE_LOCKED) throw;
    }
    watching_since_ = read_watching_since();
}

std::optional<TimePoint> Store::read_watching_since() {
    try {
        Stmt s(db_, "SELECT value FROM room WHERE key = 'watching_since'");
        if (s.step()) return parse_iso8601_utc(s.text(0));
    } catch (const sqlite::Error& e) {
        if (e.code() != SQLITE_ERROR) throw;  // no such table: a read-only file from before it
    }
    return std::nullopt;
}

std::optional<TimePoint> Store::note_watching(TimePoint now) {
    std::lock_guard lock(mutex_);
    if (watching_since_) return watching_since_;
    try {
        // The first instance of a share group to subscribe dates it; the others read its date.
        Stmt(db_, "INSERT INTO room(key, value) VALUES('watching_since', ?) ON CONFLICT(key) DO NOTHING")
            .bind(1, iso8601_utc(now))
            .run();
    } catch (const sqlite::Error& e) {
        if (e.code() != SQLITE_READONLY && e.code() != SQLITE_BUSY && e.code() != SQLITE_LOCKED &&
            e.code() != SQLITE_ERROR)
            throw;
    }
    watching_since_ = read_watching_since();
    return watching_since_;
}

void Store::add_read_indexes() {
    // Speed only: a file this process may not write (read-only, as Db allows), or another instance
    // building them now, leaves the reads as they were, correct and slower, until the next start.
    try {
        db_.exec(kReadIndexes);
        refresh_statistics();
    } catch (const sqlite::Error& e) {
        if (e.code() != SQLITE_READONLY && e.code() != SQLITE_BUSY && e.code() != SQLITE_LOCKED) throw;
    }
}

void Store::analyse(const char* sql) {
    try {
        db_.exec(sql);
    } catch (const sqlite::Error& e) {
        // Speed only. A damaged file (SQLITE_CORRUPT) must still open, so that the messages wait at
        // the broker while it is mended: the writes that meet the damage say so, once a minute.
        (void)e;
    }
}

void Store::refresh_statistics() {
    // Without statistics the planner took the status index for one site's closed alerts, all
    // 600 000 of them, over the site's 2 000 (the months review). Gathered where there are none (a
    // database from before; a new one until it holds alerts: cheap) or the alerts have grown
    // tenfold since (max(rowid): alerts are never renumbered). Whole, not sampled (analysis_limit
    // took 'closed' for a rare status and chose as badly), and only these two tables: 0.43 s for
    // 600 000 alerts and 1.2 million messages; the roll-ups, far the largest and read by their key
    // alone, would make it minutes, before the unit's start timeout.
    try {
        std::int64_t analysed = -1;
        if (Stmt has_table(db_, "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'");
            has_table.step()) {
            Stmt s(db_, "SELECT stat FROM sqlite_stat1 WHERE tbl = 'alerts' AND stat IS NOT NULL LIMIT 1");
            if (s.step()) analysed = std::strtoll(s.text(0).c_str(), nullptr, 10);
        }
        Stmt rows(db_, "SELECT COALESCE(MAX(rowid), 0) FROM alerts");
        rows.step();
        if (analysed >= 0 && rows.integer(0) <= 10 * analysed + 1000) return;
    } catch (const sqlite::Error&) {
        return;  // speed only, as analyse() says: a damaged file must still open
    }
    analyse("ANALYZE alerts; ANALYZE event_messages;");
}

void Store::optimize() {
    std::lock_guard lock(mutex_);
    refresh_statistics();
}

void Store::add_column(const char* table, const char* column, const char* type) {
    // A database made before the column was kept has no such column; ADD COLUMN is instant. Another
    // instance on the same file may add it between the look and the ALTER: then it is there.
    const auto has_it = [&] {
        Stmt s(db_, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2");
        s.bind(1, table).bind(2, column);
        return s.step();
    };
    if (has_it()) return;
    try {
        db_.exec(fmt::format("ALTER TABLE {} ADD COLUMN {} {}", table, column, type).c_str());
    } catch (const sqlite::Error&) {
        if (!has_it()) throw;
    }
}

void Store::add_message_count() {
    try {
        add_column("alerts", "messages", "INTEGER");
        // In the database, so that an instance of an earlier release sharing the file (a share
        // group upgraded one at a time, a downgrade and back) counts what it stores too: counted by
        // this program alone, such an alert showed fewer messages for good, and its history hid
        // its latest ones. NULL + 1 stays NULL: an alert from before is counted at its next message.
        db_.exec(
            "CREATE TRIGGER IF NOT EXISTS alerts_message_count AFTER INSERT ON event_messages BEGIN "
            "UPDATE alerts SET messages = messages + 1 WHERE id = NEW.event_id; END");
        message_count_ = true;
    } catch (const sqlite::Error& e) {
        // A file of before this process may only read (or another instance adding it now): its
        // alerts are counted at each read, as they were.
        if (e.code() != SQLITE_READONLY && e.code() != SQLITE_BUSY && e.code() != SQLITE_LOCKED) throw;
        Stmt s(db_, "SELECT 1 FROM pragma_table_info('alerts') WHERE name = 'messages'");
        message_count_ = s.step();
    }
}

void Store::add_shown_columns() {
    cause_column_ = add_shown_column("cause", "TEXT");
    windows_column_ = add_shown_column("windows_missed", "INTEGER");
}

bool Store::add_shown_column(const char* column, const char* type) {
    try {
        add_column("alerts", column, type);
        return true;
    } catch (const sqlite::Error& e) {
        // A file of before this process may only read: its alerts go without, as they went.
        if (e.code() != SQLITE_READONLY && e.code() != SQLITE_BUSY && e.code() != SQLITE_LOCKED) throw;
        Stmt s(db_, "SELECT 1 FROM pragma_table_info('alerts') WHERE name = ?1");
        s.bind(1, column);
        return s.step();
    }
}

void Store::keep_shown(const EventMessage& m) {
    // The latest said: a message without one (an outage's end after a stop) keeps it.
    if (m.cause && cause_column_)
        Stmt(db_, "UPDATE alerts SET cause = ?2 WHERE id = ?1").bind(1, m.id).bind(2, *m.cause).run();
    if (m.windows_missed && windows_column_)
        Stmt(db_, "UPDATE alerts SET windows_missed = ?2 WHERE id = ?1")
            .bind(1, m.id)
            .bind(2, *m.windows_missed)
            .run();
}

std::string Store::alert_columns() const {
    return std::string(message_count_ ? kAlertColumns : kAlertColumnsUncounted) +
           (cause_column_ ? ", a.cause" : ", NULL") + (windows_column_ ? ", a.windows_missed" : ", NULL");
}

void Store::ensure_site(const std::string& site) {
    Stmt(db_, "INSERT OR IGNORE INTO sites(site) VALUES(?)").bind(1, site).run();
}

bool Store::has_site(const std::string& site) {
    std::lock_guard lock(mutex_);
    Stmt s(db_, "SELECT 1 FROM sites WHERE site = ?");
    s.bind(1, site);
    return s.step();
}

void Store::site_seen(const std::string& site, TimePoint when) {
    std::lock_guard lock(mutex_);
    // Earlier than the last write: the room's clock was stepped back, which the UPDATE below must
    // see at once.
    if (const auto it = seen_written_.find(site);
        it != seen_written_.end() && when >= it->second && when - it->second < seen_resolution_)
        return;
    ensure_site(site);
    // ISO 8601 UTC strings with milliseconds sort as times do. Only forward (instances sharing the
    // database take messages out of order), unless what is stored is more than a minute ahead of
    // `when`: the room's clock was stepped back, and a site seen "in the future" would show online,
    // however long silent, until the clock got there.
    Stmt(db_,
         "UPDATE sites SET last_seen = ?2 WHERE site = ?1 AND (last_seen IS NULL OR last_seen < ?2 OR "
         "last_seen > ?3)")
        .bind(1, site)
        .bind(2, iso8601_utc(when))
        .bind(3, iso8601_utc(when + std::chrono::minutes(1)))
        .run();
    seen_written_[site] = when;  // only once written: a failed write is tried again at the next message
}

bool Store::set_availability(const std::string& site, const std::string& state, TimePoint when) {
    std::lock_guard lock(mutex_);
    ensure_site(site);
    Stmt s(db_,
           "UPDATE sites SET availability = ?2, availability_time = ?3 WHERE site = ?1 AND"
           " availability IS NOT ?2");
    s.bind(1, site).bind(2, state).bind(3, iso8601_utc(when)).run();
    return db_.changes() > 0;
}

GatewayStored Store::set_gateway_info(const std::string& site, const json& info, TimePoint when,
                                      const std::optional<Sequence>& seq) {
    return in_transaction([&] {
        ensure_site(site);
        Stmt(db_, "UPDATE sites SET gateway = ?2, name = coalesce(?3, name) WHERE site = ?1")
            .bind(1, site)
            .bind(2, info.dump())
            .bind(3, text(info, "name"))
            .run();
        GatewayStored out;
        for (const auto& [list, table, column] :
             {std::tuple{"cameras", "cameras", "camera"}, std::tuple{"sensors", "sensors", "sensor"}}) {
            if (!info.contains(list) || !info[list].is_array()) continue;
            const std::string gone = fmt::format(
                "SELECT {1} FROM {0} WHERE site = ?1 AND {1} NOT IN (SELECT CASE WHEN json_each.type = "
                "'object' THEN json_extract(value, '$.id') END FROM "
                "json_each(?2))",
                table, column);
            std::vector<std::string> ids;
            {
                Stmt s(db_, gone.c_str());
                s.bind(1, site).bind(2, info[list].dump());
                while (s.step()) ids.push_back(s.text(0));
            }
            for (const auto& id : ids) {
                forget_source(table, column, site, id);
                out.removed.push_back(fmt::format("{} {}", column, id));
            }
        }
        if (seq) out.track = record_sent(site, *seq, when);
        return out;
    });
}

bool Store::listed_source(const char* list, const std::string& site, const std::string& id) {
    const std::string sql = fmt::format(
        "SELECT json_type(gateway, '$.{0}') = 'array' AND NOT EXISTS (SELECT 1 FROM json_each(gateway, "
        "'$.{0}')"
        " WHERE CASE WHEN json_each.type = 'object' THEN json_extract(value, '$.id') END = ?2) FROM sites "
        "WHERE site = ?1 AND json_valid(gateway)",
        list);
    Stmt s(db_, sql.c_str());
    s.bind(1, site).bind(2, id);
    return !(s.step() && s.integer(0) != 0);
}

bool Store::forget_source(const char* table, const char* column, const std::string& site,
                          const std::string& id) {
    const std::string sql = fmt::format("DELETE FROM {} WHERE site = ? AND {} = ?", table, column);
    Stmt(db_, sql.c_str()).bind(1, site).bind(2, id).run();
    return db_.changes() > 0;
}

bool Store::forget_camera(const std::string& site, const std::string& camera) {
    std::lock_guard lock(mutex_);
    return forget_source("cameras", "camera", site, camera);
}

bool Store::forget_sensor(const std::string& site, const std::string& sensor) {
    std::lock_guard lock(mutex_);
    return forget_source("sensors", "sensor", site, sensor);
}

bool Store::room_for_source(const char* table, const char* column, const std::string& site,
                            const std::string& id) {
    const std::string sql = fmt::format(
        "SELECT EXISTS (SELECT 1 FROM {0} WHERE site = ?1 AND {1} = ?2), (SELECT COUNT(*) FROM {0} WHERE "
        "site = ?1)",
        table, column);
    Stmt s(db_, sql.c_str());
    s.bind(1, site).bind(2, id);
    return s.step() && (s.integer(0) != 0 || s.integer(1) < kMaxSourcesPerSite);
}

Store::SourceStored Store::set_camera_state(const std::string& site, const std::string& camera,
                                            const json& state) {
    std::lock_guard lock(mutex_);
    if (!listed_source("cameras", site, camera)) return SourceStored::not_listed;
    if (!room_for_source("cameras", "camera", site, camera)) return SourceStored::beyond_cap;
    ensure_site(site);
    const auto online = state.find("online");
    Stmt s(db_,
           "INSERT INTO cameras(site, camera, name, online, state, time) VALUES(?1,?2,?3,?4,?5,?6)"
           " ON CONFLICT(site, camera) DO UPDATE SET name = excluded.name, online = excluded.online,"
           " state = excluded.state, time = excluded.time");
    s.bind(1, site).bind(2, camera).bind(3, text(state, "name"));
    if (online != state.end() && online->is_boolean()) {
        s.bind(4, online->get<bool>() ? 1 : 0);
    } else {
        s.bind_null(4);
    }
    s.bind(5, state.dump()).bind(6, text(state, "time")).run();
    return SourceStored::stored;
}

Store::SourceStored Store::set_sensor_state(const std::string& site, const std::string& sensor,
                                            const json& state) {
    std::lock_guard lock(mutex_);
    if (!listed_source("sensors", site, sensor)) return SourceStored::not_listed;
    if (!room_for_source("sensors", "sensor", site, sensor)) return SourceStored::beyond_cap;
    ensure_site(site);
    const auto online = state.find("online");
    Stmt s(db_,
           "INSERT INTO sensors(site, sensor, name, unit, online, value, state, time) "
           "VALUES(?1,?2,?3,?4,?5,?6,?7,?8)"
           " ON CONFLICT(site, sensor) DO UPDATE SET name = excluded.name, unit = excluded.unit,"
           " online = excluded.online, value = excluded.value, state = excluded.state, time = excluded.time");
    s.bind(1, site).bind(2, sensor).bind(3, text(state, "name")).bind(4, text(state, "unit"));
    if (online != state.end() && online->is_boolean()) {
        s.bind(5, online->get<bool>() ? 1 : 0);
    } else {
        s.bind_null(5);
    }
    if (const auto v = number(state, "value")) {
        s.bind(6, *v);
    } else {
        s.bind_null(6);
    }
    s.bind(7, state.dump()).bind(8, text(state, "time")).run();
    return SourceStored::stored;
}

EventStored Store::add_event(const EventMessage& m, TimePoint now, const std::optional<Sequence>& seq) {
    return in_transaction([&] {
        // The number first: a new stream ends the alerts its site's old outbox left open, and this
        // message's own alert must not be one of them.
        EventStored out;
        if (seq) out.track = record_received(m.site, *seq, now);
        out.outcome = store_event(m, now);
        // A late message of a replaced outbox that is the first the room sees of its alert (another
        // instance of a share group held it, or the broker did): the room ended that outbox's alerts
        // when the new one began, and nothing will end this one either.
        if (out.outcome == IngestOutcome::created && out.track.retired_stream && m.state != "end") {
            end_as_outbox_replaced(m, now);
            out.track.ended_alerts.push_back(m.id);
        }
        return out;
    });
}

IngestOutcome Store::store_event(const EventMessage& m, TimePoint now) {
    const std::string received = iso8601_utc(now);
    // The alert, if known, must be this site's: ids are random, a clash means a site is trying to
    // touch another site's alert.
    std::optional<std::int64_t> last_seq;
    bool ended_by_room = false;
    {
        Stmt s(db_, "SELECT site, last_seq, condition = 'end' AND end_reason IS ? FROM alerts WHERE id = ?");
        s.bind(1, std::string(kEndOutboxReplaced)).bind(2, m.id);
        if (s.step()) {
            if (s.text(0) != m.site) return IngestOutcome::rejected;
            last_seq = s.integer(1);
            ended_by_room = s.integer(2) != 0;
        }
    }
    // Decided on the room's own record of what retention deleted, never on the gateway's clock: a
    // box whose clock was never set still raises alerts.
    if (!last_seq && was_deleted(m.id)) return IngestOutcome::expired;
    Stmt insert_message(
        db_,
        "INSERT OR IGNORE INTO event_messages(message_id, event_id, seq, state, time, received_at,"
        " payload) VALUES(?,?,?,?,?,?,?)");
    insert_message.bind(1, m.message_id).bind(2, m.id).bind(3, m.seq).bind(4, m.state).bind(5, m.time);
    insert_message.bind(6, received).bind(7, m.raw).run();
    if (db_.changes() == 0) return IngestOutcome::duplicate;
    // Counted by the trigger (alerts_message_count); an alert stored before the column (NULL) is
    // counted once here, this message included.
    if (last_seq && message_count_)
        Stmt(db_,
             "UPDATE alerts SET messages = (SELECT COUNT(*) FROM event_messages WHERE event_id = ?1) WHERE "
             "id = "
             "?1 AND messages IS NULL")
            .bind(1, m.id)
            .run();

    IngestOutcome outcome;
    if (!last_seq) {
        // The first message seen of this event (normally its start; an update or end when the
        // start went to another instance or was lost).
        // Its message went in before it (the trigger found no alert to count it for): 1.
        Stmt s(
            db_,
            message_count_
                ? "INSERT INTO alerts(id, site, source_kind, source, check_name, label, severity, condition,"
                  " start_time, end_time, score, top_score, value, unit, last_seq, received_at, updated_at,"
                  " end_reason, messages) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,"
                  "?16,?17,1)"
                : "INSERT INTO alerts(id, site, source_kind, source, check_name, label, severity, condition,"
                  " start_time, end_time, score, top_score, value, unit, last_seq, received_at, updated_at,"
                  " end_reason) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?16,?17)");
        s.bind(1, m.id).bind(2, m.site).bind(3, m.source_kind).bind(4, m.source).bind(5, m.check);
        s.bind(6, m.label).bind(7, m.severity).bind(8, m.state).bind(9, m.start_time).bind(10, m.end_time);
        s.bind(11, m.score).bind(12, m.top_score);
        if (m.value) {
            s.bind(13, *m.value);
        } else {
            s.bind_null(13);
        }
        s.bind(14, m.unit).bind(15, m.seq).bind(16, received).bind(17, m.end_reason).run();
        keep_shown(m);
        attach_pending_clip(m.site, m.id);
        outcome = IngestOutcome::created;
    } else if (ended_by_room ? m.state == "end" : m.seq > *last_seq) {
        // An alert the room ended when its outbox was replaced takes the gateway's own end, should
        // one come late after all, and no update: it would open the alert again for good.
        Stmt s(db_,
               "UPDATE alerts SET condition = ?2, end_time = ?3, score = ?4, top_score = max(top_score, ?5),"
               " value = coalesce(?6, value), severity = ?7, label = ?8, last_seq = ?9, updated_at = ?10,"
               " end_reason = ?11 WHERE id = ?1");
        s.bind(1, m.id).bind(2, m.state).bind(3, m.end_time).bind(4, m.score).bind(5, m.top_score);
        if (m.value) {
            s.bind(6, *m.value);
        } else {
            s.bind_null(6);
        }
        s.bind(7, m.severity).bind(8, m.label).bind(9, m.seq).bind(10, received).bind(11, m.end_reason).run();
        keep_shown(m);
        outcome = IngestOutcome::updated;
    } else {
        // Older than what is shown (a redelivered update after a newer one): history only.
        outcome = IngestOutcome::stale;
    }
    // The room's own end already went out (end_as_outbox_replaced); once sent, its row is gone and
    // the queue's UNIQUE no longer stops a second one for the gateway's late end.
    if (!ended_by_room) queue_notifications(m, outcome, now);
    return outcome;
}

namespace {
std::int64_t epoch_ms(TimePoint t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
}  // namespace

std::string notify_again_kind(std::int64_t windows_missed) {
    return fmt::format("{}:{}", kNotifyAgain, windows_missed);
}

std::optional<std::int64_t> notify_again_count(std::string_view kind) {
    if (!kind.starts_with(kNotifyAgain) || kind.size() < kNotifyAgain.size() + 2 ||
        kind[kNotifyAgain.size()] != ':')
        return std::nullopt;
    std::int64_t n = 0;
    const auto digits = kind.substr(kNotifyAgain.size() + 1);
    const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (error != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
    return n;
}

void Store::queue_notifications(const EventMessage& m, IngestOutcome outcome, TimePoint now) {
    if (!notify_routes_) return;
    // The alert's first message opens it (whatever its state: a start lost on the way is not
    // waited for); an end is one only while newer than what the alert shows.
    std::vector<std::string> kinds;
    if (outcome == IngestOutcome::created) kinds.emplace_back(kNotifyOpen);
    // A further window missed while the alert is open: an update newer than what it shows, with
    // the count one higher (a notification of the first window is the open's).
    if (m.state == "update" && outcome == IngestOutcome::updated && m.windows_missed && *m.windows_missed > 1)
        kinds.push_back(notify_again_kind(*m.windows_missed));
    if (m.state == "end" && (outcome == IngestOutcome::created || outcome == IngestOutcome::updated))
        kinds.emplace_back(kNotifyEnd);
    for (const auto& kind : kinds) {
        for (const auto& target : notify_routes_(m, kind)) {
            Stmt(db_,
                 "INSERT OR IGNORE INTO notifications(target, event_id, kind, queued_at) VALUES(?1,?2,?3,?4)")
                .bind(1, target)
                .bind(2, m.id)
                .bind(3, kind)
                .bind(4, epoch_ms(now))
                .run();
        }
    }
}

std::optional<QueuedNotification> Store::take_notification(const std::string& target, TimePoint now,
                                                           Duration lease) {
    std::lock_guard lock(mutex_);
    {
        // A read first: most polls find nothing, and need no write lock on a shared database.
        Stmt s(db_, "SELECT 1 FROM notifications WHERE target = ?1 AND lease_until <= ?2 LIMIT 1");
        s.bind(1, target).bind(2, epoch_ms(now));
        if (!s.step()) return std::nullopt;
    }
    // Random: instances sharing the database draw their own, and 0 is no one's.
    std::int64_t token = 0;
    while (token == 0) token = static_cast<std::int64_t>(lease_tokens_());
    sqlite::Transaction tx(db_);
    Stmt s(db_,
           "UPDATE notifications SET lease_until = ?3, lease = ?4 WHERE id = (SELECT id FROM notifications"
           " WHERE target = ?1 AND lease_until <= ?2"
           " ORDER BY (SELECT severity FROM alerts WHERE alerts.id = notifications.event_id), id LIMIT 1)"
           " RETURNING id, event_id, kind, attempts, queued_at");
    s.bind(1, target).bind(2, epoch_ms(now)).bind(3, epoch_ms(now + lease)).bind(4, token);
    std::optional<QueuedNotification> out;
    if (s.step()) {
        QueuedNotification n;
        n.id = s.integer(0);
        n.target = target;
        n.event_id = s.text(1);
        n.kind = s.text(2);
        n.attempts = static_cast<int>(s.integer(3));
        n.queued_at = TimePoint(std::chrono::milliseconds(s.integer(4)));
        n.lease = token;
        out = std::move(n);
    }
    s.reset();
    tx.commit();
    return out;
}

void Store::notification_done(std::int64_t id) {
    std::lock_guard lock(mutex_);
    Stmt(db_, "DELETE FROM notifications WHERE id = ?").bind(1, id).run();
}

void Store::notification_failed(const QueuedNotification& n, const std::string& error) {
    std::lock_guard lock(mutex_);
    Stmt(db_,
         "UPDATE notifications SET lease_until = 0, attempts = attempts + 1, last_error = ?3"
         " WHERE id = ?1 AND lease = ?2")
        .bind(1, n.id)
        .bind(2, n.lease)
        .bind(3, error)
        .run();
}

std::int64_t Store::drop_notifications_queued_before(const std::string& target, TimePoint cutoff,
                                                     TimePoint now) {
    std::lock_guard lock(mutex_);
    Stmt(db_, "DELETE FROM notifications WHERE target = ?1 AND queued_at < ?2 AND lease_until <= ?3")
        .bind(1, target)
        .bind(2, epoch_ms(cutoff))
        .bind(3, epoch_ms(now))
        .run();
    return db_.changes();
}

std::int64_t Store::forget_notifications_except(const std::vector<std::string>& targets) {
    return in_transaction([&] {
        std::int64_t forgotten = 0;
        std::vector<std::string> queued;
        {
            Stmt s(db_, "SELECT DISTINCT target FROM notifications");
            while (s.step()) queued.push_back(s.text(0));
        }
        for (const auto& t : queued) {
            if (std::find(targets.begin(), targets.end(), t) != targets.end()) continue;
            Stmt(db_, "DELETE FROM notifications WHERE target = ?").bind(1, t).run();
            forgotten += db_.changes();
        }
        return forgotten;
    });
}

std::map<std::string, std::int64_t> Store::queued_notifications() {
    std::lock_guard lock(mutex_);
    std::map<std::string, std::int64_t> out;
    Stmt s(db_, "SELECT target, COUNT(*) FROM notifications GROUP BY target");
    while (s.step()) out[s.text(0)] = s.integer(1);
    return out;
}

bool Store::add_snapshot(const std::string& site, const std::string& event_id, const std::string& jpeg,
                         TimePoint now) {
    std::lock_guard lock(mutex_);
    bool has_alert = false;
    {
        Stmt s(db_, "SELECT site FROM alerts WHERE id = ?");
        s.bind(1, event_id);
        has_alert = s.step();
        if (has_alert && s.text(0) != site) return false;
    }
    {
        Stmt s(db_, "SELECT site FROM snapshots WHERE event_id = ?");
        s.bind(1, event_id);
        if (s.step() && s.text(0) != site) return false;
    }
    // A late copy of the picture of an alert retention deleted: taken, and not kept.
    if (was_deleted(event_id)) return true;
    // Keyed by event id: the snapshot may arrive before its event (another topic), and a
    // redelivered copy replaces the first.
    Stmt(db_, "INSERT OR REPLACE INTO snapshots(event_id, site, jpeg, received_at) VALUES(?,?,?,?)")
        .bind(1, event_id)
        .bind(2, site)
        .bind_blob(3, jpeg)
        .bind(4, iso8601_utc(now))
        .run();
    if (has_alert) return true;
    // Pictures of alerts that have not come (yet): a site sending pictures of events that never
    // come cannot fill the room's disk with them. Looked at only when this is one of them.
    Stmt(db_,
         "DELETE FROM snapshots WHERE event_id IN (SELECT event_id FROM (SELECT event_id, row_number() OVER w"
         " AS n, sum(length(jpeg)) OVER w AS b FROM snapshots WHERE site = ?1 AND NOT EXISTS (SELECT 1 FROM"
         " alerts WHERE alerts.id = snapshots.event_id) WINDOW w AS (ORDER BY received_at DESC, rowid DESC))"
         " WHERE n > 1 AND (n > ?2 OR b > ?3))")
        .bind(1, site)
        .bind(2, kMaxOrphanSnapshots)
        .bind(3, kMaxOrphanSnapshotBytes)
        .run();
    return true;
}

ClipStored Store::set_clip(const std::string& site, const std::string& event_id, const json& report,
                           TimePoint now, const std::optional<Sequence>& seq) {
    return in_transaction([&] {
        ClipStored out;
        Stmt(db_, "UPDATE alerts SET clip = ?3 WHERE id = ?1 AND site = ?2")
            .bind(1, event_id)
            .bind(2, site)
            .bind(3, report.dump())
            .run();
        out.attached = db_.changes() > 0;
        if (!out.attached) out.pending = keep_pending_clip(site, event_id, report, now, out.evicted);
        if (seq) out.track = record_received(site, *seq, now);
        return out;
    });
}

bool Store::keep_pending_clip(const std::string& site, const std::string& event_id, const json& report,
                              TimePoint now, std::int64_t& evicted) {
    {
        // Another site's alert, or another site's waiting report: not this site's to touch.
        Stmt s(
            db_,
            "SELECT site FROM alerts WHERE id = ?1 UNION ALL SELECT site FROM pending_clips WHERE event_id = "
            "?1");
        s.bind(1, event_id);
        while (s.step())
            if (s.text(0) != site) return false;
    }
    // A late copy of the report of an alert retention deleted: taken, and not kept.
    if (was_deleted(event_id)) return false;
    // Its start is still on its way (a replay brings it): the report waits for it, and a redelivered
    // copy replaces the first.
    Stmt(db_, "INSERT OR REPLACE INTO pending_clips(event_id, site, report, received_at) VALUES(?,?,?,?)")
        .bind(1, event_id)
        .bind(2, site)
        .bind(3, report.dump())
        .bind(4, iso8601_utc(now))
        .run();
    // A site sending reports of events that never come cannot grow the table without end.
    Stmt(db_,
         "DELETE FROM pending_clips WHERE event_id IN (SELECT event_id FROM pending_clips WHERE site = ?1"
         " ORDER BY received_at DESC, rowid DESC LIMIT -1 OFFSET ?2)")
        .bind(1, site)
        .bind(2, kMaxPendingClips)
        .run();
    evicted = db_.changes();
    return true;
}

void Store::attach_pending_clip(const std::string& site, const std::string& event_id) {
    Stmt(db_,
         "UPDATE alerts SET clip = (SELECT report FROM pending_clips WHERE event_id = ?1 AND site = ?2)"
         " WHERE id = ?1 AND site = ?2 AND EXISTS (SELECT 1 FROM pending_clips WHERE event_id = ?1 AND"
         " site = ?2)")
        .bind(1, event_id)
        .bind(2, site)
        .run();
    Stmt(db_, "DELETE FROM pending_clips WHERE event_id = ?1 AND site = ?2")
        .bind(1, event_id)
        .bind(2, site)
        .run();
}

bool Store::room_for_rollups(const std::string& site, const std::string& sensor) {
    auto& known = rollup_sensors_[site];
    if (known.contains(sensor)) return true;
    // Not one this instance stored: read the site's sensors again (another instance of a share
    // group may have stored it, retention may have freed places), one index lookup per sensor (a
    // skip scan), not its every minute. Kept only when read whole.
    Stmt s(db_,
           "WITH RECURSIVE s(sensor) AS (SELECT min(sensor) FROM rollups WHERE site = ?1 UNION ALL "
           "SELECT (SELECT min(sensor) FROM rollups WHERE site = ?1 AND sensor > s.sensor) FROM s "
           "WHERE s.sensor IS NOT NULL) SELECT sensor FROM s WHERE sensor IS NOT NULL");
    s.bind(1, site);
    std::set<std::string> found;
    while (s.step()) found.insert(s.text(0));
    known = std::move(found);
    if (known.contains(sensor) || known.size() < static_cast<std::size_t>(kMaxSourcesPerSite)) return true;
    // A site at the cap that renamed a sensor: the old name's minutes keep their place until
    // retention deletes them, and the new name is in the site's gateway message.
    Stmt listed(
        db_,
        "SELECT EXISTS (SELECT 1 FROM sites, json_each(sites.gateway, '$.sensors') WHERE sites.site = ?1 "
        "AND json_valid(sites.gateway) AND CASE WHEN json_each.type = 'object' THEN json_extract(value, "
        "'$.id') END = ?2)");
    listed.bind(1, site).bind(2, sensor);
    return listed.step() && listed.integer(0) != 0;
}

bool Store::add_rollup(const std::string& site, const std::string& sensor, const json& r) {
    std::lock_guard lock(mutex_);
    if (!room_for_rollups(site, sensor)) return false;
    ensure_site(site);
    // A redelivered minute replaces itself. A partial one (a gateway restarted within it: the
    // stop sent the part before, the next run the part after) adds to the part already there:
    // replaced, the minute kept only its last part. A part is added once: the ids of those added
    // are kept, and one delivered again (QoS 1: its PUBACK was lost) leaves the row as it is. A
    // part without an id (a gateway before ids) is added each time it comes.
    const auto partial = r.value("partial", false);
    const auto part = partial ? text(r, "part") : std::nullopt;
    // Parts in two units (the sensor's unit changed at that reload or restart) are not one minute:
    // merged, degF and degC made a false excursion on the day's curve; the later part replaces. The
    // ids stay: a late copy of the old unit's part is a repeat, not the minute's newest part.
    // The ids stop being kept past kMaxPartsText (a gateway restarting in a loop within a minute):
    // the parts after it are still added, and a redelivery of one of them counts twice.
    Stmt s(
        db_,
        partial
            ? "INSERT INTO rollups(site, sensor, minute, unit, min, mean, max, count, parts)"
              " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9) ON CONFLICT(site, sensor, minute) DO UPDATE SET"
              " unit = excluded.unit,"
              " min = CASE WHEN rollups.unit IS excluded.unit THEN min(rollups.min, excluded.min)"
              " ELSE excluded.min END,"
              " max = CASE WHEN rollups.unit IS excluded.unit THEN max(rollups.max, excluded.max)"
              " ELSE excluded.max END,"
              " mean = CASE WHEN rollups.unit IS excluded.unit AND rollups.count + excluded.count > 0"
              " THEN (rollups.mean * rollups.count + excluded.mean * excluded.count) /"
              " (rollups.count + excluded.count) ELSE excluded.mean END,"
              " count = CASE WHEN rollups.unit IS excluded.unit THEN rollups.count + excluded.count"
              " ELSE excluded.count END,"
              " parts = CASE WHEN excluded.parts IS NULL OR length(rollups.parts) >= ?10 THEN rollups.parts"
              " WHEN rollups.parts IS NULL THEN excluded.parts"
              " ELSE rollups.parts || ',' || excluded.parts END"
              " WHERE excluded.parts IS NULL OR"
              " instr(',' || COALESCE(rollups.parts, '') || ',', ',' || excluded.parts || ',') = 0"
            : "INSERT OR REPLACE INTO rollups(site, sensor, minute, unit, min, mean, max, count, parts)"
              " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)");
    s.bind(1, site).bind(2, sensor).bind(3, r.at("minute").get<std::string>()).bind(4, text(r, "unit"));
    s.bind(5, r.at("min").get<double>())
        .bind(6, r.at("mean").get<double>())
        .bind(7, r.at("max").get<double>());
    s.bind(8, r.at("count").get<std::int64_t>()).bind(9, part);
    if (partial) s.bind(10, static_cast<std::int64_t>(kMaxPartsText));
    s.run();
    rollup_sensors_[site].insert(sensor);  // once stored: a failed write is not a sensor the site has
    return true;
}

json Store::sites() {
    std::lock_guard lock(mutex_);
    return read_sites(std::nullopt);
}

std::optional<json> Store::site(const std::string& site) {
    std::lock_guard lock(mutex_);
    auto list = read_sites(site);
    if (list.empty()) return std::nullopt;
    return std::move(list[0]);
}

json Store::read_sites(const std::optional<std::string>& only) {
    json out = json::array();
    static const std::string kSelect =
        "SELECT s.site, s.name, s.availability, s.availability_time, s.last_seen, s.gateway,"
        " (SELECT COUNT(*) FROM alerts a WHERE a.site = s.site AND a.status != 'closed'),"
        " (SELECT COUNT(*) FROM alerts a WHERE a.site = s.site AND a.status != 'closed' AND a.severity = 1),"
        " q.stream, q.lost,"
        " (SELECT COALESCE(SUM(m.to_seq - m.from_seq + 1), 0) FROM seq_missing m WHERE m.site = q.site AND"
        " m.stream = q.stream)"
        " FROM sites s LEFT JOIN seq_streams q ON q.site = s.site AND q.current = 1";
    // One site by its key (a live update), not a scan of every site as `?1 IS NULL OR ...` would be.
    Stmt s(db_, (kSelect + (only ? " WHERE s.site = ?1" : " ORDER BY s.site")).c_str());
    if (only) s.bind(1, *only);
    while (s.step()) {
        json site = {{"site", s.text(0)},
                     {"name", s.opt_text(1) ? json(*s.opt_text(1)) : json(nullptr)},
                     {"availability", s.opt_text(2) ? json(*s.opt_text(2)) : json(nullptr)},
                     {"availability_time", s.opt_text(3) ? json(*s.opt_text(3)) : json(nullptr)},
                     {"last_seen", s.opt_text(4) ? json(*s.opt_text(4)) : json(nullptr)},
                     {"open_alerts", s.integer(6)},
                     {"open_tier1", s.integer(7)},
                     // null: the site's gateway sends no sequence numbers (an older version).
                     {"stream", s.opt_text(8) ? json(*s.opt_text(8)) : json(nullptr)},
                     {"lost_messages", s.is_null(9) ? json(nullptr) : json(s.integer(9))},
                     {"missing_messages", s.is_null(8) ? json(nullptr) : json(s.integer(10))},
                     {"cameras", json::array()},
                     {"sensors", json::array()},
                     {"config_warnings", json::array()}};
        if (const auto gw = s.opt_text(5)) {
            const auto info = json::parse(*gw, nullptr, false);
            if (info.is_object()) {
                // Read by type: a site's message of another shape must not break the list for all.
                site["version"] = text(info, "version").value_or("");
                site["started_at"] = text(info, "started_at").value_or("");
                // Present after a reload: when the configuration the site runs was loaded.
                if (const auto reloaded = text(info, "reloaded_at")) site["reloaded_at"] = *reloaded;
                site["config_warnings"] = config_warnings(info);
            }
        }
        out.push_back(std::move(site));
    }
    for (auto& site : out) {
        Stmt c(db_, "SELECT state FROM cameras WHERE site = ? ORDER BY camera");
        c.bind(1, site["site"].get<std::string>());
        while (c.step()) site["cameras"].push_back(json::parse(c.text(0), nullptr, false));
        Stmt n(db_, "SELECT state FROM sensors WHERE site = ? ORDER BY sensor");
        n.bind(1, site["site"].get<std::string>());
        while (n.step()) site["sensors"].push_back(json::parse(n.text(0), nullptr, false));
    }
    return out;
}

Alert Store::read_alert(Stmt& s) {
    Alert a;
    a.id = s.text(0);
    a.site = s.text(1);
    a.source_kind = s.text(2);
    a.source = s.text(3);
    a.check = s.text(4);
    a.label = s.text(5);
    a.severity = static_cast<int>(s.integer(6));
    a.condition = s.text(7);
    a.start_time = s.text(8);
    a.end_time = s.opt_text(9);
    a.score = s.real(10);
    a.top_score = s.real(11);
    if (!s.is_null(12)) a.value = s.real(12);
    a.unit = s.text(13);
    a.last_seq = s.integer(14);
    a.received_at = s.text(15);
    a.updated_at = s.text(16);
    a.status = parse_status(s.text(17)).value_or(Status::open);
    a.acknowledged_by = s.opt_text(18);
    a.acknowledged_at = s.opt_text(19);
    a.closed_by = s.opt_text(20);
    a.closed_at = s.opt_text(21);
    a.close_note = s.opt_text(22);
    a.clip = s.opt_text(23);
    a.has_snapshot = s.integer(24) != 0;
    a.messages = static_cast<int>(s.integer(25));
    a.end_reason = s.opt_text(26);
    a.cause = s.opt_text(27);
    if (!s.is_null(28)) a.windows_missed = s.integer(28);
    return a;
}

namespace {

// The filter's WHERE clause over alerts `a`, only the conditions it sets, parameters ?1 to ?4
// (bind_filter): a clause of `?1 IS NULL OR ...` terms reads no index and scanned every alert ever
// stored for each list and count.
std::string filter_clause(const AlertFilter& f) {
    std::string out = "1";
    if (f.site) out += " AND a.site = ?1";
    if (f.check) out += " AND a.check_name = ?2";
    if (f.severity) out += " AND a.severity = ?3";
    // Spelled as the active indexes' own condition, so that SQLite uses them.
    if (!f.all) out += f.status ? " AND a.status = ?4" : " AND a.status != 'closed'";
    return out;
}

void bind_filter(Stmt& s, const AlertFilter& f) {
    if (f.site) s.bind(1, *f.site);
    if (f.check) s.bind(2, *f.check);
    if (f.severity) s.bind(3, *f.severity);
    if (!f.all && f.status) s.bind(4, std::string_view(to_string(*f.status)));
}

}  // namespace

std::vector<Alert> Store::alerts(const AlertFilter& f) {
    std::lock_guard lock(mutex_);
    // Most urgent first: tier 1 before tier 2 before tier 3, then the newest.
    const std::string sql =
        fmt::format("SELECT {} FROM alerts a WHERE {} ORDER BY a.severity, a.received_at DESC, a.id LIMIT ?5",
                    alert_columns(), filter_clause(f));
    Stmt s(db_, sql.c_str());
    bind_filter(s, f);
    s.bind(5, f.limit);
    std::vector<Alert> out;
    while (s.step()) out.push_back(read_alert(s));
    return out;
}

std::int64_t Store::count_alerts(const AlertFilter& f) {
    std::lock_guard lock(mutex_);
    const std::string sql = fmt::format("SELECT COUNT(*) FROM alerts a WHERE {}", filter_clause(f));
    Stmt s(db_, sql.c_str());
    bind_filter(s, f);
    s.step();
    return s.integer(0);
}

std::optional<Alert> Store::alert(const std::string& id) {
    std::lock_guard lock(mutex_);
    const std::string sql = fmt::format("SELECT {} FROM alerts a WHERE a.id = ?", alert_columns());
    Stmt s(db_, sql.c_str());
    s.bind(1, id);
    if (!s.step()) return std::nullopt;
    return read_alert(s);
}

json Store::alert_history(const std::string& id, std::size_t* total) {
    std::lock_guard lock(mutex_);
    Stmt count(db_, message_count_ ? "SELECT COALESCE(messages, (SELECT count(*) FROM event_messages WHERE "
                                     "event_id = ?1)) FROM alerts WHERE id = ?1"
                                   : "SELECT count(*) FROM event_messages WHERE event_id = ?1");
    count.bind(1, id);
    const auto n = count.step() ? static_cast<std::size_t>(count.integer(0)) : 0;
    if (total) *total = n;
    json out = json::array();
    const auto read = [&](const char* order, std::size_t limit) {
        const auto sql = fmt::format(
            "SELECT message_id, seq, state, time, received_at, payload FROM event_messages WHERE event_id = "
            "? "
            "ORDER BY seq {0}, received_at {0} LIMIT ?",
            order);
        Stmt s(db_, sql.c_str());
        s.bind(1, id).bind(2, static_cast<std::int64_t>(limit));
        json rows = json::array();
        while (s.step()) {
            json payload = json::parse(s.text(5), nullptr, false);
            json windows = nullptr;
            if (payload.is_object()) {
                if (const auto read = read_windows_missed(payload); read.windows) windows = *read.windows;
            }
            rows.push_back(
                {{"message_id", s.text(0)},
                 {"seq", s.integer(1)},
                 {"state", s.text(2)},
                 {"time", s.text(3)},
                 {"received_at", s.text(4)},
                 {"score", payload.is_object() && payload.contains("score") && payload["score"].is_number()
                               ? payload["score"].get<double>()
                               : 0.0},
                 {"end_reason", payload.is_object() && payload.contains("end_reason") ? payload["end_reason"]
                                                                                      : json(nullptr)},
                 {"cause", payload.is_object() ? read_event_cause(payload).cause.value_or(json(nullptr))
                                               : json(nullptr)},
                 {"windows_missed", std::move(windows)}});
        }
        return rows;
    };
    if (n <= 2 * kHistoryEnds) return read("ASC", n);
    out = read("ASC", kHistoryEnds);
    auto last = read("DESC", kHistoryEnds);
    for (auto it = last.rbegin(); it != last.rend(); ++it) out.push_back(std::move(*it));
    return out;
}

namespace {

ActionRecord read_action(Stmt& s) {
    ActionRecord r;
    r.seq = s.integer(0);
    r.event_id = s.text(1);
    r.site = s.text(2);
    r.action = s.text(3);
    r.status_after = s.text(4);
    r.operator_name = s.text(5);
    r.note = s.text(6);
    r.time = s.text(7);
    r.published_at = s.opt_text(8);
    r.monitor = s.text(9);
    return r;
}

constexpr const char* kActionColumns =
    "seq, event_id, site, action, status_after, operator, note, time, published_at, monitor";

}  // namespace

std::vector<ActionRecord> Store::actions(const std::string& id) {
    std::lock_guard lock(mutex_);
    const std::string sql =
        fmt::format("SELECT {} FROM actions WHERE event_id = ? ORDER BY seq", kActionColumns);
    Stmt s(db_, sql.c_str());
    s.bind(1, id);
    std::vector<ActionRecord> out;
    while (s.step()) out.push_back(read_action(s));
    return out;
}

std::optional<std::string> Store::snapshot(const std::string& id) {
    std::lock_guard lock(mutex_);
    Stmt s(db_, "SELECT jpeg FROM snapshots WHERE event_id = ?");
    s.bind(1, id);
    if (!s.step()) return std::nullopt;
    return s.blob(0);
}

std::optional<json> Store::rollups(const std::string& site, const std::string& from, const std::string& to) {
    std::lock_guard lock(mutex_);
    {
        Stmt known(db_, "SELECT 1 FROM sites WHERE site = ?");
        known.bind(1, site);
        if (!known.step()) return std::nullopt;
    }
    json by_sensor = json::object();
    Stmt s(
        db_,
        "SELECT sensor, unit, minute, min, mean, max, count FROM rollups WHERE site = ? AND minute >= ? AND"
        " minute < ? ORDER BY sensor, minute");
    s.bind(1, site).bind(2, from).bind(3, to);
    while (s.step()) {
        auto& entry = by_sensor[s.text(0)];
        if (entry.is_null()) entry = {{"sensor", s.text(0)}, {"unit", s.text(1)}, {"points", json::array()}};
        entry["points"].push_back({{"minute", s.text(2)},
                                   {"min", s.real(3)},
                                   {"mean", s.real(4)},
                                   {"max", s.real(5)},
                                   {"count", s.integer(6)}});
    }
    json out = json::array();
    for (auto& [name, entry] : by_sensor.items()) out.push_back(std::move(entry));
    return out;
}

std::vector<std::string> Store::checks() {
    std::lock_guard lock(mutex_);
    // One index seek per check name (a handful), where DISTINCT read every alert ever stored.
    Stmt s(db_,
           "WITH RECURSIVE c(name) AS (SELECT MIN(check_name) FROM alerts UNION ALL"
           " SELECT (SELECT MIN(check_name) FROM alerts WHERE check_name > c.name) FROM c WHERE c.name IS "
           "NOT NULL)"
           " SELECT name FROM c WHERE name IS NOT NULL");
    std::vector<std::string> out;
    while (s.step()) out.push_back(s.text(0));
    return out;
}

std::int64_t Store::count_alerts() {
    std::lock_guard lock(mutex_);
    Stmt s(db_, "SELECT COUNT(*) FROM alerts");
    s.step();
    return s.integer(0);
}

std::map<std::string, std::int64_t> Store::count_alerts_by_status() {
    std::lock_guard lock(mutex_);
    std::map<std::string, std::int64_t> out{{"open", 0}, {"acknowledged", 0}, {"closed", 0}};
    Stmt s(db_, "SELECT status, COUNT(*) FROM alerts GROUP BY status");
    while (s.step()) out[s.text(0)] = s.integer(1);
    return out;
}

ActionResult Store::act(const std::string& id, Action action, const std::string& operator_name,
                        const std::string& note, TimePoint now, const std::string& monitor_id) {
    std::lock_guard lock(mutex_);
    Transaction tx(db_);
    std::string site;
    Status current;
    {
        Stmt s(db_, "SELECT site, status FROM alerts WHERE id = ?");
        s.bind(1, id);
        if (!s.step()) return {ActionResult::Code::not_found, "no such alert", std::nullopt};
        site = s.text(0);
        current = parse_status(s.text(1)).value_or(Status::open);
    }
    const auto t = transition(current, action, note);
    if (!t.ok) return {ActionResult::Code::refused, t.error, std::nullopt};
    const std::string when = iso8601_utc(now);
    if (action == Action::acknowledge) {
        Stmt(db_, "UPDATE alerts SET status = ?2, acknowledged_by = ?3, acknowledged_at = ?4 WHERE id = ?1")
            .bind(1, id)
            .bind(2, std::string_view(to_string(t.next)))
            .bind(3, operator_name)
            .bind(4, when)
            .run();
    } else if (action == Action::close) {
        Stmt(db_,
             "UPDATE alerts SET status = ?2, closed_by = ?3, closed_at = ?4, close_note = ?5 WHERE id = ?1")
            .bind(1, id)
            .bind(2, std::string_view(to_string(t.next)))
            .bind(3, operator_name)
            .bind(4, when)
            .bind(5, note)
            .run();
    }
    // Every action, notes included, is a decision the site hears about (published_at set later).
    Stmt(db_,
         "INSERT INTO actions(event_id, site, action, status_after, operator, note, time, monitor)"
         " VALUES(?,?,?,?,?,?,?,?)")
        .bind(1, id)
        .bind(2, site)
        .bind(3, std::string_view(to_string(action)))
        .bind(4, std::string_view(to_string(t.next)))
        .bind(5, operator_name)
        .bind(6, note)
        .bind(7, when)
        .bind(8, monitor_id)
        .run();
    ActionRecord r;
    r.seq = db_.last_insert_rowid();
    r.event_id = id;
    r.site = site;
    r.action = to_string(action);
    r.status_after = to_string(t.next);
    r.operator_name = operator_name;
    r.note = note;
    r.time = when;
    r.monitor = monitor_id;
    tx.commit();
    return {ActionResult::Code::ok, {}, r};
}

std::vector<ActionRecord> Store::unpublished_actions(int limit) {
    std::lock_guard lock(mutex_);
    const std::string sql =
        fmt::format("SELECT {} FROM actions WHERE published_at IS NULL ORDER BY seq LIMIT ?", kActionColumns);
    Stmt s(db_, sql.c_str());
    s.bind(1, limit);
    std::vector<ActionRecord> out;
    while (s.step()) out.push_back(read_action(s));
    return out;
}

void Store::mark_published(std::int64_t seq, TimePoint when) {
    std::lock_guard lock(mutex_);
    Stmt(db_, "UPDATE actions SET published_at = ? WHERE seq = ?")
        .bind(1, iso8601_utc(when))
        .bind(2, seq)
        .run();
}

Pruned Store::prune(TimePoint now, int batch) {
    std::lock_guard lock(mutex_);
    Pruned out;
    {
        // Never counted from more than a day after the last message any site sent: a room whose
        // clock came up a year ahead at a boot (before any site could outvote it, ClockWatch) would
        // delete every record as past its time at the pass at start. A room that ran on is not
        // held back: its sites' messages keep the last one recent.
        Stmt latest(db_, "SELECT max(last_seen) FROM sites");
        if (latest.step() && !latest.is_null(0)) {
            if (const auto seen = parse_iso8601_utc(latest.text(0)))
                now = std::min(now, *seen + std::chrono::hours(24));
        }
    }
    Transaction tx(db_);
    if (retention_.alerts) {
        // An alert whose decisions are not all published yet stays until they are: the site has
        // not heard of its closing.
        Stmt pick(db_,
                  "SELECT id FROM alerts WHERE status = 'closed' AND closed_at < ?1 AND NOT EXISTS"
                  " (SELECT 1 FROM actions WHERE event_id = alerts.id AND published_at IS NULL) LIMIT ?2");
        pick.bind(1, iso8601_utc(now - *retention_.alerts)).bind(2, batch);
        std::vector<std::string> ids;
        while (pick.step()) ids.push_back(pick.text(0));
        const std::string deleted_at = iso8601_utc(now);
        for (const auto& id : ids) {
            Stmt(db_,
                 "INSERT OR REPLACE INTO deleted_alerts(id, site, deleted_at) SELECT id, site, ? FROM alerts "
                 "WHERE id = ?")
                .bind(1, deleted_at)
                .bind(2, id)
                .run();
            for (const char* sql :
                 {"DELETE FROM event_messages WHERE event_id = ?", "DELETE FROM snapshots WHERE event_id = ?",
                  "DELETE FROM actions WHERE event_id = ?", "DELETE FROM alerts WHERE id = ?"}) {
                Stmt(db_, sql).bind(1, id).run();
            }
        }
        out.alerts = static_cast<std::int64_t>(ids.size());
        out.more = out.more || out.alerts == batch;
    }
    if (retention_.snapshots) {
        // Pictures of alerts that are closed, or whose event never came; an open alert keeps its own.
        // Not those whose alert is itself past its time: they go with it, and are counted there.
        Stmt(db_,
             "DELETE FROM snapshots WHERE event_id IN (SELECT s.event_id FROM snapshots s WHERE "
             "s.received_at < ?1"
             " AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.id = s.event_id AND (a.status <> 'closed' OR"
             " a.closed_at < ?3)) LIMIT ?2)")
            .bind(1, iso8601_utc(now - *retention_.snapshots))
            .bind(2, batch)
            .bind(3, retention_.alerts ? iso8601_utc(now - *retention_.alerts) : std::string())
            .run();
        out.snapshots = db_.changes();
        out.more = out.more || out.snapshots == batch;
    }
    if (retention_.snapshots) {
        // Clip reports whose alert never came go with the pictures whose event never came.
        Stmt(db_,
             "DELETE FROM pending_clips WHERE event_id IN (SELECT event_id FROM pending_clips WHERE"
             " received_at < ?1 LIMIT ?2)")
            .bind(1, iso8601_utc(now - *retention_.snapshots))
            .bind(2, batch)
            .run();
        out.pending_clips = db_.changes();
        out.more = out.more || out.pending_clips == batch;
    }
    if (retention_.rollups) {
        Stmt(db_, "DELETE FROM rollups WHERE rowid IN (SELECT rowid FROM rollups WHERE minute < ?1 LIMIT ?2)")
            .bind(1, iso8601_utc(now - *retention_.rollups))
            .bind(2, batch)
            .run();
        out.rollups = db_.changes();
        out.more = out.more || out.rollups == batch;
    }
    // The record of deleted alerts only has to outlast a late copy's redelivery (minutes to days).
    Stmt(db_,
         "DELETE FROM deleted_alerts WHERE rowid IN (SELECT rowid FROM deleted_alerts WHERE deleted_at < ?1 "
         "LIMIT ?2)")
        .bind(1, iso8601_utc(now - kDeletedAlertMemory))
        .bind(2, batch)
        .run();
    tx.commit();
    return out;
}

bool Store::was_deleted(const std::string& id) {
    Stmt s(db_, "SELECT 1 FROM deleted_alerts WHERE id = ?");
    s.bind(1, id);
    return s.step();
}

}  // namespace kg::monitor
