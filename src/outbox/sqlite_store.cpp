#include "outbox/sqlite_store.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

namespace kg::outbox {

void SqliteStore::StmtFinalizer::operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }

SqliteStore::SqliteStore(const std::string& path, Limits limits) : path_(path), limits_(limits) {
    if (sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        nullptr) != SQLITE_OK) {
        const std::string why = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close_v2(db_);
        db_ = nullptr;
        throw StoreError(fmt::format("outbox {}: cannot open: {}", path, why));
    }
    sqlite3_busy_timeout(db_, 5000);
    exec("PRAGMA journal_mode=WAL");
    // FULL: a committed message survives a power cut, not only a crash of the process.
    exec("PRAGMA synchronous=FULL");
    exec(
        "CREATE TABLE IF NOT EXISTS messages ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,"
        " qos INTEGER NOT NULL, retain INTEGER NOT NULL, priority INTEGER NOT NULL)");
    exec("CREATE INDEX IF NOT EXISTS messages_priority ON messages(priority, seq)");
    exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)");
    insert_ = prepare("INSERT INTO messages(topic, payload, qos, retain, priority) VALUES(?,?,?,?,?)");
    front_ = prepare("SELECT seq, topic, payload, qos, retain, priority FROM messages ORDER BY seq LIMIT 1");
    remove_ = prepare("DELETE FROM messages WHERE seq = ? RETURNING length(payload) + length(topic)");
    oldest_of_ = prepare(
        "SELECT seq, length(payload) + length(topic) FROM messages WHERE priority = ? ORDER BY seq LIMIT 1");
    drop_meta_ = prepare(
        "INSERT INTO meta(key, value) VALUES('dropped', ?) ON CONFLICT(key) DO UPDATE SET value = "
        "excluded.value");
    load_totals();
}

SqliteStore::~SqliteStore() {
    insert_.reset();
    front_.reset();
    remove_.reset();
    oldest_of_.reset();
    drop_meta_.reset();
    sqlite3_close_v2(db_);
}

void SqliteStore::fail(const std::string& what) const {
    throw StoreError(fmt::format("outbox {}: {}: {}", path_, what, sqlite3_errmsg(db_)));
}

void SqliteStore::exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        const std::string why = err != nullptr ? err : "unknown error";
        sqlite3_free(err);
        throw StoreError(fmt::format("outbox {}: {}: {}", path_, sql, why));
    }
}

SqliteStore::Stmt SqliteStore::prepare(const char* sql) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK) fail(sql);
    return Stmt(s);
}

void SqliteStore::load_totals() {
    Stmt s = prepare("SELECT count(*), coalesce(sum(length(payload) + length(topic)), 0) FROM messages");
    if (sqlite3_step(s.get()) != SQLITE_ROW) fail("counting messages");
    count_ = static_cast<std::size_t>(sqlite3_column_int64(s.get(), 0));
    bytes_ = static_cast<std::size_t>(sqlite3_column_int64(s.get(), 1));
    Stmt m = prepare("SELECT value FROM meta WHERE key = 'dropped'");
    dropped_ = sqlite3_step(m.get()) == SQLITE_ROW
                   ? static_cast<std::uint64_t>(sqlite3_column_int64(m.get(), 0))
                   : 0;
}

std::size_t SqliteStore::drop_for_room(std::size_t incoming_bytes) {
    std::size_t dropped = 0;
    for (Priority p : {Priority::telemetry, Priority::evidence, Priority::alert}) {
        while (count_ > 0 &&
               (count_ + 1 > limits_.max_messages || bytes_ + incoming_bytes > limits_.max_bytes)) {
            sqlite3_reset(oldest_of_.get());
            sqlite3_bind_int(oldest_of_.get(), 1, static_cast<int>(p));
            if (sqlite3_step(oldest_of_.get()) != SQLITE_ROW) break;  // none of this priority left
            const auto seq = sqlite3_column_int64(oldest_of_.get(), 0);
            sqlite3_reset(oldest_of_.get());
            if (!erase(seq)) break;
            ++dropped;
        }
    }
    return dropped;
}

std::size_t SqliteStore::append(Message& m) {
    std::lock_guard lock(mutex_);
    const std::size_t size = m.payload.size() + m.topic.size();
    exec("BEGIN IMMEDIATE");
    try {
        const std::size_t dropped = drop_for_room(size);
        if (dropped > 0) {
            dropped_ += dropped;
            sqlite3_reset(drop_meta_.get());
            sqlite3_bind_int64(drop_meta_.get(), 1, static_cast<sqlite3_int64>(dropped_));
            if (sqlite3_step(drop_meta_.get()) != SQLITE_DONE) fail("counting drops");
        }
        sqlite3_reset(insert_.get());
        sqlite3_bind_text(insert_.get(), 1, m.topic.data(), static_cast<int>(m.topic.size()), SQLITE_STATIC);
        sqlite3_bind_blob(insert_.get(), 2, m.payload.data(), static_cast<int>(m.payload.size()),
                          SQLITE_STATIC);
        sqlite3_bind_int(insert_.get(), 3, m.qos);
        sqlite3_bind_int(insert_.get(), 4, m.retain ? 1 : 0);
        sqlite3_bind_int(insert_.get(), 5, static_cast<int>(m.priority));
        if (sqlite3_step(insert_.get()) != SQLITE_DONE) fail("appending a message");
        m.seq = sqlite3_last_insert_rowid(db_);
        exec("COMMIT");
        ++count_;
        bytes_ += size;
        return dropped;
    } catch (...) {
        sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
        load_totals();
        throw;
    }
}

std::optional<Message> SqliteStore::front() {
    std::lock_guard lock(mutex_);
    sqlite3_reset(front_.get());
    const int rc = sqlite3_step(front_.get());
    if (rc == SQLITE_DONE) return std::nullopt;
    if (rc != SQLITE_ROW) fail("reading the oldest message");
    Message m;
    m.seq = sqlite3_column_int64(front_.get(), 0);
    m.topic.assign(reinterpret_cast<const char*>(sqlite3_column_text(front_.get(), 1)),
                   static_cast<std::size_t>(sqlite3_column_bytes(front_.get(), 1)));
    const void* blob = sqlite3_column_blob(front_.get(), 2);
    m.payload.assign(static_cast<const char*>(blob),
                     static_cast<std::size_t>(sqlite3_column_bytes(front_.get(), 2)));
    m.qos = sqlite3_column_int(front_.get(), 3);
    m.retain = sqlite3_column_int(front_.get(), 4) != 0;
    m.priority = static_cast<Priority>(sqlite3_column_int(front_.get(), 5));
    sqlite3_reset(front_.get());
    return m;
}

bool SqliteStore::erase(std::int64_t seq) {
    sqlite3_reset(remove_.get());
    sqlite3_bind_int64(remove_.get(), 1, seq);
    int rc = sqlite3_step(remove_.get());
    if (rc == SQLITE_DONE) return false;  // already gone
    if (rc != SQLITE_ROW) fail("removing a message");
    const auto size = static_cast<std::size_t>(sqlite3_column_int64(remove_.get(), 0));
    rc = sqlite3_step(remove_.get());
    sqlite3_reset(remove_.get());
    if (rc != SQLITE_DONE) fail("removing a message");
    --count_;
    bytes_ -= std::min(bytes_, size);
    return true;
}

void SqliteStore::remove(std::int64_t seq) {
    std::lock_guard lock(mutex_);
    erase(seq);
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
