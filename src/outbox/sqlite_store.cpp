#include "outbox/sqlite_store.hpp"

#include <algorithm>

namespace kg::outbox {

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
  qos INTEGER NOT NULL, retain INTEGER NOT NULL, priority INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS messages_priority ON messages(priority, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
  qos INTEGER NOT NULL, retain INTEGER NOT NULL, priority INTEGER NOT NULL,
  queued_seq INTEGER NOT NULL, reason TEXT NOT NULL, moved_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS open_events (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending_clips (event_id TEXT PRIMARY KEY, record TEXT NOT NULL);
)sql";

constexpr auto kPersistent = sqlite::Stmt::Use::persistent;

}  // namespace

SqliteStore::SqliteStore(const std::string& path, Limits limits)
    : limits_(limits),
      db_(path, {.label = "outbox",
                 // FULL: a committed message survives a power cut, not only a crash of the process.
                 .synchronous = sqlite::Synchronous::full,
                 .schema = kSchema}),
      insert_(db_, "INSERT INTO messages(topic, payload, qos, retain, priority) VALUES(?,?,?,?,?)",
              kPersistent),
      front_(db_,
             "SELECT seq, topic, payload, qos, retain, priority FROM messages WHERE seq > ? ORDER BY seq "
             "LIMIT 1",
             kPersistent),
      remove_(db_, "DELETE FROM messages WHERE seq = ? RETURNING length(payload) + length(topic)",
              kPersistent),
      oldest_of_(db_,
                 "SELECT seq, length(payload) + length(topic) FROM messages WHERE priority = ? ORDER BY seq "
                 "LIMIT 1",
                 kPersistent),
      evictable_(db_,
                 "SELECT count(*), coalesce(sum(length(payload) + length(topic)), 0) FROM messages WHERE "
                 "priority >= ?",
                 kPersistent),
      save_meta_(db_,
                 "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                 "excluded.value",
                 kPersistent),
      bury_(db_,
            "INSERT INTO dead(topic, payload, qos, retain, priority, queued_seq, reason, moved_at) "
            "VALUES(?,?,?,?,?,?,?,strftime('%s','now'))",
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
      clip_pending_(
          db_,
          "INSERT INTO pending_clips(event_id, record) VALUES(?, ?) ON CONFLICT(event_id) DO UPDATE "
          "SET record = excluded.record",
          kPersistent),
      clip_reported_(db_, "DELETE FROM pending_clips WHERE event_id = ?", kPersistent) {
    load_totals();
}

void SqliteStore::load_totals() {
    sqlite::Stmt s(db_, "SELECT count(*), coalesce(sum(length(payload) + length(topic)), 0) FROM messages");
    if (!s.step()) db_.fail("counting messages");
    count_ = static_cast<std::size_t>(s.integer(0));
    bytes_ = static_cast<std::size_t>(s.integer(1));
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
}

bool SqliteStore::fits(std::size_t count, std::size_t bytes, std::size_t incoming_bytes) const {
    return count + 1 <= limits_.max_messages && bytes + incoming_bytes <= limits_.max_bytes;
}

bool SqliteStore::room_possible(std::size_t incoming_bytes, Priority incoming) {
    if (fits(count_, bytes_, incoming_bytes)) return true;
    // What could go for it: the messages no more important than it (an equal or larger Priority).
    evictable_.reset();
    if (!evictable_.bind(1, static_cast<int>(incoming)).step()) db_.fail("measuring evictable messages");
    const auto count = static_cast<std::size_t>(evictable_.integer(0));
    const auto bytes = static_cast<std::size_t>(evictable_.integer(1));
    evictable_.reset();
    return fits(count_ - std::min(count_, count), bytes_ - std::min(bytes_, bytes), incoming_bytes);
}

std::size_t SqliteStore::drop_for_room(std::size_t incoming_bytes, Priority incoming) {
    std::size_t dropped = 0;
    for (Priority p : {Priority::telemetry, Priority::evidence, Priority::alert}) {
        if (p < incoming) break;  // never evict a more important message for this one
        while (count_ > 0 && !fits(count_, bytes_, incoming_bytes)) {
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
        .run();
    m.seq = db_.last_insert_rowid();
}

SqliteStore::Appended SqliteStore::append(Message& m) {
    std::lock_guard lock(mutex_);
    const std::size_t size = m.payload.size() + m.topic.size();
    try {
        // Inside the try: by the time the handler reloads the totals, leaving this block has
        // rolled the transaction back.
        sqlite::Transaction tx(db_);
        if (!room_possible(size, m.priority)) {
            ++refused_;
            save_counter("refused", refused_);
            tx.commit();
            return {.stored = false, .dropped = 0};
        }
        const std::size_t dropped = drop_for_room(size, m.priority);
        if (dropped > 0) {
            dropped_ += dropped;
            save_counter("dropped", dropped_);
        }
        insert(m);
        mark(m);
        tx.commit();
        ++count_;
        bytes_ += size;
        return {.stored = true, .dropped = dropped};
    } catch (...) {
        // drop_for_room() changed the counters for rows the rollback brought back.
        load_totals();
        throw;
    }
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

std::optional<Message> SqliteStore::front(std::int64_t after) {
    std::lock_guard lock(mutex_);
    front_.reset();
    if (!front_.bind(1, after).step()) {
        front_.reset();
        return std::nullopt;
    }
    Message m;
    m.seq = front_.integer(0);
    m.topic = front_.text(1);
    m.payload = front_.blob(2);
    m.qos = static_cast<int>(front_.integer(3));
    m.retain = front_.integer(4) != 0;
    m.priority = static_cast<Priority>(front_.integer(5));
    front_.reset();
    return m;
}

bool SqliteStore::erase(std::int64_t seq) {
    remove_.reset();
    if (!remove_.bind(1, seq).step()) {
        remove_.reset();
        return false;  // already gone
    }
    const auto size = static_cast<std::size_t>(remove_.integer(0));
    remove_.run();
    --count_;
    bytes_ -= std::min(bytes_, size);
    return true;
}

void SqliteStore::remove(std::int64_t seq) {
    std::lock_guard lock(mutex_);
    erase(seq);
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
            .run();
        if (m.seq > 0) erase(m.seq);
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
            sqlite::Stmt s(db_, "SELECT seq, topic, payload, qos, retain, priority FROM dead ORDER BY seq");
            while (s.step()) {
                Row r{s.integer(0), {}};
                r.m.topic = s.text(1);
                r.m.payload = s.blob(2);
                r.m.qos = static_cast<int>(s.integer(3));
                r.m.retain = s.integer(4) != 0;
                r.m.priority = static_cast<Priority>(s.integer(5));
                rows.push_back(std::move(r));
            }
        }
        for (auto& [seq, m] : rows) {
            const std::size_t size = m.payload.size() + m.topic.size();
            // Only into free room: these are older than anything queued, and must not push it out.
            if (!fits(count_, bytes_, size)) continue;
            insert(m);
            sqlite::Stmt(db_, "DELETE FROM dead WHERE seq = ?").bind(1, seq).run();
            ++count_;
            bytes_ += size;
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
    return count_;
}

std::size_t SqliteStore::bytes() const {
    std::lock_guard lock(mutex_);
    return bytes_;
}

std::uint64_t SqliteStore::dropped_total() const {
    std::lock_guard lock(mutex_);
    return dropped_;
}

}  // namespace kg::outbox
