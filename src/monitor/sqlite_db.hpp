#pragma once
// A thin RAII layer over SQLite for the monitor's store: the connection and every statement are
// owned objects, and every failure throws with the database path and the statement concerned.

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace kg::monitor {

class DbError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class Db;

// One prepared statement; bind with 1-based indexes, step() until false, read columns 0-based.
// reset() runs on each bind_all/exec so a statement can be reused.
class Stmt {
public:
    Stmt(Db& db, const char* sql);
    Stmt(Stmt&&) noexcept = default;

    Stmt& bind(int i, std::string_view text);
    Stmt& bind(int i, const std::string& text) { return bind(i, std::string_view(text)); }
    Stmt& bind(int i, const char* text) { return bind(i, std::string_view(text)); }
    Stmt& bind(int i, const std::optional<std::string>& text);
    Stmt& bind(int i, std::int64_t value);
    Stmt& bind(int i, int value) { return bind(i, static_cast<std::int64_t>(value)); }
    Stmt& bind(int i, double value);
    Stmt& bind_blob(int i, std::string_view bytes);
    Stmt& bind_null(int i);

    // True while a row is available.
    bool step();
    // Runs to completion (INSERT/UPDATE/DELETE) and resets.
    void run();
    void reset();

    std::string text(int col) const;
    std::optional<std::string> opt_text(int col) const;
    std::int64_t integer(int col) const;
    double real(int col) const;
    bool is_null(int col) const;
    std::string blob(int col) const;

private:
    struct Finalizer {
        void operator()(sqlite3_stmt* s) const;
    };
    Db* db_;
    std::string sql_;
    std::unique_ptr<sqlite3_stmt, Finalizer> stmt_;
};

class Db {
public:
    // path ":memory:" for tests. WAL mode, a busy timeout so a second process can read it.
    explicit Db(const std::string& path);
    ~Db();
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;

    void exec(const char* sql);
    int changes() const;
    std::int64_t last_insert_rowid() const;
    [[noreturn]] void fail(const std::string& what) const;
    sqlite3* handle() const { return db_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    sqlite3* db_ = nullptr;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back when left by an exception.
class Transaction {
public:
    explicit Transaction(Db& db);
    ~Transaction();
    void commit();

private:
    Db& db_;
    bool done_ = false;
};

}  // namespace kg::monitor
