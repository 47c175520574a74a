// The store's half of retiring a site: a canteen decommissioned or renamed leaves the room for good,
// with its open alerts closed in the name of the operator who retired it and the retirement on
// record. Before, nothing deleted a site: it stayed offline in the list with its open alerts, and
// the room kept asking its gateway for replays.

#include <fmt/format.h>

#include "monitor/iso_time.hpp"
#include "monitor/store.hpp"

namespace kg::monitor {

using nlohmann::json;
using sqlite::Stmt;

namespace {

// Who retired which site, when and why. Made at the first retirement (not in the schema: a database
// this version only reads, or an older version's, simply has none).
constexpr const char* kRetirements = R"sql(
CREATE TABLE IF NOT EXISTS site_retirements (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, site TEXT NOT NULL, name TEXT, retired_at TEXT NOT NULL,
  operator TEXT NOT NULL, note TEXT NOT NULL, alerts_closed INTEGER NOT NULL, monitor TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS site_retirements_site ON site_retirements(site);
)sql";

bool has_retirements(sqlite::Db& db) {
    Stmt s(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'site_retirements'");
    return s.step();
}

// The site's rows that are about watching it, not its history: what it has (cameras, sensors), the
// numbered stream the room follows and asks replays of, and what waits for an alert that never came.
// Its alerts (closed), their messages, pictures and actions, and its sensors' curves stay until
// retention deletes them.
constexpr const char* kForget[] = {
    "DELETE FROM seq_missing WHERE site = ?1",
    "DELETE FROM seq_lost WHERE site = ?1",
    "DELETE FROM seq_streams WHERE site = ?1",
    "DELETE FROM seq_assumed WHERE site = ?1",
    "DELETE FROM pending_clips WHERE site = ?1",
    // One statement over two lines, not two statements:
    // NOLINTNEXTLINE(bugprone-suspicious-missing-comma)
    "DELETE FROM snapshots WHERE site = ?1 AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.id = "
    "snapshots.event_id)",
    "DELETE FROM sites WHERE site = ?1",
};

// One retirement: the site, who, why, when, and the instance that recorded it.
struct Retirement {
    const std::string &site, &operator_name, &note, &when, &monitor_id;
};

// The site's name (its row's, perhaps none); nullopt when the room has no such site.
std::optional<std::optional<std::string>> site_name(sqlite::Db& db, const std::string& site) {
    Stmt s(db, "SELECT name FROM sites WHERE site = ?");
    s.bind(1, site);
    if (!s.step()) return std::nullopt;
    return s.opt_text(0);
}

// Closes the site's alerts that are not closed, each with an action as any close has: in the alert's
// handling history, and published to the site. The close note names the retirement and who did it:
// the alert's handling says why it was closed without the closed loop's steps.
std::vector<ActionRecord> close_alerts(sqlite::Db& db, const Retirement& r) {
    const std::string note =
        fmt::format("site {} retired by {}{}", r.site, r.operator_name, r.note.empty() ? "" : ": " + r.note);
    std::vector<std::string> ids;
    {
        Stmt s(db, "SELECT id FROM alerts WHERE site = ? AND status != 'closed' ORDER BY received_at, id");
        s.bind(1, r.site);
        while (s.step()) ids.push_back(s.text(0));
    }
    std::vector<ActionRecord> closed;
    for (const auto& id : ids) {
        Stmt(db,
             "UPDATE alerts SET status = 'closed', closed_by = ?2, closed_at = ?3, close_note = ?4 WHERE id "
             "= ?1")
            .bind(1, id)
            .bind(2, r.operator_name)
            .bind(3, r.when)
            .bind(4, note)
            .run();
        Stmt(db,
             "INSERT INTO actions(event_id, site, action, status_after, operator, note, time, monitor)"
             " VALUES(?,?,?,?,?,?,?,?)")
            .bind(1, id)
            .bind(2, r.site)
            .bind(3, std::string_view(to_string(Action::close)))
            .bind(4, std::string_view(to_string(Status::closed)))
            .bind(5, r.operator_name)
            .bind(6, note)
            .bind(7, r.when)
            .bind(8, r.monitor_id)
            .run();
        closed.push_back({db.last_insert_rowid(), id, r.site, to_string(Action::close),
                          to_string(Status::closed), r.operator_name, note, r.when, r.monitor_id,
                          std::nullopt});
    }
    return closed;
}

std::int64_t delete_rows(sqlite::Db& db, const char* table, const std::string& site) {
    Stmt(db, fmt::format("DELETE FROM {} WHERE site = ?", table).c_str()).bind(1, site).run();
    return db.changes();
}

void record(sqlite::Db& db, const Retirement& r, const std::optional<std::string>& name,
            std::int64_t closed) {
    db.exec(kRetirements);
    Stmt(db,
         "INSERT INTO site_retirements(site, name, retired_at, operator, note, alerts_closed, monitor)"
         " VALUES(?,?,?,?,?,?,?)")
        .bind(1, r.site)
        .bind(2, name)
        .bind(3, r.when)
        .bind(4, r.operator_name)
        .bind(5, r.note)
        .bind(6, closed)
        .bind(7, r.monitor_id)
        .run();
}

}  // namespace

std::optional<Store::SiteRetired> Store::retire_site(const std::string& site,
                                                     const std::string& operator_name,
                                                     const std::string& note, TimePoint now,
                                                     const std::string& monitor_id) {
    return in_transaction([&]() -> std::optional<SiteRetired> {
        const auto name = site_name(db_, site);
        if (!name) return std::nullopt;
        SiteRetired out;
        out.retired_at = iso8601_utc(now);
        const Retirement r{site, operator_name, note, out.retired_at, monitor_id};
        out.closed = close_alerts(db_, r);
        out.cameras = delete_rows(db_, "cameras", site);
        out.sensors = delete_rows(db_, "sensors", site);
        add_seq_assumed();  // a database from before it may not have the table yet
        for (const char* sql : kForget) Stmt(db_, sql).bind(1, site).run();
        record(db_, r, *name, static_cast<std::int64_t>(out.closed.size()));
        // What this instance remembers of the site goes too: a site that comes back is a new one.
        seen_written_.erase(site);
        rollup_sensors_.erase(site);
        return out;
    });
}

bool Store::retired(const std::string& site) {
    std::lock_guard lock(mutex_);
    {
        Stmt s(db_, "SELECT 1 FROM sites WHERE site = ?");
        s.bind(1, site);
        if (s.step()) return false;  // heard from again since (or never retired)
    }
    if (!has_retirements(db_)) return false;
    Stmt s(db_, "SELECT 1 FROM site_retirements WHERE site = ?");
    s.bind(1, site);
    return s.step();
}

json Store::retirements(int limit) {
    std::lock_guard lock(mutex_);
    json out = json::array();
    if (!has_retirements(db_)) return out;
    Stmt s(db_,
           "SELECT site, name, retired_at, operator, note, alerts_closed, monitor FROM site_retirements"
           " ORDER BY seq DESC LIMIT ?");
    s.bind(1, limit);
    while (s.step())
        out.push_back({{"site", s.text(0)},
                       {"name", s.opt_text(1) ? json(*s.opt_text(1)) : json(nullptr)},
                       {"retired_at", s.text(2)},
                       {"operator", s.text(3)},
                       {"note", s.text(4)},
                       {"alerts_closed", s.integer(5)},
                       {"monitor", s.text(6)}});
    return out;
}

}  // namespace kg::monitor
