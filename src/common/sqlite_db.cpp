#include "common/sqlite_db.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

namespace kg::sqlite {

void Stmt::Finalizer::operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }

Stmt::Stmt(Db& db, const char* sql, Use use) : db_(&db), sql_(sql) {
    sqlite3_stmt* raw = nullptr;
    const unsigned flags = use == Use::persistent ? SQLITE_PREPARE_PERSISTENT : 0;
    if (sqlite3_prepare_v3(db.handle(), sql, -1, flags, &raw, nullptr) != SQLITE_OK)
        db.fail(fmt::format("prepare '{}'", sql));
    stmt_.reset(raw);
}

void Stmt::fail_bind(int i) const { db_->fail(fmt::format("bind {} of '{}'", i, sql_)); }

Stmt& Stmt::bind(int i, std::string_view text) {
    if (sqlite3_bind_text(stmt_.get(), i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT) !=
        SQLITE_OK)
        fail_bind(i);
    return *this;
}

Stmt& Stmt::bind(int i, const std::optional<std::string>& text) {
    return text ? bind(i, std::string_view(*text)) : bind_null(i);
}

Stmt& Stmt::bind(int i, std::int64_t value) {
    if (sqlite3_bind_int64(stmt_.get(), i, value) != SQLITE_OK) fail_bind(i);
    return *this;
}

Stmt& Stmt::bind(int i, double value) {
    if (sqlite3_bind_double(stmt_.get(), i, value) != SQLITE_OK) fail_bind(i);
    return *this;
}

Stmt& Stmt::bind_blob(int i, std::string_view bytes) {
    if (sqlite3_bind_blob(stmt_.get(), i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT) !=
        SQLITE_OK)
        fail_bind(i);
    return *this;
}

Stmt& Stmt::bind_null(int i) {
    if (sqlite3_bind_null(stmt_.get(), i) != SQLITE_OK) fail_bind(i);
    return *this;
}

bool Stmt::step() {
    const int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    // Read before the reset: the statement must be reusable after the throw, and a reset may
    // replace the connection's message.
    const std::string why = sqlite3_errmsg(db_->handle());
    sqlite3_reset(stmt_.get());
    db_->fail(fmt::format("'{}'", sql_), why, rc);
}

void Stmt::run() {
    while (step()) {
    }
    reset();
}

void Stmt::reset() {
    sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
}

std::string Stmt::text(int col) const {
    const auto* p = sqlite3_column_text(stmt_.get(), col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<std::size_t>(sqlite3_column_bytes(stmt_.get(), col)))
             : std::string();
}

std::optional<std::string> Stmt::opt_text(int col) const {
    if (is_null(col)) return std::nullopt;
    return text(col);
}

std::int64_t Stmt::integer(int col) const { return sqlite3_column_int64(stmt_.get(), col); }
double Stmt::real(int col) const { return sqlite3_column_double(stmt_.get(), col); }
bool Stmt::is_null(int col) const { return sqlite3_column_type(stmt_.get(), col) == SQLITE_NULL; }

std::string Stmt::blob(int col) const {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_.get(), col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_.get(), col)))
             : std::string();
}

void Db::Closer::operator()(sqlite3* db) const { sqlite3_close_v2(db); }

Db::Db(const std::string& path, Options options) : label_(std::move(options.label)), path_(path) {
    sqlite3* raw = nullptr;
    const int rc = sqlite3_open_v2(
        path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
    // Owned even when the open failed: SQLite may still have allocated a handle to close.
    db_.reset(raw);
    if (rc != SQLITE_OK) fail("cannot open", raw != nullptr ? sqlite3_errmsg(raw) : "out of memory", rc);
    sqlite3_busy_timeout(raw, 5000);
    exec("PRAGMA journal_mode=WAL");
    exec(options.synchronous == Synchronous::full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    if (options.foreign_keys) exec("PRAGMA foreign_keys=ON");
    if (options.version == 0) {
        if (options.schema != nullptr) exec(options.schema);
        return;
    }
    const auto refuse_later = [&](int found) {
        if (found <= options.version) return;
        fail("schema version",
             fmt::format(
                 "the file was written by a later version of this program (schema version {}; this one "
                 "reads up to {}): run that version again, or move the file aside to start a new one",
                 found, options.version),
             SQLITE_ERROR);
    };
    // The look, the schema and the mark in one transaction: an instance of an earlier version
    // starting beside a later one's migration (a share group upgraded one by one) reads the later
    // mark, or writes its own before the later one does, never over it.
    try {
        exec("BEGIN IMMEDIATE");
        const int found = user_version();
        refuse_later(found);
        if (options.schema != nullptr) exec(options.schema);
        if (found < options.version) exec(fmt::format("PRAGMA user_version={}", options.version).c_str());
        exec("COMMIT");
    } catch (const Error& e) {
        sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
        // A file this process may read but not write (its schema already there): opened as before
        // the version was kept, unmarked until a run that may write it.
        if (e.code() != SQLITE_READONLY) throw;
        refuse_later(user_version());
        if (options.schema != nullptr) exec(options.schema);
    }
}

int Db::user_version() {
    Stmt s(*this, "PRAGMA user_version");
    if (!s.step()) fail("reading the schema version");
    return static_cast<int>(s.integer(0));
}

void Db::exec(const char* sql) {
    char* err = nullptr;
    if (const int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, &err); rc != SQLITE_OK) {
        const std::string why = err != nullptr ? err : "unknown error";
        sqlite3_free(err);
        fail(fmt::format("'{}'", sql), why, rc);
    }
}

int Db::changes() const { return sqlite3_changes(db_.get()); }
std::int64_t Db::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_.get()); }

bool Error::corrupt() const { return code_ == SQLITE_CORRUPT || code_ == SQLITE_NOTADB; }

bool Error::transient() const {
    switch (code_) {
        case SQLITE_FULL:
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
        case SQLITE_IOERR:
        case SQLITE_CANTOPEN:
        case SQLITE_READONLY:
        case SQLITE_NOMEM:
            return true;
        default:
            return false;
    }
}

void Db::fail(const std::string& what) const { fail(what, sqlite3_errmsg(db_.get())); }

void Db::fail(const std::string& what, const std::string& why) const {
    fail(what, why, db_ ? sqlite3_errcode(db_.get()) : 0);
}

void Db::fail(const std::string& what, const std::string& why, int code) const {
    throw Error(fmt::format("{} {}: {}: {}", label_, path_, what, why), code & 0xff);
}

Transaction::Transaction(Db& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }

Transaction::~Transaction() {
    if (!done_) {
        try {
            db_.exec("ROLLBACK");
        } catch (...) {  // nothing more to do in a destructor; the connection stays usable
        }
    }
}

void Transaction::commit() {
    db_.exec("COMMIT");
    done_ = true;
}

}  // namespace kg::sqlite
