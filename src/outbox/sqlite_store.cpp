#include "outbox/sqlite_store.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <random>

namespace kg::outbox {

namespace {

// Raised with every change of the tables a previous release cannot read as it did (see
// sqlite::Options::version); version 1 is the schema below with the stream_seq columns.
constexpr int kSchemaVersion = 1;
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
  qos INTEGER NOT NULL, retain INTEGER NOT NULL, priority INTEGER NOT NULL,
  stream_seq INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS messages_priority ON messages(priority, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
  qos INTEGER NOT NULL, retain INTEGER NOT NULL, priority INTEGER NOT NULL,
  queued_seq INTEGER NOT NULL, reason TEXT NOT NULL, moved_at INTEGER NOT NULL,
  stream_seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sent (
  seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, sent_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS open_events (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending_clips (event_id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS closing_events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, record TEXT NOT NULL);
)sql";

// The `id` of a numbered message (an event's, a clip report's), for the index that finds one event's
// messages: the same text in the index and in the query, or SQLite does not use the index. A payload
// that is not JSON (none numbered is) indexes as NULL rather than failing its insert.
constexpr const char* kEventIdOf =
    "json_extract(CASE WHEN json_valid(CAST(payload AS TEXT)) THEN CAST(payload AS TEXT) END, '$.id')";

constexpr auto kPersistent = sqlite::Stmt::Use::persistent;
constexpr std::int64_t kPruneEvery = 60;  // seconds between two deletions of expired sent messages

std::int64_t unix_now() { return static_cast<std::int64_t>(std::time(nullptr)); }

// Brings a database of an earlier version up to date (the stream_seq columns and their indexes), and gives it
// its stream id if it has none: once, when it is created (or first opened by this version), with
// the time it began.
SqliteStore::Stream open_stream(sqlite::Db& db) {
    for (const char* table : {"messages", "dead"}) {
        sqlite::Stmt has(db, "SELECT count(*) FROM pragma_table_info(?) WHERE name = 'stream_seq'");
        if (has.bind(1, table).step() && has.integer(0) == 0) {
            db.exec(table == std::string("messages")
                        ? "ALTER TABLE messages ADD COLUMN stream_seq INTEGER NOT NULL DEFAULT 0"
                        : "ALTER TABLE dead ADD COLUMN stream_seq INTEGER NOT NULL DEFAULT 0");
        }
    }
    // Here, not in kSchema: a database from before has no stream_seq column until the lines above.
    // The replay lookup (whereabouts) finds numbers through them instead of scanning the queue and its
    // snapshots' pages; the sent table's age expiry runs in the sender's remove().
    db.exec("CREATE INDEX IF NOT EXISTS messages_stream_seq ON messages(stream_seq)");
    db.exec("CREATE INDEX IF NOT EXISTS dead_stream_seq ON dead(stream_seq)");
    db.exec("CREATE INDEX IF NOT EXISTS sent_sent_at ON sent(sent_at)");
    // GET /api/events/<id> of an event older than the log in memory: found by these, not by a scan
    // of the 16 MiB sent table on the thread that serves HTTP (400 ms cold, the review of it).
    db.exec(fmt::format("CREATE INDEX IF NOT EXISTS sent_event_id ON sent(topic, {})", kEventIdOf).c_str());
    db.exec(fmt::format(
                "CREATE INDEX IF NOT EXISTS messages_event_id ON messages(topic, {}) WHERE stream_seq > 0",
                kEventIdOf)
                .c_str());
    // Records of ends no longer queued (removed by a version before the table): nothing to keep.
    db.exec("DELETE FROM closing_events WHERE seq NOT IN (SELECT seq FROM messages)");
    SqliteStore::Stream out;
    sqlite::Transaction transaction(db);
    {
        sqlite::Stmt read(db, "SELECT value FROM meta WHERE key = 'stream'");
        if (read.step()) out.id = fmt::format("{:016x}", static_cast<std::uint64_t>(read.integer(0)));
    }
    if (out.id.empty()) {
        // A new stream. When it began tells the room whether it watched it from its first number
        // (docs/mqtt.md): a stream begun after the room's start is asked for from 1.
        std::random_device random;
        const std::uint64_t id = (static_cast<std::uint64_t>(random()) << 32) | random();
        const auto now_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
        sqlite::Stmt(db, "INSERT INTO meta(key, value) VALUES('stream', ?)")
            .bind(1, static_cast<std::int64_t>(id))
            .run();
        sqlite::Stmt(db, "INSERT INTO meta(key, value) VALUES('stream_started', ?)").bind(1, now_ms).run();
        out.id = fmt::format("{:016x}", id);
    }
    transaction.commit();
    sqlite::Stmt started(db, "SELECT value FROM meta WHERE key = 'stream_started'");
    if (started.step()) out.started = TimePoint(std::chrono::milliseconds(started.integer(0)));
    return out;
}

}  // namespace

SqliteStore::SqliteStore(const std::string& path, Limits limits)
    : limits_(limits),
      db_(path, {.label = "outbox",
                 // FULL: a committed message survives a power cut, not only a crash of the process.
                 .synchronous = sqlite::Synchronous::full,
                 .schema = kSchema,
                 .version = kSchemaVersion}),
      stream_(open_stream(db_)),
      insert_(db_,
              "INSERT INTO messages(topic, payload, qos, retain, priority, stream_seq) VALUES(?,?,?,?,?,?)",
              kPersistent),
      front_(db_,
             "SELECT seq, topic, payload, qos, retain, priority, stream_seq FROM messages WHERE priority = ? "
             "AND seq > ? ORDER BY seq LIMIT 1",
             kPersistent),
      remove_(db_,
              "DELETE FROM messages WHERE seq = ? RETURNING length(payload) + length(topic), stream_seq, "
              "priority",
              kPersistent),
      oldest_of_(db_,
                 "SELECT seq, length(payload) + length(topic) FROM messages WHERE priority = ? ORDER BY seq "
                 "LIMIT 1",
                 kPersistent),
      save_meta_(db_,
                 "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                 "excluded.value",
                 kPersistent),
      raise_meta_(db_,
                  "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                  "max(value, excluded.value)",
                  kPersistent),
      bury_(
          db_,
          "INSERT INTO dead(topic, payload, qos, retain, priority, queued_seq, reason, moved_at, stream_seq) "
          "VALUES(?,?,?,?,?,?,?,strftime('%s','now'),?)",
          kPersistent),
      // Keeps the newest rows within both limits (the newest one always) and deletes the rest in one
      // statement: a table grown large before the limits existed is cut at once, not row by row.
      trim_dead_(
          db_,
          "DELETE FROM dead WHERE seq < (SELECT min(seq) FROM (SELECT seq, row_number() OVER w AS n,"
          " sum(length(payload) + length(topic)) OVER w AS b FROM dead WINDOW w AS (ORDER BY seq DESC))"
          " WHERE n = 1 OR (n <= ?1 AND b <= ?2))",
          kPersistent),
      open_(db_,
            "INSERT INTO open_events(id, record) VALUES(?, ?) ON CONFLICT(id) DO UPDATE SET record = "
            "excluded.record",
            kPersistent),
      close_(db_, "DELETE FROM open_events WHERE id = ?", kPersistent),
      // An end queued keeps its event's record beside it until it is delivered: dropped from a full
      // queue or moved aside instead, the record goes back, and the next start ends the event in
      // the room, which would otherwise keep it open for good.
      closing_(db_,
               "INSERT OR REPLACE INTO closing_events(seq, id, record) SELECT ?, id, record FROM open_events "
               "WHERE id = ?",
               kPersistent),
      reopen_(
          db_,
          "INSERT OR IGNORE INTO open_events(id, record) SELECT id, record FROM closing_events WHERE seq = ?",
          kPersistent),
      closed_(db_, "DELETE FROM closing_events WHERE seq = ?", kPersistent),
      clip_pending_(
          db_,
          "INSERT INTO pending_clips(event_id, record) VALUES(?, ?) ON CONFLICT(event_id) DO UPDATE "
          "SET record = excluded.record",
          kPersistent),
      clip_reported_(db_, "DELETE FROM pending_clips WHERE event_id = ?", kPersistent),
      // A number already kept stays as it is: the first copy acknowledged is the one sent. A replayed
      // copy is not a new sent message: its number's age and place in the table stay the original's.
      keep_sent_(db_,
                 "INSERT INTO sent(seq, topic, payload, sent_at) SELECT stream_seq, topic, payload, ? FROM "
                 "messages WHERE seq = ? AND stream_seq > 0 AND priority <> ? ON CONFLICT(seq) DO NOTHING "
                 "RETURNING length(payload) + length(topic)",
                 kPersistent),
      insert_sent_(
          db_,
          "INSERT INTO sent(seq, topic, payload, sent_at) VALUES(?,?,?,?) ON CONFLICT(seq) DO NOTHING "
          "RETURNING length(payload) + length(topic)",
          kPersistent),
      drop_oldest_sent_(
          db_,
          "DELETE FROM sent WHERE seq = (SELECT min(seq) FROM sent) RETURNING length(payload) + "
          "length(topic)",
          kPersistent),
      expire_sent_(db_, "DELETE FROM sent WHERE sent_at < ? RETURNING length(payload) + length(topic)",
                   kPersistent) {
    load_totals();
}

void SqliteStore::load_totals() {
    sqlite::Stmt s(
        db_,
        "SELECT priority, count(*), coalesce(sum(length(payload) + length(topic)), 0) FROM messages "
        "GROUP BY priority");
    by_priority_ = {};
    while (s.step()) {
        auto& t = totals_of(static_cast<Priority>(std::clamp<std::int64_t>(s.integer(0), 0, 3)));
        t.count += static_cast<std::size_t>(s.integer(1));
        t.bytes += static_cast<std::size_t>(s.integer(2));
    }
    auto counter = [this](const char* key) -> std::uint64_t {
        sqlite::Stmt m(db_, "SELECT value FROM meta WHERE key = ?");
        return m.bind(1, key).step() ? static_cast<std::uint64_t>(m.integer(0)) : 0;
    };
    dropped_ = counter("dropped");
    refused_ = counter("refused");
    // A database from before the counter was kept has only the rows to go by.
    sqlite::Stmt d(db_, "SELECT count(*) FROM dead");
    if (!d.step()) db_.fail("counting dead messages");
    dead_ = std::max(counter("dead"), static_cast<std::uint64_t>(d.integer(0)));
    // Whatever table holds a higher number than meta says (it cannot, unless edited by hand), no
    // number is given twice.
    sqlite::Stmt n(
        db_,
        "SELECT max(coalesce((SELECT value FROM meta WHERE key = 'stream_seq'), 0),"
        " coalesce((SELECT max(stream_seq) FROM messages), 0),"
        " coalesce((SELECT max(stream_seq) FROM dead), 0), coalesce((SELECT max(seq) FROM sent), 0))");
    if (!n.step()) db_.fail("reading the stream's last number");
    last_stream_seq_ = n.integer(0);
    acknowledged_ = static_cast<std::int64_t>(counter("acknowledged"));
    sqlite::Stmt sent(db_, "SELECT count(*), coalesce(sum(length(payload) + length(topic)), 0) FROM sent");
    if (!sent.step()) db_.fail("measuring the sent messages");
    sent_count_ = static_cast<std::size_t>(sent.integer(0));
    sent_bytes_ = static_cast<std::size_t>(sent.integer(1));
}

void SqliteStore::note_assigned(std::int64_t stream_seq) {
    if (stream_seq <= last_stream_seq_) return;
    raise_meta_.reset();
    raise_meta_.bind(1, "stream_seq").bind(2, stream_seq).run();
    last_stream_seq_ = stream_seq;
}

void SqliteStore::note_acknowledged(std::int64_t stream_seq) {
    if (stream_seq <= acknowledged_) return;
    raise_meta_.reset();
    raise_meta_.bind(1, "acknowledged").bind(2, stream_seq).run();
    acknowledged_ = stream_seq;
}

void SqliteStore::expire_sent(std::int64_t now) {
    last_prune_ = now;
    expire_sent_.reset();
    expire_sent_.bind(1, now - limits_.keep_sent.count());
    while (expire_sent_.step()) {
        --sent_count_;
        sent_bytes_ -= std::min(sent_bytes_, static_cast<std::size_t>(expire_sent_.integer(0)));
    }
    expire_sent_.reset();
}

void SqliteStore::trim_sent() {
    while (sent_bytes_ > limits_.keep_sent_bytes && sent_count_ > 0) {
        drop_oldest_sent_.reset();
        if (!drop_oldest_sent_.step()) break;
        const auto size = static_cast<std::size_t>(drop_oldest_sent_.integer(0));
        drop_oldest_sent_.reset();
        --sent_count_;
        sent_bytes_ -= std::min(sent_bytes_, size);
    }
}

bool SqliteStore::fits(Totals queued, std::size_t incoming_bytes) const {
    return queued.count + 1 <= limits_.max_messages && queued.bytes + incoming_bytes <= limits_.max_bytes;
}

SqliteStore::Totals& SqliteStore::totals_of(Priority p) {
    return by_priority_[static_cast<std::size_t>(std::clamp(static_cast<int>(p), 0, 3))];
}

SqliteStore::Totals SqliteStore::sum(int from, int to) const {
    Totals t;
    for (int p = std::max(from, 0); p < std::min(to, 4); ++p) {
        t.count += by_priority_[static_cast<std::size_t>(p)].count;
        t.bytes += by_priority_[static_cast<std::size_t>(p)].bytes;
    }
    return t;
}

void SqliteStore::counted_in(Priority p, std::size_t size) {
    auto& t = totals_of(p);
    ++t.count;
    t.bytes += size;
}

void SqliteStore::counted_out(Priority p, std::size_t size) {
    auto& t = totals_of(p);
    t.count -= std::min<std::size_t>(t.count, 1);
    t.bytes -= std::min(t.bytes, size);
}

bool SqliteStore::room_possible(std::size_t incoming_bytes, Priority incoming) {
    // What stays whatever goes for it: the messages more important than it (a smaller Priority).
    return fits(sum(0, static_cast<int>(incoming)), incoming_bytes);
}

std::size_t SqliteStore::drop_for_room(std::size_t incoming_bytes, Priority incoming) {
    std::size_t dropped = 0;
    for (Priority p : {Priority::replay, Priority::telemetry, Priority::evidence, Priority::alert}) {
        if (p < incoming) break;  // never evict a more important message for this one
        while (sum().count > 0 && !fits(sum(), incoming_bytes)) {
            oldest_of_.reset();
            if (!oldest_of_.bind(1, static_cast<int>(p)).step()) break;  // none of this priority left
            const auto seq = oldest_of_.integer(0);
            oldest_of_.reset();
            if (!erase(seq)) break;
            ++dropped;
        }
    }
    return dropped;
}

void SqliteStore::save_counter(const char* key, std::uint64_t value) {
    save_meta_.reset();
    save_meta_.bind(1, key).bind(2, static_cast<std::int64_t>(value)).run();
}

void SqliteStore::insert(Message& m) {
    insert_.reset();
    insert_.bind(1, m.topic)
        .bind_blob(2, m.payload)
        .bind(3, m.qos)
        .bind(4, m.retain ? 1 : 0)
        .bind(5, static_cast<int>(m.priority))
        .bind(6, m.stream_seq)
        .run();
    m.seq = db_.last_insert_rowid();
}

SqliteStore::Appended SqliteStore::add(Message& m) {
    const std::size_t size = m.payload.size() + m.topic.size();
    // Given even if refused: a number is never given twice (the room learns of the gap as lost).
    note_assigned(m.stream_seq);
    if (!room_possible(size, m.priority)) {
        ++refused_;
        save_counter("refused", refused_);
        return {.stored = false, .dropped = 0};
    }
    const std::size_t dropped = drop_for_room(size, m.priority);
    if (dropped > 0) {
        dropped_ += dropped;
        save_counter("dropped", dropped_);
    }
    insert(m);
    mark(m);
    counted_in(m.priority, size);
    return {.stored = true, .dropped = dropped};
}

SqliteStore::Appended SqliteStore::append(Message& m) {
    std::lock_guard lock(mutex_);
    try {
        // Inside the try: by the time the handler reloads the totals, leaving this block has
        // rolled the transaction back.
        sqlite::Transaction tx(db_);
        const auto result = add(m);
        tx.commit();
        return result;
    } catch (...) {
        // The counters count rows the rollback took back (or brought back, for drop_for_room()).
        load_totals();
        throw;
    }
}

std::vector<SqliteStore::Appended> SqliteStore::append_all(std::vector<Message>& messages) {
    std::lock_guard lock(mutex_);
    std::vector<Appended> results;
    results.reserve(messages.size());
    try {
        sqlite::Transaction tx(db_);
        for (auto& m : messages) results.push_back(add(m));
        tx.commit();
    } catch (...) {
        load_totals();
        throw;
    }
    return results;
}

void SqliteStore::mark(const Message& m) {
    switch (m.open_event.kind) {
        case OpenEventMark::Kind::none:
            break;
        case OpenEventMark::Kind::open:
            open_.reset();
            open_.bind(1, m.open_event.id).bind(2, m.open_event.record).run();
            break;
        case OpenEventMark::Kind::close:
            closing_.reset();
            closing_.bind(1, m.seq).bind(2, m.open_event.id).run();
            close_.reset();
            close_.bind(1, m.open_event.id).run();
            break;
    }
    switch (m.clip.kind) {
        case ClipMark::Kind::none:
            break;
        case ClipMark::Kind::pending:
            clip_pending_.reset();
            clip_pending_.bind(1, m.clip.event_id).bind(2, m.clip.record).run();
            break;
        case ClipMark::Kind::reported:
            clip_reported_.reset();
            clip_reported_.bind(1, m.clip.event_id).run();
            break;
    }
}

std::vector<OpenEvent> SqliteStore::open_events() {
    std::lock_guard lock(mutex_);
    // rowid: an update's upsert keeps the row, so this is the order the events started in.
    sqlite::Stmt s(db_, "SELECT id, record FROM open_events ORDER BY rowid");
    std::vector<OpenEvent> out;
    while (s.step()) out.push_back({s.text(0), s.text(1)});
    return out;
}

void SqliteStore::forget_open_event(const std::string& id) {
    std::lock_guard lock(mutex_);
    close_.reset();
    close_.bind(1, id).run();
}

std::vector<OpenEvent> SqliteStore::pending_clips() {
    std::lock_guard lock(mutex_);
    sqlite::Stmt s(db_, "SELECT event_id, record FROM pending_clips ORDER BY rowid");
    std::vector<OpenEvent> out;
    while (s.step()) out.push_back({s.text(0), s.text(1)});
    return out;
}

void SqliteStore::forget_pending_clip(const std::string& event_id) {
    std::lock_guard lock(mutex_);
    clip_reported_.reset();
    clip_reported_.bind(1, event_id).run();
}

void SqliteStore::Sent::mark(Priority p, std::int64_t seq) {
    auto& cursor = p == Priority::telemetry ? telemetry : p == Priority::replay ? replay : live;
    cursor = std::max(cursor, seq);
}

std::optional<Message> SqliteStore::front() { return front(Sent{}); }

std::optional<Message> SqliteStore::front(const Sent& sent) {
    std::lock_guard lock(mutex_);
    // The head of one priority's queue (the index on priority and seq: no scan of the others).
    auto head = [&](Priority priority) -> std::optional<Message> {
        const std::int64_t after = priority == Priority::telemetry ? sent.telemetry
                                   : priority == Priority::replay  ? sent.replay
                                                                   : sent.live;
        auto& q = front_;
        q.reset();
        if (!q.bind(1, static_cast<std::int64_t>(priority)).bind(2, after).step()) {
            q.reset();
            return std::nullopt;
        }
        Message m;
        m.seq = q.integer(0);
        m.topic = q.text(1);
        m.payload = q.blob(2);
        m.qos = static_cast<int>(q.integer(3));
        m.retain = q.integer(4) != 0;
        m.priority = static_cast<Priority>(q.integer(5));
        m.stream_seq = q.integer(6);
        q.reset();
        return m;
    };
    // Alerts and their evidence first, together in the order they were committed (a start before
    // its snapshot, clip report and end; the numbers in order). Then the sensors' roll-ups: after
    // a broker outage of days, thousands of them queued ahead of an alert raised meanwhile, and it
    // waited for each one's round trip. Replay answers last: an answer of thousands of copies on a
    // slow uplink must not hold back an alert either.
    auto alert = head(Priority::alert);
    auto evidence = head(Priority::evidence);
    if (alert && (!evidence || alert->seq < evidence->seq)) return alert;
    if (evidence) return evidence;
    if (auto rollup = head(Priority::telemetry)) return rollup;
    return head(Priority::replay);
}

bool SqliteStore::erase(std::int64_t seq) {
    remove_.reset();
    if (!remove_.bind(1, seq).step()) {
        remove_.reset();
        return false;  // already gone
    }
    const auto size = static_cast<std::size_t>(remove_.integer(0));
    const auto priority = static_cast<Priority>(remove_.integer(2));
    remove_.run();
    reopen_.reset();
    reopen_.bind(1, seq).run();
    closed_.reset();
    closed_.bind(1, seq).run();
    counted_out(priority, size);
    return true;
}

void SqliteStore::remove(std::int64_t seq) {
    std::lock_guard lock(mutex_);
    const auto now = unix_now();
    try {
        // One transaction: a crash never leaves an acknowledged message neither queued nor kept.
        sqlite::Transaction tx(db_);
        if (limits_.keep_sent.count() > 0) {
            keep_sent_.reset();
            if (keep_sent_.bind(1, now).bind(2, seq).bind(3, static_cast<int>(Priority::replay)).step()) {
                sent_bytes_ += static_cast<std::size_t>(keep_sent_.integer(0));
                ++sent_count_;
            }
            keep_sent_.reset();
            trim_sent();
        }
        remove_.reset();
        if (remove_.bind(1, seq).step()) {
            const auto size = static_cast<std::size_t>(remove_.integer(0));
            const auto stream_seq = remove_.integer(1);
            const auto priority = static_cast<Priority>(remove_.integer(2));
            remove_.run();
            closed_.reset();
            closed_.bind(1, seq).run();
            counted_out(priority, size);
            note_acknowledged(stream_seq);
        } else {
            remove_.reset();  // already gone
        }
        // A clock set back (now before the last prune) prunes too: else none until it caught up.
        if ((now < last_prune_ || now - last_prune_ >= kPruneEvery) && sent_count_ > 0) expire_sent(now);
        tx.commit();
    } catch (...) {
        load_totals();  // the rollback took back what the counters already hold
        throw;
    }
}

void SqliteStore::record_sent(const Message& m) {
    if (m.stream_seq <= 0) return;
    std::lock_guard lock(mutex_);
    try {
        sqlite::Transaction tx(db_);
        if (limits_.keep_sent.count() > 0) {
            insert_sent_.reset();
            insert_sent_.bind(1, m.stream_seq).bind(2, m.topic).bind_blob(3, m.payload).bind(4, unix_now());
            if (insert_sent_.step()) {
                sent_bytes_ += static_cast<std::size_t>(insert_sent_.integer(0));
                ++sent_count_;
            }
            insert_sent_.reset();
            trim_sent();
        }
        note_assigned(m.stream_seq);
        note_acknowledged(m.stream_seq);
        tx.commit();
    } catch (...) {
        load_totals();
        throw;
    }
}

void SqliteStore::prune_sent(std::int64_t now) {
    std::lock_guard lock(mutex_);
    try {
        sqlite::Transaction tx(db_);
        expire_sent(now);
        tx.commit();
    } catch (...) {
        load_totals();
        throw;
    }
}

SqliteStore::Whereabouts SqliteStore::whereabouts(std::int64_t from, std::int64_t to, std::int64_t now) {
    std::lock_guard lock(mutex_);
    Whereabouts out;
    {
        // Acknowledged before now - keep_sent: not kept, even if the next prune has not run yet.
        sqlite::Stmt s(
            db_,
            "SELECT seq, topic, payload FROM sent WHERE seq BETWEEN ? AND ? AND sent_at >= ? ORDER BY seq");
        s.bind(1, from).bind(2, to).bind(3, now - limits_.keep_sent.count());
        while (s.step()) out.kept.push_back({s.integer(0), s.text(1), s.blob(2)});
    }
    const auto numbers = [&](const char* sql, std::vector<std::int64_t>& into) {
        sqlite::Stmt s(db_, sql);
        s.bind(1, from).bind(2, to);
        while (s.step()) into.push_back(s.integer(0));
    };
    numbers("SELECT stream_seq FROM messages WHERE stream_seq BETWEEN ? AND ? ORDER BY stream_seq",
            out.queued);
    numbers("SELECT stream_seq FROM dead WHERE stream_seq BETWEEN ? AND ? ORDER BY stream_seq", out.dead);
    return out;
}

std::vector<std::string> SqliteStore::latest_numbered(const std::string& topic, std::size_t limit,
                                                      const std::string& containing) {
    std::lock_guard lock(mutex_);
    // Each table walked back from its newest number (its primary key, the stream_seq index) until
    // it has `limit`: a start reads some hundreds of rows, not the 16 MiB the sent table may hold
    // (with `containing`, it may read them all, to find a few).
    sqlite::Stmt s(db_,
                   "SELECT payload FROM ("
                   "SELECT * FROM (SELECT seq AS n, payload FROM sent WHERE topic = ?1 AND (?3 = '' OR "
                   "instr(CAST(payload AS TEXT), ?3) > 0) ORDER BY seq DESC LIMIT ?2) UNION ALL "
                   "SELECT * FROM (SELECT stream_seq AS n, payload FROM messages WHERE topic = ?1 AND "
                   "stream_seq > 0 AND (?3 = '' OR instr(CAST(payload AS TEXT), ?3) > 0) ORDER BY stream_seq "
                   "DESC LIMIT ?2)) ORDER BY n DESC LIMIT ?2");
    s.bind(1, topic).bind(2, static_cast<std::int64_t>(limit)).bind(3, containing);
    std::vector<std::string> out;
    while (s.step()) out.push_back(s.blob(0));
    std::reverse(out.begin(), out.end());
    return out;
}

std::vector<std::string> SqliteStore::numbered_of_event(const std::string& topic, const std::string& event_id,
                                                        std::size_t limit) {
    std::lock_guard lock(mutex_);
    const auto sql = fmt::format(
        "SELECT payload FROM (SELECT seq AS n, payload FROM sent WHERE topic = ?1 AND {0} = ?2 UNION ALL "
        "SELECT stream_seq AS n, payload FROM messages WHERE topic = ?1 AND stream_seq > 0 AND {0} = ?2) "
        "ORDER BY n DESC LIMIT ?3",
        kEventIdOf);
    sqlite::Stmt s(db_, sql.c_str());
    s.bind(1, topic).bind(2, event_id).bind(3, static_cast<std::int64_t>(limit));
    std::vector<std::string> out;
    while (s.step()) out.push_back(s.blob(0));
    std::reverse(out.begin(), out.end());
    return out;
}

void SqliteStore::note_alive(std::int64_t unix_ms) {
    std::lock_guard lock(mutex_);
    save_meta_.reset();
    save_meta_.bind(1, "alive_at").bind(2, unix_ms).run();
}

std::optional<std::int64_t> SqliteStore::alive_at() {
    std::lock_guard lock(mutex_);
    sqlite::Stmt m(db_, "SELECT value FROM meta WHERE key = 'alive_at'");
    if (!m.step()) return std::nullopt;
    return m.integer(0);
}

std::int64_t SqliteStore::last_stream_seq() const {
    std::lock_guard lock(mutex_);
    return last_stream_seq_;
}

std::int64_t SqliteStore::highest_acknowledged() const {
    std::lock_guard lock(mutex_);
    return acknowledged_;
}

std::size_t SqliteStore::sent_count() const {
    std::lock_guard lock(mutex_);
    return sent_count_;
}

std::size_t SqliteStore::sent_bytes() const {
    std::lock_guard lock(mutex_);
    return sent_bytes_;
}

std::size_t SqliteStore::bury(const Message& m, const std::string& reason) {
    std::lock_guard lock(mutex_);
    std::size_t pruned = 0;
    try {
        sqlite::Transaction tx(db_);
        bury_.reset();
        bury_.bind(1, m.topic)
            .bind_blob(2, m.payload)
            .bind(3, m.qos)
            .bind(4, m.retain ? 1 : 0)
            .bind(5, static_cast<int>(m.priority))
            .bind(6, m.seq)
            .bind(7, reason)
            .bind(8, m.stream_seq)
            .run();
        if (m.seq > 0) erase(m.seq);
        note_assigned(m.stream_seq);  // a message from memory: its number may be news to the store
        trim_dead_.reset();
        trim_dead_.bind(1, static_cast<std::int64_t>(limits_.max_dead))
            .bind(2, static_cast<std::int64_t>(limits_.max_dead_bytes))
            .run();
        pruned = static_cast<std::size_t>(db_.changes());
        save_counter("dead", dead_ + 1);
        tx.commit();
        ++dead_;
    } catch (...) {
        load_totals();  // erase() counted a row the rollback brought back
        throw;
    }
    return pruned;
}

std::size_t SqliteStore::requeue_dead() {
    std::lock_guard lock(mutex_);
    std::size_t back = 0;
    try {
        sqlite::Transaction tx(db_);
        struct Row {
            std::int64_t seq;
            Message m;
        };
        std::vector<Row> rows;
        {
            sqlite::Stmt s(
                db_, "SELECT seq, topic, payload, qos, retain, priority, stream_seq FROM dead ORDER BY seq");
            while (s.step()) {
                Row r{s.integer(0), {}};
                r.m.topic = s.text(1);
                r.m.payload = s.blob(2);
                r.m.qos = static_cast<int>(s.integer(3));
                r.m.retain = s.integer(4) != 0;
                r.m.priority = static_cast<Priority>(s.integer(5));
                r.m.stream_seq = s.integer(6);
                rows.push_back(std::move(r));
            }
        }
        for (auto& [seq, m] : rows) {
            const std::size_t size = m.payload.size() + m.topic.size();
            // Only into free room: these are older than anything queued, and must not push it out.
            if (!fits(sum(), size)) continue;
            insert(m);
            sqlite::Stmt(db_, "DELETE FROM dead WHERE seq = ?").bind(1, seq).run();
            counted_in(m.priority, size);
            ++back;
        }
        tx.commit();
    } catch (...) {
        load_totals();  // the rollback took back what the counters already hold
        throw;
    }
    return back;
}

std::vector<SqliteStore::DeadMessage> SqliteStore::dead_messages(std::size_t limit) {
    std::lock_guard lock(mutex_);
    sqlite::Stmt s(
        db_,
        "SELECT seq, queued_seq, moved_at, topic, reason, length(payload) + length(topic), priority FROM "
        "dead ORDER BY seq DESC LIMIT ?");
    s.bind(1, static_cast<std::int64_t>(limit));
    std::vector<DeadMessage> out;
    while (s.step()) {
        DeadMessage d;
        d.seq = s.integer(0);
        d.queued_seq = s.integer(1);
        d.moved_at = s.integer(2);
        d.topic = s.text(3);
        d.reason = s.text(4);
        d.bytes = static_cast<std::size_t>(s.integer(5));
        d.priority = static_cast<Priority>(s.integer(6));
        out.push_back(std::move(d));
    }
    return out;
}

std::uint64_t SqliteStore::refused_total() const {
    std::lock_guard lock(mutex_);
    return refused_;
}

std::uint64_t SqliteStore::dead_total() const {
    std::lock_guard lock(mutex_);
    return dead_;
}

std::size_t SqliteStore::size() const {
    std::lock_guard lock(mutex_);
    return sum().count;
}

std::size_t SqliteStore::bytes() const {
    std::lock_guard lock(mutex_);
    return sum().bytes;
}

std::uint64_t SqliteStore::dropped_total() const {
    std::lock_guard lock(mutex_);
    return dropped_;
}

}  // namespace kg::outbox
