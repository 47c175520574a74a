// The outbox's durable queue: order, survival across a reopen, and the budget.
#include "outbox/sqlite_store.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <regex>
#include <tuple>

#include "common/sqlite_db.hpp"

using kg::outbox::Message;
using kg::outbox::Priority;
using kg::outbox::SqliteStore;
namespace fs = std::filesystem;

namespace {

struct TempDb {
    fs::path dir =
        fs::temp_directory_path() / ("kg-store-" + std::to_string(getpid()) + "-" +
                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    TempDb() { fs::create_directories(dir); }
    ~TempDb() { fs::remove_all(dir); }
    std::string path() const { return (dir / "outbox.db").string(); }
};

Message msg(const std::string& payload, Priority p = Priority::alert) {
    Message m;
    m.topic = "kitchen/site/events";
    m.payload = payload;
    m.priority = p;
    return m;
}

}  // namespace

TEST(SqliteStore, KeepsOrderAndRemovesOnlyWhatWasAcknowledged) {
    TempDb db;
    SqliteStore store(db.path(), {});
    for (int i = 0; i < 5; ++i) {
        auto m = msg("e" + std::to_string(i));
        store.append(m);
    }
    EXPECT_EQ(store.size(), 5u);
    auto head = store.front();
    ASSERT_TRUE(head);
    EXPECT_EQ(head->payload, "e0");
    store.remove(head->seq);
    EXPECT_EQ(store.front()->payload, "e1");
    EXPECT_EQ(store.size(), 4u);
}

TEST(SqliteStore, WhatWasCommittedSurvivesAReopen) {
    TempDb db;
    {
        SqliteStore store(db.path(), {});
        for (int i = 0; i < 3; ++i) {
            auto m = msg("e" + std::to_string(i));
            store.append(m);
        }
        store.remove(store.front()->seq);
    }  // closed as a crash would leave it: no flush step exists
    SqliteStore reopened(db.path(), {});
    EXPECT_EQ(reopened.size(), 2u);
    EXPECT_EQ(reopened.front()->payload, "e1");
    auto m = msg("e3");
    reopened.append(m);
    EXPECT_GT(m.seq, reopened.front()->seq);  // sequence keeps growing: order holds across restarts
}

TEST(SqliteStore, WhenFullTelemetryGoesBeforeAlertsAndDropsAreCounted) {
    TempDb db;
    SqliteStore store(db.path(), {4, 1u << 20});
    auto a1 = msg("a1"), t1 = msg("t1", Priority::telemetry), a2 = msg("a2"),
         t2 = msg("t2", Priority::telemetry);
    store.append(a1);
    store.append(t1);
    store.append(a2);
    store.append(t2);
    auto a3 = msg("a3");
    EXPECT_EQ(store.append(a3).dropped, 1u);  // t1 goes
    auto a4 = msg("a4");
    EXPECT_EQ(store.append(a4).dropped, 1u);  // t2 goes
    auto a5 = msg("a5");
    EXPECT_EQ(store.append(a5).dropped, 1u);  // only alerts left: the oldest alert goes
    EXPECT_EQ(store.size(), 4u);
    EXPECT_EQ(store.dropped_total(), 3u);
    std::vector<std::string> left;
    while (auto m = store.front()) {
        left.push_back(m->payload);
        store.remove(m->seq);
    }
    EXPECT_EQ(left, (std::vector<std::string>{"a2", "a3", "a4", "a5"}));
}

TEST(SqliteStore, ReplayAnswersGoFirstAndMakeRoomOnlyAmongThemselves) {
    TempDb db;
    SqliteStore store(db.path(), {3, 1u << 20});
    auto r1 = msg("r1", Priority::replay), t1 = msg("t1", Priority::telemetry),
         r2 = msg("r2", Priority::replay);
    store.append(r1);
    store.append(t1);
    store.append(r2);
    auto t2 = msg("t2", Priority::telemetry);
    EXPECT_EQ(store.append(t2).dropped, 1u);  // r1 goes, not the older roll-up
    auto r3 = msg("r3", Priority::replay);
    EXPECT_EQ(store.append(r3).dropped, 1u);  // r2 makes room for it
    auto a1 = msg("a1");
    EXPECT_EQ(store.append(a1).dropped, 1u);  // r3 goes before any roll-up
    auto r4 = msg("r4", Priority::replay);
    EXPECT_FALSE(store.append(r4).stored);  // nothing below it left: refused
    std::vector<std::string> left;
    while (auto m = store.front()) {
        left.push_back(m->payload);
        store.remove(m->seq);
    }
    EXPECT_EQ(left, (std::vector<std::string>{"a1", "t1", "t2"}));  // the alert ahead of the roll-ups
}

TEST(SqliteStore, LiveMessagesGoBeforeReplayAnswersQueuedEarlier) {
    // An answer of thousands of copies on a slow uplink must not hold back an alert raised meanwhile,
    // nor must the roll-ups a broker outage of days queued.
    TempDb db;
    SqliteStore store(db.path(), {100, 1u << 20});
    auto r1 = msg("r1", Priority::replay), r2 = msg("r2", Priority::replay), a1 = msg("a1"),
         t1 = msg("t1", Priority::telemetry), a2 = msg("a2");
    for (auto* m : {&r1, &r2, &a1, &t1, &a2}) store.append(*m);
    std::vector<std::string> order;
    while (auto m = store.front()) {
        order.push_back(m->payload);
        store.remove(m->seq);
    }
    EXPECT_EQ(order, (std::vector<std::string>{"a1", "a2", "t1", "r1", "r2"}));
    // After seqs that could not be removed yet (the store failing), live messages still go first.
    auto r3 = msg("r3", Priority::replay), a3 = msg("a3"), a4 = msg("a4");
    for (auto* m : {&r3, &a3, &a4}) store.append(*m);
    const auto first = store.front();
    ASSERT_TRUE(first);
    EXPECT_EQ(first->payload, "a3");
    SqliteStore::Sent sent;
    sent.mark(first->priority, first->seq);
    const auto next = store.front(sent);
    ASSERT_TRUE(next);
    EXPECT_EQ(next->payload, "a4");
    // r3 is older than the live messages that could not be removed, but of a class of its own: it
    // goes next (with one cursor, it waited until the store worked again).
    sent.mark(next->priority, next->seq);
    const auto replay = store.front(sent);
    ASSERT_TRUE(replay);
    EXPECT_EQ(replay->payload, "r3");
    sent.mark(replay->priority, replay->seq);
    EXPECT_FALSE(store.front(sent));
    store.remove(first->seq);
    store.remove(next->seq);
    const auto last = store.front();
    ASSERT_TRUE(last);
    EXPECT_EQ(last->payload, "r3");
}

TEST(SqliteStore, TheByteBudgetHolds) {
    TempDb db;
    const std::size_t budget = 10 * (100 + msg("").topic.size());
    SqliteStore store(db.path(), {1000, budget});
    for (int i = 0; i < 50; ++i) {
        auto m = msg(std::string(100, 'x'));
        store.append(m);
        EXPECT_LE(store.bytes(), budget);
    }
    EXPECT_EQ(store.size(), 10u);
    EXPECT_EQ(store.dropped_total(), 40u);
    SqliteStore reopened(db.path(), {1000, budget});
    EXPECT_EQ(reopened.dropped_total(), 40u);  // the drop count is kept too
}

TEST(SqliteStore, AMessageNeverDropsAMoreImportantOne) {
    TempDb db;
    SqliteStore store(db.path(), {3, 1u << 20});
    auto a1 = msg("a1"), e1 = msg("e1", Priority::evidence), a2 = msg("a2");
    store.append(a1);
    store.append(e1);
    store.append(a2);
    auto t1 = msg("t1", Priority::telemetry);
    EXPECT_FALSE(store.append(t1).stored);  // full of alerts and evidence: the rollup is refused
    auto e2 = msg("e2", Priority::evidence);
    const auto kept = store.append(e2);  // evidence may replace older evidence
    EXPECT_TRUE(kept.stored);
    EXPECT_EQ(kept.dropped, 1u);
    auto e3 = msg("e3", Priority::evidence);
    store.append(e3);  // ... but not an alert: e2 goes
    EXPECT_EQ(store.refused_total(), 1u);
    std::vector<std::string> left;
    while (auto m = store.front()) {
        left.push_back(m->payload);
        store.remove(m->seq);
    }
    EXPECT_EQ(left, (std::vector<std::string>{"a1", "a2", "e3"}));
    SqliteStore reopened(db.path(), {3, 1u << 20});
    EXPECT_EQ(reopened.refused_total(), 1u);
}

// What a message may push out is counted by priority in memory (a query over the whole queue took
// 0.1-0.2 s at 100 000 messages, for every message once it was full): the counts follow appends,
// drops and acknowledgements, and are read again at a reopen.
TEST(SqliteStore, WhatAMessageMayPushOutIsCountedByPriorityThroughAReopen) {
    TempDb db;
    {
        SqliteStore store(db.path(), {3, 1u << 20});
        auto a1 = msg("a1"), t1 = msg("t1", Priority::telemetry), t2 = msg("t2", Priority::telemetry);
        store.append(a1);
        store.append(t1);
        store.append(t2);
        auto e1 = msg("e1", Priority::evidence);
        EXPECT_EQ(store.append(e1).dropped, 1u);  // t1 goes
        auto r1 = msg("r1", Priority::replay);
        EXPECT_FALSE(store.append(r1).stored);  // nothing less important than a replay answer to push out
    }
    SqliteStore store(db.path(), {3, 1u << 20});  // a1, t2, e1
    auto r2 = msg("r2", Priority::replay);
    EXPECT_FALSE(store.append(r2).stored);
    auto t3 = msg("t3", Priority::telemetry);
    EXPECT_EQ(store.append(t3).dropped, 1u);  // t2 goes
    auto front = store.front();               // a1, acknowledged: room for one
    ASSERT_TRUE(front);
    store.remove(front->seq);
    auto r3 = msg("r3", Priority::replay);
    EXPECT_TRUE(store.append(r3).stored);
    auto e2 = msg("e2", Priority::evidence), e3 = msg("e3", Priority::evidence);
    EXPECT_EQ(store.append(e2).dropped, 1u);  // r3
    EXPECT_EQ(store.append(e3).dropped, 1u);  // t3
    auto t4 = msg("t4", Priority::telemetry);
    EXPECT_FALSE(store.append(t4).stored);  // only evidence left, none to push out for a roll-up
    std::vector<std::string> left;
    while (auto m = store.front()) {
        left.push_back(m->payload);
        store.remove(m->seq);
    }
    EXPECT_EQ(left, (std::vector<std::string>{"e1", "e2", "e3"}));
}

TEST(SqliteStore, AMessageLargerThanTheBudgetIsRefusedWithoutDroppingAnything) {
    TempDb db;
    const std::size_t budget = 200 * 1024;
    SqliteStore store(db.path(), {1000, budget});
    for (int i = 0; i < 50; ++i) {
        auto m = msg(std::string(600, 'a'));
        store.append(m);
    }
    auto snapshot = msg(std::string(250 * 1024, 'j'), Priority::evidence);
    const auto result = store.append(snapshot);
    EXPECT_FALSE(result.stored);
    EXPECT_EQ(result.dropped, 0u);
    EXPECT_EQ(store.size(), 50u);  // not one alert went for it
    EXPECT_EQ(store.dropped_total(), 0u);
    EXPECT_EQ(store.refused_total(), 1u);
    auto alert = msg(std::string(600, 'b'));
    EXPECT_TRUE(store.append(alert).stored);
}

TEST(SqliteStore, AnUnwritablePathIsAClearError) {
    try {
        SqliteStore store("/proc/kg-no-such-dir/outbox.db", {});
        FAIL() << "opened an impossible path";
    } catch (const kg::outbox::StoreError& e) {
        // "outbox", not only the path: the monitor's database opens through the same layer.
        EXPECT_NE(std::string(e.what()).find("outbox /proc/kg-no-such-dir/outbox.db: cannot open"),
                  std::string::npos)
            << e.what();
    }
}

TEST(SqliteStore, AMessageMovedAsideLeavesTheQueueAndIsKept) {
    TempDb db;
    {
        SqliteStore store(db.path(), {});
        auto poison = msg(std::string(5000, 'j')), next = msg("e1");
        store.append(poison);
        store.append(next);
        store.bury(*store.front(), "refused");
        EXPECT_EQ(store.front()->payload, "e1");  // the rest flows on
        EXPECT_EQ(store.size(), 1u);
        EXPECT_EQ(store.bytes(), next.payload.size() + next.topic.size());
        EXPECT_EQ(store.dead_total(), 1u);
    }
    SqliteStore reopened(db.path(), {});
    EXPECT_EQ(reopened.dead_total(), 1u);
    EXPECT_EQ(reopened.size(), 1u);
    kg::sqlite::Db raw(db.path(), {.label = "check"});
    kg::sqlite::Stmt s(raw, "SELECT length(payload), reason FROM dead");
    ASSERT_TRUE(s.step());
    EXPECT_EQ(s.integer(0), 5000);
    EXPECT_EQ(s.text(1), "refused");
}

TEST(SqliteStore, TheDeadTableKeepsOnlyTheNewestWithinItsLimits) {
    TempDb db;
    const auto rows = [&db] {
        kg::sqlite::Db raw(db.path(), {.label = "check"});
        kg::sqlite::Stmt s(
            raw, "SELECT count(*), coalesce(min(queued_seq), 0), coalesce(max(queued_seq), 0) FROM dead");
        EXPECT_TRUE(s.step());
        return std::tuple{s.integer(0), s.integer(1), s.integer(2)};
    };
    {
        SqliteStore store(db.path(), {.max_dead = 3, .max_dead_bytes = 1u << 20});
        for (int i = 0; i < 5; ++i) {
            auto m = msg("poison" + std::to_string(i));
            store.append(m);
            EXPECT_EQ(store.bury(*store.front(), "refused"), i < 3 ? 0u : 1u) << i;
        }
        EXPECT_EQ(store.dead_total(), 5u);  // a counter: it never goes down
        EXPECT_EQ(store.size(), 0u);
    }
    const auto [n, oldest, newest] = rows();
    EXPECT_EQ(n, 3);
    EXPECT_EQ(newest - oldest, 2);  // the three newest
    {
        // By size (payload + topic): 979 bytes leave no room for even one of the 26-byte ones in
        // 1000; a message alone larger than the limit stays, as the only one.
        SqliteStore store(db.path(), {.max_dead = 100, .max_dead_bytes = 1000});
        EXPECT_EQ(store.dead_total(), 5u);  // kept across a restart
        auto big = msg(std::string(960, 'x'));
        store.append(big);
        EXPECT_EQ(store.bury(*store.front(), "refused"), 3u);  // the 3 small ones make room
        auto bigger = msg(std::string(2000, 'y'));
        store.append(bigger);
        EXPECT_EQ(store.bury(*store.front(), "refused"), 1u);
        EXPECT_EQ(store.dead_total(), 7u);
    }
    EXPECT_EQ(std::get<0>(rows()), 1);
}

namespace {

using Kind = kg::outbox::OpenEventMark::Kind;

Message marked(const std::string& payload, Kind kind, const std::string& id, const std::string& record = {}) {
    auto m = msg(payload);
    m.open_event = {kind, id, record};
    return m;
}

std::vector<std::string> open_ids(SqliteStore& store) {
    std::vector<std::string> ids;
    for (const auto& e : store.open_events()) ids.push_back(e.id + "=" + e.record);
    return ids;
}

}  // namespace

TEST(SqliteStore, RecordsTheOpenEventsWithTheirMessagesAndKeepsThemThroughACrash) {
    TempDb db;
    {
        SqliteStore store(db.path(), {});
        auto a = marked("a:start", Kind::open, "a", "ra"), b = marked("b:start", Kind::open, "b", "rb");
        store.append(a);
        store.append(b);
        EXPECT_EQ(open_ids(store), (std::vector<std::string>{"a=ra", "b=rb"}));
        auto update = marked("a:update-1", Kind::open, "a", "ra1");
        store.append(update);
        // Refreshed in place: still listed in the order the events started.
        EXPECT_EQ(open_ids(store), (std::vector<std::string>{"a=ra1", "b=rb"}));
        auto end = marked("b:end", Kind::close, "b");
        store.append(end);
        EXPECT_EQ(open_ids(store), (std::vector<std::string>{"a=ra1"}));
        // Delivering the messages empties the queue, not the record: the room still has `a` open.
        while (auto m = store.front()) store.remove(m->seq);
        EXPECT_EQ(open_ids(store), (std::vector<std::string>{"a=ra1"}));
        auto plain = msg("a snapshot");  // a message without a mark changes nothing
        store.append(plain);
        EXPECT_EQ(open_ids(store), (std::vector<std::string>{"a=ra1"}));
    }  // closed as a crash would leave it
    SqliteStore reopened(db.path(), {});
    EXPECT_EQ(open_ids(reopened), (std::vector<std::string>{"a=ra1"}));
    reopened.forget_open_event("a");
    EXPECT_TRUE(reopened.open_events().empty());
}

TEST(SqliteStore, AnEndThatNeverReachesTheRoomPutsItsEventBackInTheRecord) {
    TempDb db;
    SqliteStore store(db.path(), {3, 1u << 20});
    auto a = marked("a:start", Kind::open, "a", "ra"), b = marked("b:start", Kind::open, "b", "rb");
    store.append(a);
    store.append(b);
    auto a_end = marked("a:end", Kind::close, "a");
    auto b_end = marked("b:end", Kind::close, "b");
    store.append(a_end);
    EXPECT_EQ(open_ids(store), (std::vector<std::string>{"b=rb"}));
    // The room has both starts; a's end is delivered and b's is moved aside (refused by the broker).
    store.remove(store.front()->seq);
    store.remove(store.front()->seq);
    store.append(b_end);
    EXPECT_EQ(open_ids(store), std::vector<std::string>{});
    store.remove(store.front()->seq);  // a's end delivered: a stays closed
    EXPECT_EQ(open_ids(store), std::vector<std::string>{});
    store.bury(*store.front(), "refused");
    EXPECT_EQ(open_ids(store), (std::vector<std::string>{"b=rb"}));
    // c's end is queued, then dropped for newer alerts when the queue is full.
    auto c = marked("c:start", Kind::open, "c", "rc"), c_end = marked("c:end", Kind::close, "c");
    store.append(c);
    store.remove(store.front()->seq);
    store.append(c_end);
    EXPECT_EQ(open_ids(store), (std::vector<std::string>{"b=rb"}));
    for (int i = 0; i < 3; ++i) {
        auto later = msg("later");
        store.append(later);
    }
    EXPECT_EQ(store.dropped_total(), 1u);
    EXPECT_EQ(open_ids(store), (std::vector<std::string>{"b=rb", "c=rc"}));
}

TEST(SqliteStore, ARefusedMessageChangesNoRecord) {
    TempDb db;
    const std::size_t budget = 1000;
    SqliteStore store(db.path(), {1000, budget});
    auto start = marked("a:start", Kind::open, "a", "ra");
    ASSERT_TRUE(store.append(start).stored);
    // Over the byte budget on its own: refused, and so neither records nor removes anything.
    auto huge_start = marked(std::string(2 * budget, 's'), Kind::open, "b", "rb");
    EXPECT_FALSE(store.append(huge_start).stored);
    auto huge_end = marked(std::string(2 * budget, 'e'), Kind::close, "a");
    EXPECT_FALSE(store.append(huge_end).stored);
    EXPECT_EQ(open_ids(store), (std::vector<std::string>{"a=ra"}));
}

namespace {

using ClipKind = kg::outbox::ClipMark::Kind;

std::vector<std::string> pending_ids(SqliteStore& store) {
    std::vector<std::string> ids;
    for (const auto& c : store.pending_clips()) ids.push_back(c.id + "=" + c.record);
    return ids;
}

}  // namespace

TEST(SqliteStore, RecordsThePendingClipsWithTheirStartsAndReportsAndKeepsThemThroughACrash) {
    TempDb db;
    {
        SqliteStore store(db.path(), {});
        // A start that names a clip carries both marks, committed together.
        auto a = marked("a:start", Kind::open, "a", "ra");
        a.clip = {ClipKind::pending, "a", "ca"};
        auto b = marked("b:start", Kind::open, "b", "rb");
        b.clip = {ClipKind::pending, "b", "cb"};
        auto c = marked("c:start", Kind::open, "c", "rc");  // evidence off: no clip named
        store.append(a);
        store.append(b);
        store.append(c);
        EXPECT_EQ(pending_ids(store), (std::vector<std::string>{"a=ca", "b=cb"}));
        // An end leaves the clip pending (it is cut clip_post after the start, not at the end).
        auto end = marked("a:end", Kind::close, "a");
        store.append(end);
        EXPECT_EQ(open_ids(store), (std::vector<std::string>{"b=rb", "c=rc"}));
        EXPECT_EQ(pending_ids(store), (std::vector<std::string>{"a=ca", "b=cb"}));
        // The clip report, written or not, takes its clip out.
        auto report = msg("{\"id\":\"a\"}", Priority::evidence);
        report.clip = {ClipKind::reported, "a", {}};
        store.append(report);
        EXPECT_EQ(pending_ids(store), (std::vector<std::string>{"b=cb"}));
        while (auto m = store.front()) store.remove(m->seq);  // delivered: the record stays
        EXPECT_EQ(pending_ids(store), (std::vector<std::string>{"b=cb"}));
    }  // closed as a crash would leave it
    SqliteStore reopened(db.path(), {});
    EXPECT_EQ(pending_ids(reopened), (std::vector<std::string>{"b=cb"}));
    reopened.forget_pending_clip("b");
    EXPECT_TRUE(reopened.pending_clips().empty());
    EXPECT_EQ(open_ids(reopened), (std::vector<std::string>{"b=rb", "c=rc"}));  // a separate record
}

TEST(SqliteStore, ARefusedStartOrClipReportChangesNoPendingClip) {
    TempDb db;
    const std::size_t budget = 1000;
    SqliteStore store(db.path(), {1000, budget});
    auto start = marked("a:start", Kind::open, "a", "ra");
    start.clip = {ClipKind::pending, "a", "ca"};
    ASSERT_TRUE(store.append(start).stored);
    auto huge_start = marked(std::string(2 * budget, 's'), Kind::open, "b", "rb");
    huge_start.clip = {ClipKind::pending, "b", "cb"};
    EXPECT_FALSE(store.append(huge_start).stored);
    auto huge_report = msg(std::string(2 * budget, 'r'), Priority::evidence);
    huge_report.clip = {ClipKind::reported, "a", {}};
    EXPECT_FALSE(store.append(huge_report).stored);
    EXPECT_EQ(pending_ids(store), (std::vector<std::string>{"a=ca"}));
}

TEST(SqliteStore, ADeadTableGrownBeforeTheLimitIsCutAtOnce) {
    TempDb db;
    { SqliteStore create(db.path(), {}); }
    {
        // As a gateway of before the limit left it: 5000 rows moved aside.
        kg::sqlite::Db raw(db.path(), {.label = "check"});
        kg::sqlite::Stmt(
            raw,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) "
            "INSERT INTO dead(topic, payload, qos, retain, priority, queued_seq, reason, moved_at) "
            "SELECT 't', zeroblob(100), 1, 0, 0, i, 'old', 0 FROM n")
            .run();
    }
    SqliteStore store(db.path(), {});  // max_dead 1000
    EXPECT_EQ(store.dead_total(), 5000u);
    auto m = msg("poison");
    store.append(m);
    EXPECT_EQ(store.bury(*store.front(), "refused"), 4001u);  // one statement, not 4001
    EXPECT_EQ(store.dead_total(), 5001u);
    kg::sqlite::Db raw(db.path(), {.label = "check"});
    kg::sqlite::Stmt s(raw, "SELECT count(*), min(queued_seq) FROM dead WHERE reason = 'old'");
    ASSERT_TRUE(s.step());
    EXPECT_EQ(s.integer(0), 999);
    EXPECT_EQ(s.integer(1), 4002);  // the newest 999 of the old ones, and the new one
}

TEST(SqliteStore, MessagesMovedAsideGoBackInOrderWithinTheBudget) {
    TempDb db;
    SqliteStore store(db.path(), {.max_messages = 3, .max_bytes = 1u << 20});
    for (const char* p : {"dead1", "dead2", "dead3"}) {
        auto m = msg(p);
        store.append(m);
        store.bury(*store.front(), "refused");
    }
    auto live = msg("live");
    store.append(live);
    const auto listed = store.dead_messages(10);
    ASSERT_EQ(listed.size(), 3u);
    EXPECT_EQ(listed[0].reason, "refused");  // newest first
    EXPECT_GT(listed[0].seq, listed[2].seq);
    // Room for two more alerts: the oldest two go back, behind what is queued; the third stays aside.
    EXPECT_EQ(store.requeue_dead(), 2u);
    EXPECT_EQ(store.size(), 3u);
    std::vector<std::string> order;
    while (auto m = store.front()) {
        order.push_back(m->payload);
        store.remove(m->seq);
    }
    EXPECT_EQ(order, (std::vector<std::string>{"live", "dead1", "dead2"}));
    ASSERT_EQ(store.dead_messages(10).size(), 1u);
    EXPECT_EQ(store.requeue_dead(), 1u);
    EXPECT_EQ(store.front()->payload, "dead3");
    EXPECT_TRUE(store.dead_messages(10).empty());
    EXPECT_EQ(store.dead_total(), 3u);  // the counter counts what was ever moved aside
}

// --- The stream (docs/mqtt.md, "Sequence numbers and replay") ---

namespace {

Message numbered(std::int64_t n, const std::string& payload = "") {
    auto m = msg(payload.empty() ? "{\"seq\":" + std::to_string(n) + "}" : payload);
    m.stream_seq = n;
    return m;
}

std::int64_t now_s() { return static_cast<std::int64_t>(std::time(nullptr)); }

}  // namespace

TEST(SqliteStore, TheStreamIdIsChosenOnceWhenTheDatabaseIsCreated) {
    TempDb db;
    std::string first;
    {
        SqliteStore store(db.path(), {});
        first = store.stream();
        EXPECT_TRUE(std::regex_match(first, std::regex("^[0-9a-f]{16}$"))) << first;
    }
    EXPECT_EQ(SqliteStore(db.path(), {}).stream(), first);  // kept in the database
    TempDb other;
    EXPECT_NE(SqliteStore(other.path() + "2", {}).stream(), first);  // a new database, a new stream
    EXPECT_NE(SqliteStore(":memory:", {}).stream(), SqliteStore(":memory:", {}).stream());
}

// The gateway message says when the stream began, so that a room that first hears of a new site
// after the broker lost its first messages knows they were meant for it (docs/mqtt.md).
TEST(SqliteStore, TheStreamsStartIsKeptWithItAndUnknownForAStreamFromBefore) {
    TempDb db;
    const auto before = kg::Clock::now();
    std::optional<kg::TimePoint> started;
    {
        SqliteStore store(db.path(), {});
        started = store.stream_started();
    }
    ASSERT_TRUE(started);
    EXPECT_GE(*started, std::chrono::floor<std::chrono::milliseconds>(before));
    EXPECT_LE(*started, kg::Clock::now());
    EXPECT_EQ(SqliteStore(db.path(), {}).stream_started(), started);  // kept, not the time of each start
    // A stream begun by a version that did not keep its start: unknown, not made up.
    {
        kg::sqlite::Db file(db.path(), {.label = "earlier"});
        file.exec("DELETE FROM meta WHERE key = 'stream_started'");
    }
    SqliteStore earlier(db.path(), {});
    EXPECT_FALSE(earlier.stream_started());
    EXPECT_EQ(earlier.stream().size(), 16u);
}

TEST(SqliteStore, TheLastNumberGivenSurvivesAReopenEvenForARefusedOrDroppedMessage) {
    TempDb db;
    {
        SqliteStore store(db.path(), {.max_messages = 2, .max_bytes = 1u << 20});
        EXPECT_EQ(store.last_stream_seq(), 0);
        auto a = numbered(1), b = numbered(2), c = numbered(3);
        store.append(a);
        store.append(b);
        EXPECT_EQ(store.append(c).dropped, 1u);  // 1 dropped for 3: its number is not given again
        auto too_big = numbered(4, std::string(2u << 20, 'x'));
        EXPECT_FALSE(store.append(too_big).stored);
        EXPECT_EQ(store.last_stream_seq(), 4);
    }
    SqliteStore reopened(db.path(), {});
    EXPECT_EQ(reopened.last_stream_seq(), 4);
    EXPECT_EQ(reopened.front()->stream_seq, 2);  // read back with the message
}

TEST(SqliteStore, AnAcknowledgedNumberedMessageIsKeptInTheSameTransactionThatRemovesIt) {
    TempDb db;
    {
        SqliteStore store(db.path(), {});
        auto a = numbered(1), b = numbered(2), plain = msg("snapshot");
        store.append(a);
        store.append(plain);
        store.append(b);
        store.remove(a.seq);
        store.remove(plain.seq);  // no number: nothing to keep
        EXPECT_EQ(store.sent_count(), 1u);
        EXPECT_EQ(store.highest_acknowledged(), 1);
        const auto w = store.whereabouts(1, 3, now_s());
        ASSERT_EQ(w.kept.size(), 1u);
        EXPECT_EQ(w.kept[0].stream_seq, 1);
        EXPECT_EQ(w.kept[0].payload, a.payload);
        EXPECT_EQ(w.kept[0].topic, a.topic);
        EXPECT_EQ(w.queued, std::vector<std::int64_t>{2});
        EXPECT_TRUE(w.dead.empty());
    }
    SqliteStore reopened(db.path(), {});
    EXPECT_EQ(reopened.highest_acknowledged(), 1);
    EXPECT_EQ(reopened.sent_count(), 1u);
    EXPECT_EQ(reopened.sent_bytes(),
              std::string("{\"seq\":1}").size() + std::string("kitchen/site/events").size());
}

TEST(SqliteStore, KeepSentZeroKeepsNothingButStillCountsTheAcknowledgement) {
    TempDb db;
    SqliteStore store(db.path(), {.keep_sent = std::chrono::seconds(0)});
    auto a = numbered(1);
    store.append(a);
    store.remove(a.seq);
    EXPECT_EQ(store.sent_count(), 0u);
    EXPECT_EQ(store.highest_acknowledged(), 1);
    EXPECT_TRUE(store.whereabouts(1, 1, now_s()).kept.empty());
}

TEST(SqliteStore, SentMessagesArePrunedBySizeOldestNumbersFirstAndByAge) {
    TempDb db;
    const std::size_t each = std::string("{\"seq\":1}").size() + std::string("kitchen/site/events").size();
    SqliteStore store(db.path(), {.keep_sent = std::chrono::hours(1), .keep_sent_bytes = 3 * each});
    for (int n = 1; n <= 5; ++n) {
        auto m = numbered(n);
        store.append(m);
        store.remove(m.seq);
    }
    EXPECT_EQ(store.sent_count(), 3u);
    EXPECT_LE(store.sent_bytes(), 3 * each);
    auto w = store.whereabouts(1, 5, now_s());
    ASSERT_EQ(w.kept.size(), 3u);
    EXPECT_EQ(w.kept.front().stream_seq, 3);
    // Older than keep_sent: no longer given out, even before the prune runs, then deleted by it.
    EXPECT_TRUE(store.whereabouts(1, 5, now_s() + 3601 + 5).kept.empty());
    EXPECT_EQ(store.sent_count(), 3u);
    store.prune_sent(now_s() + 3601 + 5);
    EXPECT_EQ(store.sent_count(), 0u);
    EXPECT_EQ(store.sent_bytes(), 0u);
    EXPECT_EQ(store.highest_acknowledged(), 5);  // pruning forgets messages, not how far the stream got
}

TEST(SqliteStore, AMessageMovedAsideKeepsItsNumberAndTakesItBackToTheQueue) {
    TempDb db;
    SqliteStore store(db.path(), {});
    auto a = numbered(7);
    store.append(a);
    store.bury(a, "refused");
    auto w = store.whereabouts(1, 10, now_s());
    EXPECT_EQ(w.dead, std::vector<std::int64_t>{7});
    EXPECT_TRUE(w.queued.empty());
    EXPECT_EQ(store.requeue_dead(), 1u);
    EXPECT_EQ(store.front()->stream_seq, 7);
    w = store.whereabouts(1, 10, now_s());
    EXPECT_EQ(w.queued, std::vector<std::int64_t>{7});
    EXPECT_TRUE(w.dead.empty());
}

TEST(SqliteStore, ADatabaseFromBeforeTheStreamIsBroughtUpToDate) {
    TempDb db;
    {
        // The tables as the previous version created them, with a message queued.
        kg::sqlite::Db old(db.path(), {.label = "old"});
        old.exec(
            "CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB "
            "NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, priority INTEGER NOT NULL);"
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
            "CREATE TABLE dead (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT "
            "NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, priority INTEGER NOT NULL, queued_seq "
            "INTEGER "
            "NOT NULL, reason TEXT NOT NULL, moved_at INTEGER NOT NULL);"
            "INSERT INTO messages(topic, payload, qos, retain, priority) VALUES('t', 'old', 1, 0, 0);");
    }
    SqliteStore store(db.path(), {});
    EXPECT_EQ(store.stream().size(), 16u);
    EXPECT_EQ(kg::sqlite::Db(db.path(), {.label = "look"}).user_version(), 1) << "brought up to version 1";
    const auto old = store.front();
    ASSERT_TRUE(old);
    EXPECT_EQ(old->payload, "old");
    EXPECT_EQ(old->stream_seq, 0);  // sent as it was queued, without a number
    auto m = numbered(1);
    store.append(m);
    store.remove(old->seq);
    store.remove(m.seq);
    EXPECT_EQ(store.sent_count(), 1u);
    // The replay lookup and the sent table's expiry go through indexes, not a scan of the table.
    kg::sqlite::Db look(db.path(), {.label = "look"});
    const auto plan = [&](const char* sql) {
        kg::sqlite::Stmt s(look, (std::string("EXPLAIN QUERY PLAN ") + sql).c_str());
        std::string out;
        while (s.step()) out += s.text(3) + ";";
        return out;
    };
    EXPECT_EQ(plan("SELECT stream_seq FROM messages WHERE stream_seq BETWEEN 1 AND 9 ORDER BY stream_seq"),
              "SEARCH messages USING COVERING INDEX messages_stream_seq (stream_seq>? AND stream_seq<?);");
    EXPECT_EQ(plan("SELECT stream_seq FROM dead WHERE stream_seq BETWEEN 1 AND 9 ORDER BY stream_seq"),
              "SEARCH dead USING COVERING INDEX dead_stream_seq (stream_seq>? AND stream_seq<?);");
    EXPECT_EQ(plan("DELETE FROM sent WHERE sent_at < 5"),
              "SEARCH sent USING INDEX sent_sent_at (sent_at<?);");
}

TEST(SqliteStore, AFileOfALaterVersionIsRefusedAndLeftAsItWas) {
    // A gateway downgraded after an upgrade: the later version's outbox holds messages only it reads
    // right. Refused, the gateway runs on memory (said in /readyz) and the file waits for that version.
    TempDb db;
    {
        SqliteStore store(db.path(), {});
        auto m = msg("queued by the later version");
        store.append(m);
    }
    {
        kg::sqlite::Db file(db.path(), {.label = "later"});
        EXPECT_EQ(file.user_version(), 1) << "the version this one writes";
        file.exec("PRAGMA user_version=2");
    }
    try {
        SqliteStore store(db.path(), {});
        FAIL() << "opened";
    } catch (const kg::outbox::StoreError& e) {
        EXPECT_EQ(std::string(e.what()),
                  "outbox " + db.path() +
                      ": schema version: the file was written by a later version of this program (schema "
                      "version 2; this one reads up to 1): run that version again, or move the file aside to "
                      "start a new one");
        EXPECT_FALSE(e.corrupt()) << "a damaged file is moved aside; this one is not damaged";
    }
    kg::sqlite::Db file(db.path(), {.label = "later"});
    EXPECT_EQ(file.user_version(), 2);
    kg::sqlite::Stmt left(file, "SELECT payload FROM messages");
    ASSERT_TRUE(left.step());
    EXPECT_EQ(left.text(0), "queued by the later version");
}

TEST(SqliteStore, AppendAllCommitsEachMessageAsAppendWould) {
    TempDb db;
    SqliteStore store(db.path(), {.max_messages = 3, .max_bytes = 1u << 20});
    std::vector<Message> batch{msg("a"), msg("t", Priority::telemetry), numbered(5), msg("b")};
    const auto results = store.append_all(batch);
    ASSERT_EQ(results.size(), 4u);
    EXPECT_TRUE(results[3].stored);
    EXPECT_EQ(results[3].dropped, 1u);  // the telemetry made room for the fourth, as append() does
    EXPECT_EQ(store.size(), 3u);
    EXPECT_EQ(store.last_stream_seq(), 5);
    std::string order;
    while (auto m = store.front()) {
        order += m->payload.substr(0, 1);
        store.remove(m->seq);
    }
    EXPECT_EQ(order, "a{b");
}

// One event's messages, sent and queued alike (GET /api/events/<id> of an event older than the log in
// memory), by the index on their id: a scan of the sent table on the HTTP thread took 400 ms cold.
// A payload that is not JSON is stored as ever, indexed as no id.
TEST(SqliteStore, OneEventsMessagesAreFoundByItsIdThroughAnIndex) {
    TempDb db;
    {
        SqliteStore store(db.path(), {});
        int n = 0;
        for (const char* id : {"aa", "bb", "aa", "bb", "aa"}) {
            auto m = msg(fmt::format(R"({{"id":"{}","n":{}}})", id, ++n));
            m.stream_seq = n;
            store.append(m);
        }
        auto binary = msg(std::string("\xff\xd8\xff\x00 not json", 13));
        binary.stream_seq = 6;
        store.append(binary);
        store.remove(store.front()->seq);  // the first two sent
        store.remove(store.front()->seq);
    }
    SqliteStore reopened(db.path(), {});
    EXPECT_EQ(
        reopened.numbered_of_event("kitchen/site/events", "aa", 10),
        (std::vector<std::string>{R"({"id":"aa","n":1})", R"({"id":"aa","n":3})", R"({"id":"aa","n":5})"}));
    EXPECT_EQ(reopened.numbered_of_event("kitchen/site/events", "aa", 1),
              (std::vector<std::string>{R"({"id":"aa","n":5})"}));
    EXPECT_TRUE(reopened.numbered_of_event("kitchen/site/events", "cc", 10).empty());
    EXPECT_TRUE(reopened.numbered_of_event("kitchen/other/events", "aa", 10).empty());
    kg::sqlite::Db raw(db.path(), {.label = "check"});
    std::string plan;
    kg::sqlite::Stmt explain(
        raw,
        "EXPLAIN QUERY PLAN SELECT payload FROM sent WHERE topic = 'kitchen/site/events' AND "
        "json_extract(CASE WHEN json_valid(CAST(payload AS TEXT)) THEN CAST(payload AS TEXT) "
        "END, '$.id') = 'aa'");
    while (explain.step()) plan += explain.text(3) + "\n";
    EXPECT_NE(plan.find("USING INDEX sent_event_id"), std::string::npos) << plan;
}

// What a new run lists of the events the runs before published: sent (the sent table) and still
// queued alike, by number, only the numbered messages of the topic asked for, the last `limit`.
TEST(SqliteStore, TheLatestNumberedMessagesOfATopicComeFromTheSentAndTheQueuedAlike) {
    TempDb db;
    {
        SqliteStore store(db.path(), {});
        for (int n = 1; n <= 5; ++n) {
            auto m = msg("e" + std::to_string(n));
            m.stream_seq = n;
            store.append(m);
        }
        auto other = msg("state");
        other.topic = "kitchen/site/cameras/k/state";
        store.append(other);
        auto unnumbered = msg("snapshot");
        store.append(unnumbered);
        store.remove(store.front()->seq);  // e1 and e2 sent
        store.remove(store.front()->seq);
    }
    SqliteStore reopened(db.path(), {});
    EXPECT_EQ(reopened.latest_numbered("kitchen/site/events", 10),
              (std::vector<std::string>{"e1", "e2", "e3", "e4", "e5"}));
    EXPECT_EQ(reopened.latest_numbered("kitchen/site/events", 2), (std::vector<std::string>{"e4", "e5"}));
    EXPECT_TRUE(reopened.latest_numbered("kitchen/other/events", 10).empty());
    // Only those holding a text (a missed_cycle among a busy day's events), however far back.
    EXPECT_EQ(reopened.latest_numbered("kitchen/site/events", 1, "e2"), (std::vector<std::string>{"e2"}));
}
