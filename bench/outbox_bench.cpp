// The outbox once full, as after a broker outage of days: what each new message costs. Every
// append must first know whether anything less important can make room for it. Prints the time
// per append to a full queue, beside its peer in the same run: one SQLite pass summing the queue's
// less important messages, which is what each such append cost before the store counted them by
// priority in memory (0.1-0.2 s on an edge box at the default 100 000 messages).
//
//   kg-bench-outbox [messages] [appends]

#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "outbox/sqlite_store.hpp"

namespace {

using Clock = std::chrono::steady_clock;

kg::outbox::Message rollup(char fill) {
    kg::outbox::Message m;
    m.topic = "kitchen/sch-0101/sensors/fridge/rollup";
    m.payload = std::string(560, fill);  // about a roll-up's size
    m.priority = kg::outbox::Priority::telemetry;
    return m;
}

double ms_since(Clock::time_point t0, int n) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / n;
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t messages = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 100000;
    const int appends = argc > 2 ? std::atoi(argv[2]) : 300;
    const auto path = std::filesystem::temp_directory_path() / "kg-bench-outbox.db";
    std::filesystem::remove(path);
    kg::outbox::SqliteStore::Limits limits;
    limits.max_messages = messages;
    limits.max_bytes = 1u << 30;
    double append_ms = 0;
    {
        kg::outbox::SqliteStore store(path.string(), limits);
        std::vector<kg::outbox::Message> fill(messages, rollup('x'));
        store.append_all(fill);
        const auto t0 = Clock::now();
        for (int i = 0; i < appends; ++i) {
            auto m = rollup('y');
            store.append(m);  // each pushes the oldest roll-up out
        }
        append_ms = ms_since(t0, appends);
        std::printf("outbox of %zu messages, full: %.3f ms per append (%d appends)\n", store.size(),
                    append_ms, appends);
    }
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
        std::fprintf(stderr, "cannot open %s: %s\n", path.c_str(), sqlite3_errmsg(db));
        return 1;
    }
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(
        db,
        "SELECT count(*), coalesce(sum(length(payload) + length(topic)), 0) FROM messages WHERE "
        "priority >= ?",
        -1, &s, nullptr);
    const int scans = 10;
    const auto t0 = Clock::now();
    for (int i = 0; i < scans; ++i) {
        sqlite3_bind_int(s, 1, static_cast<int>(kg::outbox::Priority::telemetry));
        while (sqlite3_step(s) == SQLITE_ROW) {
        }
        sqlite3_reset(s);
    }
    const double scan_ms = ms_since(t0, scans);
    sqlite3_finalize(s);
    sqlite3_close(db);
    std::filesystem::remove(path);
    std::printf("peer, one pass summing the queue's roll-ups: %.3f ms (%d passes)\n", scan_ms, scans);
    std::printf("ratio, append / pass: %.4f\n", append_ms / scan_ms);
    return 0;
}
