#pragma once
// The one RAII layer over SQLite, shared by the gateway's outbox and the monitor's store: the
// connection and every statement are owned objects, and every failure throws with the database
// (its label and path) and the statement concerned, so a log line alone says what broke where.

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace kg::sqlite {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what, int code = 0) : std::runtime_error(what), code_(code) {}
    // SQLite's primary result code (SQLITE_FULL, SQLITE_CORRUPT, ...), 0 if none applies.
    int code() const { return code_; }
    // The file is damaged or not a database: reopening it will fail the same way.
    bool corrupt() const;
    // The database could not take the write now (disk full, locked, an I/O error): the same write
    // may succeed later, unlike one the data itself breaks (a constraint, a type).
    bool transient() const;

private:
    int code_;
};

// What a power cut may cost (WAL mode either way, so it never corrupts the file).
enum class Synchronous {
    full,    // a committed transaction survives a power cut, not only a crash of the process
    normal,  // a power cut may lose the last committed transactions
};

struct Options {
    // The first word of every error message ("outbox <path>: ...", "database <path>: ..."): a log
    // line then says which of a process's databases failed, not only where its file is.
    std::string label = "database";
    // FULL unless a database says it can afford to lose its last transactions.
    Synchronous synchronous = Synchronous::full;
    bool foreign_keys = false;
    // Run once the connection is set up; a schema here exists before any member Stmt is prepared.
    const char* schema = nullptr;
    // The schema's version, kept in the file (PRAGMA user_version) from the first version that had
    // one (0: not kept). A file of a later version is refused before anything touches it: a program
    // downgraded after an upgrade would misread its tables (a column it does not know, rows its
    // INSERT OR IGNORE skips) and write rows the newer one misreads in turn. An earlier version's
    // file is the owner's to bring up to date; it is marked with this version once the schema ran.
    int version = 0;
};

class Db;

// One prepared statement; bind with 1-based indexes, step() until false, read columns 0-based.
// run() and a failed step() reset it, so a statement can be kept and reused.
class Stmt {
public:
    // persistent: the statement lives as long as its owner (SQLite then keeps it out of the
    // lookaside memory meant for short-lived ones).
    enum class Use { once, persistent };

    Stmt(Db& db, const char* sql, Use use = Use::once);
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
    [[noreturn]] void fail_bind(int i) const;

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
    Db(const std::string& path, Options options);
    // Pinned: every Stmt points back at its Db.
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;

    void exec(const char* sql);
    int changes() const;
    std::int64_t last_insert_rowid() const;
    // The file's schema version (PRAGMA user_version; Options::version).
    int user_version();
    // Throws with `what` and SQLite's message for the connection's last failure.
    [[noreturn]] void fail(const std::string& what) const;
    // Throws with `what` and `why`: for a reason that is not (or no longer) the connection's last
    // message, such as sqlite3_exec's own text or one read before a reset.
    [[noreturn]] void fail(const std::string& what, const std::string& why, int code) const;
    [[noreturn]] void fail(const std::string& what, const std::string& why) const;
    sqlite3* handle() const { return db_.get(); }

private:
    struct Closer {
        void operator()(sqlite3* db) const;
    };
    std::string label_, path_;
    std::unique_ptr<sqlite3, Closer> db_;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back when left by an exception.
class Transaction {
public:
    explicit Transaction(Db& db);
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void commit();

private:
    Db& db_;
    bool done_ = false;
};

}  // namespace kg::sqlite
