#pragma once
// The outbox's durable queue: an SQLite database in WAL mode in which every message is committed
// (fsync'd) before anyone may send it, so a crash or a power cut loses nothing that was accepted.
// Bounded by a message count and a byte budget: when full, telemetry goes before alerts, the
// oldest first, and every drop is counted (persistently).

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

struct sqlite3;
struct sqlite3_stmt;

namespace kg::outbox {

// What goes first when the outbox is full: telemetry, then evidence, alerts last.
enum class Priority : int { alert = 0, evidence = 1, telemetry = 2 };

struct Message {
    std::int64_t seq = 0;  // assigned by the store, increasing
    std::string topic;
    std::string payload;
    int qos = 1;
    bool retain = false;
    Priority priority = Priority::alert;
};

class StoreError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class SqliteStore {
public:
    struct Limits {
        std::size_t max_messages = 100000;
        std::size_t max_bytes = 256u << 20;
    };

    // path ":memory:" keeps the queue in memory (tests, or a box without storage).
    SqliteStore(const std::string& path, Limits limits);
    ~SqliteStore();
    SqliteStore(const SqliteStore&) = delete;
    SqliteStore& operator=(const SqliteStore&) = delete;

    // Commits the message; returns how many older messages were dropped to make room.
    std::size_t append(Message& message);
    std::optional<Message> front();
    void remove(std::int64_t seq);

    std::size_t size() const;
    std::size_t bytes() const;
    std::uint64_t dropped_total() const;

private:
    struct StmtFinalizer {
        void operator()(sqlite3_stmt* s) const;
    };
    using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

    void exec(const char* sql);
    Stmt prepare(const char* sql);
    [[noreturn]] void fail(const std::string& what) const;
    std::size_t drop_for_room(std::size_t incoming_bytes);
    bool erase(std::int64_t seq);  // caller holds mutex_
    void load_totals();

    std::string path_;
    Limits limits_;
    sqlite3* db_ = nullptr;
    Stmt insert_, front_, remove_, oldest_of_, drop_meta_;
    mutable std::mutex mutex_;
    std::size_t count_ = 0, bytes_ = 0;
    std::uint64_t dropped_ = 0;
};

}  // namespace kg::outbox
