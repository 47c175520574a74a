// kitchen-monitor without the network: the store's dedup and update ordering, the alert state
// machine and deadlines, the ingest router's handling of bad messages, and the config loader.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "common/json_depth.hpp"
#include "common/logging.hpp"
#include "common/utf8.hpp"
#include "monitor/alert_state.hpp"
#include "monitor/api.hpp"
#include "monitor/auth.hpp"
#include "monitor/decisions.hpp"
#include "monitor/event_cause.hpp"
#include "monitor/ingest.hpp"
#include "monitor/iso_time.hpp"
#include "monitor/monitor_config.hpp"
#include "monitor/mqtt_client.hpp"
#include "monitor/site_updates.hpp"
#include "monitor/store.hpp"
#include "monitor/web_server.hpp"
#include "web/trusted_proxies.hpp"

using namespace kg::monitor;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// The API's context for a test: the store, the operators and the configuration, the room connected,
// every other part absent (as a monitor without replay, notifications or a clock watch has).
ApiContext test_context(Store& store, Auth& auth, const MonitorConfig& cfg) {
    return ApiContext{
        store,   auth, cfg, [] { return true; }, [](const ActionRecord&) {}, nullptr, {}, {}, {}, {},
        nullptr, {},   {}};
}

struct TempDir {
    fs::path dir =
        fs::temp_directory_path() / ("kg-monitor-" + std::to_string(getpid()) + "-" +
                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    TempDir() { fs::create_directories(dir); }
    ~TempDir() { fs::remove_all(dir); }
    std::string path(const std::string& name) const { return (dir / name).string(); }
};

const kg::TimePoint kT0 = *parse_iso8601_utc("2026-11-24T06:00:00.000Z");

// An event message in the gateway's exact format (docs/mqtt.md).
json event(const std::string& id, const std::string& state, int update = 0,
           const std::string& site = "sch-0101", int severity = 2) {
    const std::string suffix = state == "update" ? "update-" + std::to_string(update) : state;
    json j = {
        {"message_id", id + ":" + suffix},
        {"id", id},
        {"site", site},
        {"camera", "cooking"},
        {"check", "camera_health"},
        {"label", "frozen"},
        {"severity", severity},
        {"state", state},
        {"start_time", "2026-11-24T06:31:10.000Z"},
        {"end_time", state == "end" ? json("2026-11-24T06:40:00.000Z") : json(nullptr)},
        {"time", "2026-11-24T06:31:15.000Z"},
        {"score", 0.5 + 0.1 * update},
        {"top_score", 1.0},
        {"boxes", json::array()},
        {"zone", nullptr},
        {"evidence",
         {{"snapshot", nullptr}, {"snapshot_end", nullptr}, {"clip", nullptr}, {"errors", json::array()}}}};
    if (state == "end") j["duration_s"] = 530.0;
    return j;
}

EventMessage parsed(const json& j) {
    std::string error;
    auto m = parse_event(j["site"], j.dump(), error);
    EXPECT_TRUE(m) << error;
    return *m;
}

}  // namespace

TEST(MonitorStore, ADuplicateMessageChangesNothing) {
    Store store(":memory:");
    const auto start = parsed(event("19ab3c0f2e1-5f0c2a9e8d7b6c5a", "start"));
    EXPECT_EQ(store.add_event(start, kT0).outcome, IngestOutcome::created);
    EXPECT_EQ(store.add_event(start, kT0 + std::chrono::seconds(1)).outcome, IngestOutcome::duplicate);
    EXPECT_EQ(store.add_event(start, kT0 + std::chrono::seconds(2)).outcome, IngestOutcome::duplicate);
    EXPECT_EQ(store.count_alerts(), 1);
    const auto a = store.alert(start.id);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->messages, 1);
    EXPECT_EQ(a->received_at, "2026-11-24T06:00:00.000Z");  // the first arrival, not the copies
}

TEST(MonitorStore, AnOlderUpdateNeverRollsTheAlertBack) {
    Store store(":memory:");
    const std::string id = "19ab3c0f2e1-aaaaaaaaaaaaaaaa";
    EXPECT_EQ(store.add_event(parsed(event(id, "start")), kT0).outcome, IngestOutcome::created);
    EXPECT_EQ(store.add_event(parsed(event(id, "update", 2)), kT0).outcome, IngestOutcome::updated);
    EXPECT_EQ(store.add_event(parsed(event(id, "update", 1)), kT0).outcome,
              IngestOutcome::stale);  // late copy
    auto a = store.alert(id);
    EXPECT_EQ(a->last_seq, 2);
    EXPECT_NEAR(a->score, 0.7, 1e-9);
    EXPECT_EQ(a->messages, 3);  // but it is in the history
    EXPECT_EQ(store.add_event(parsed(event(id, "end")), kT0).outcome, IngestOutcome::updated);
    EXPECT_EQ(store.add_event(parsed(event(id, "update", 3)), kT0).outcome,
              IngestOutcome::stale);  // after the end
    a = store.alert(id);
    EXPECT_EQ(a->condition, "end");
    EXPECT_EQ(a->end_time.value_or(""), "2026-11-24T06:40:00.000Z");
}

TEST(MonitorStore, AnEndWithoutItsStartStillMakesOneAlert) {
    // With a shared subscription the start may have gone to another instance.
    Store store(":memory:");
    const std::string id = "19ab3c0f2e1-bbbbbbbbbbbbbbbb";
    EXPECT_EQ(store.add_event(parsed(event(id, "end")), kT0).outcome, IngestOutcome::created);
    EXPECT_EQ(store.add_event(parsed(event(id, "start")), kT0).outcome, IngestOutcome::stale);
    EXPECT_EQ(store.count_alerts(), 1);
    EXPECT_EQ(store.alert(id)->condition, "end");
}

TEST(MonitorStore, KeepsWhyTheGatewayEndedAnEvent) {
    // "gateway restarted" (its previous run was killed) says nothing about the condition: the room
    // must be able to tell it from "cleared", in the alert, its history and the API.
    TempDir tmp;
    const std::string cleared = "19ab3c0f2e1-eeeeeeeeeeeeeee1", restarted = "19ab3c0f2e1-eeeeeeeeeeeeeee2";
    {
        Store store(tmp.path("m.db"));
        store.add_event(parsed(event(cleared, "start")), kT0);
        auto end = event(cleared, "end");
        end["end_reason"] = "cleared";
        EXPECT_EQ(store.add_event(parsed(end), kT0).outcome, IngestOutcome::updated);
        end = event(restarted, "end");  // its start went to another instance
        end["end_reason"] = "gateway restarted";
        EXPECT_EQ(store.add_event(parsed(end), kT0).outcome, IngestOutcome::created);
        EXPECT_EQ(store.alert(cleared)->end_reason.value_or(""), "cleared");
    }
    Store store(tmp.path("m.db"));
    const auto a = store.alert(restarted);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->end_reason.value_or(""), "gateway restarted");
    EXPECT_EQ(alert_json(*a, MonitorConfig{}.deadlines, kT0)["end_reason"], "gateway restarted");
    EXPECT_EQ(store.alert_history(restarted)[0]["end_reason"], "gateway restarted");
    // Still open for the operators: the gateway's end never closes the loop.
    EXPECT_EQ(a->status, Status::open);
}

TEST(MonitorStore, ADatabaseFromBeforeEndReasonGetsTheColumn) {
    TempDir tmp;
    const std::string id = "19ab3c0f2e1-eeeeeeeeeeeeeee3";
    {
        Store store(tmp.path("old.db"));
        store.add_event(parsed(event(id, "start")), kT0);
    }
    {
        // As a monitor of yesterday left it: no end_reason column.
        kg::sqlite::Db db(tmp.path("old.db"), {.label = "database"});
        db.exec("ALTER TABLE alerts DROP COLUMN end_reason");
    }
    Store store(tmp.path("old.db"));
    auto end = event(id, "end");
    end["end_reason"] = "gateway stopped";
    EXPECT_EQ(store.add_event(parsed(end), kT0).outcome, IngestOutcome::updated);
    EXPECT_EQ(store.alert(id)->end_reason.value_or(""), "gateway stopped");
}

// An alert's messages are counted as they are stored: counted at each read, a month-old alert's
// 86 400 updates cost each new one 3 ms of the one ingest thread (the months review). An alert
// stored before the count was kept is counted at its reads, and once at its next message.
TEST(MonitorStore, AnAlertsMessagesAreCountedAsStoredAlsoForOneFromBefore) {
    TempDir tmp;
    const std::string id = "19ab3c0f2e1-eeeeeeeeeeeeeee4";
    {
        Store store(tmp.path("old.db"));
        store.add_event(parsed(event(id, "start")), kT0);
        store.add_event(parsed(event(id, "update", 1)), kT0);
        store.add_event(parsed(event(id, "update", 1)), kT0);  // a copy: not counted
        EXPECT_EQ(store.alert(id)->messages, 2);
    }
    {
        // As a monitor of yesterday left it: no count, and the indexes of then.
        kg::sqlite::Db db(tmp.path("old.db"), {.label = "database"});
        db.exec("DROP TRIGGER alerts_message_count; ALTER TABLE alerts DROP COLUMN messages");
        db.exec("DROP INDEX event_messages_seq; DROP INDEX alerts_listed; DROP TABLE sqlite_stat1;");
    }
    Store store(tmp.path("old.db"));
    EXPECT_EQ(store.alert(id)->messages, 2);
    std::size_t total = 0;
    EXPECT_EQ(store.alert_history(id, &total).size(), 2u);
    EXPECT_EQ(total, 2u);
    EXPECT_EQ(store.add_event(parsed(event(id, "update", 2)), kT0).outcome, IngestOutcome::updated);
    EXPECT_EQ(store.alert(id)->messages, 3);
    EXPECT_EQ(store.add_event(parsed(event(id, "end")), kT0).outcome, IngestOutcome::updated);
    EXPECT_EQ(store.alert(id)->messages, 4);
    AlertFilter every;
    every.all = true;
    EXPECT_EQ(store.alerts(every).at(0).messages, 4);
    store.optimize();  // runs on a database of any age
    {
        // An instance of an earlier release sharing the file stores a message of its own: counted
        // too (by the trigger), so the history shows it.
        kg::sqlite::Db other(tmp.path("old.db"), {.label = "database"});
        kg::sqlite::Stmt(
            other,
            "INSERT INTO event_messages(message_id, event_id, seq, state, time, received_at, payload)"
            " VALUES(?1 || ':update-9', ?1, 9, 'update', '2026-11-24T06:41:00.000Z',"
            " '2026-11-24T06:41:00.000Z', '{}')")
            .bind(1, id)
            .run();
    }
    EXPECT_EQ(store.alert(id)->messages, 5);
    EXPECT_EQ(store.alert_history(id, &total).size(), 5u);

    kg::sqlite::Db db(tmp.path("old.db"), {.label = "database"});
    kg::sqlite::Stmt counted(db, "SELECT messages FROM alerts WHERE id = ?");
    counted.bind(1, id);
    ASSERT_TRUE(counted.step());
    EXPECT_EQ(counted.integer(0), 5);  // kept in the row from the first message after the upgrade
    kg::sqlite::Stmt indexes(
        db,
        "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master WHERE name IN"
        " ('alerts_status', 'event_messages_event', 'alerts_listed', 'alerts_ranked',"
        " 'event_messages_seq', 'sqlite_stat1', 'alerts_message_count') ORDER BY name)");
    ASSERT_TRUE(indexes.step());
    EXPECT_EQ(indexes.text(0),
              "alerts_listed alerts_message_count alerts_ranked alerts_status event_messages_event "
              "event_messages_seq sqlite_stat1");
}

TEST(MonitorIngest, AnEndReasonThatIsNotAShortTextIsRefused) {
    auto end = event("19ab3c0f2e1-eeeeeeeeeeeeeee4", "end");
    end["end_reason"] = 7;
    std::string error;
    EXPECT_FALSE(parse_event("sch-0101", end.dump(), error));
    EXPECT_EQ(error, "end_reason is not a text of at most 64 characters");
    end["end_reason"] = std::string(65, 'x');
    EXPECT_FALSE(parse_event("sch-0101", end.dump(), error));
    end.erase("end_reason");  // an older gateway
    EXPECT_FALSE(parsed(end).end_reason);
}

// An outage's cause (docs/mqtt.md): the alert keeps the latest a message of it gave (an end sent
// at a stop has none, and keeps it), the API and each message of its history say it. One the room
// cannot use is left out with the rest of the alert stored; a long text is shortened.
TEST(MonitorStore, KeepsTheLatestCauseAnAlertWasGiven) {
    Store store(":memory:");
    const std::string id = "19ab3c0f2e1-eeeeeeeeeeeeeee5";
    auto start = event(id, "start");
    start["label"] = "offline";
    start["cause"] = {{"kind", "stalled"}, {"text", "no data for 10000 ms"}};
    store.add_event(parsed(start), kT0);
    EXPECT_EQ(json::parse(store.alert(id)->cause.value_or("null"))["kind"], "stalled");
    auto update = event(id, "update", 1);
    update["label"] = "offline";
    update["cause"] = {{"kind", "unauthorized"}, {"text", "cannot open: Server returned 401 Unauthorized"}};
    store.add_event(parsed(update), kT0);
    auto end = event(id, "end");
    end["label"] = "offline";
    end["end_reason"] = "gateway stopped";
    store.add_event(parsed(end), kT0);
    const auto a = store.alert(id);
    ASSERT_TRUE(a);
    const auto j = alert_json(*a, MonitorConfig{}.deadlines, kT0);
    EXPECT_EQ(j["cause"],
              (json{{"kind", "unauthorized"}, {"text", "cannot open: Server returned 401 Unauthorized"}}));
    const auto history = store.alert_history(id);
    ASSERT_EQ(history.size(), 3u);
    EXPECT_EQ(history[0]["cause"]["kind"], "stalled");
    EXPECT_EQ(history[1]["cause"]["kind"], "unauthorized");
    EXPECT_TRUE(history[2]["cause"].is_null());

    const std::string other = "19ab3c0f2e1-eeeeeeeeeeeeeee6";
    auto odd = event(other, "start");
    odd["cause"] = "the camera is down";  // not an object
    const auto m = parsed(odd);
    EXPECT_FALSE(m.cause);
    ASSERT_EQ(m.cleaned.size(), 1u);
    EXPECT_NE(m.cleaned[0].find("cause"), std::string::npos);
    EXPECT_EQ(store.add_event(m, kT0).outcome, IngestOutcome::created);
    EXPECT_TRUE(alert_json(*store.alert(other), MonitorConfig{}.deadlines, kT0)["cause"].is_null());
    odd["cause"] = {{"kind", "Not A Word"}, {"text", "x"}};
    EXPECT_FALSE(parsed(odd).cause);
    odd["cause"] = {{"kind", "error"}, {"text", std::string(5000, 'x')}};
    const auto shortened = json::parse(parsed(odd).cause.value_or("null"));
    EXPECT_LE(shortened["text"].get<std::string>().size(), kg::monitor::kMaxCauseTextBytes);
}

// A cabinet that missed a second window while its alert was open: the room shows the count the
// latest message gave, each message's in the history, and leaves out one that is not a count.
TEST(MonitorStore, KeepsTheWindowsAMissedDisinfectionCounted) {
    Store store(":memory:");
    const std::string id = "19ab3c0f2e1-eeeeeeeeeeeeeee7";
    auto start = event(id, "start");
    start["check"] = "disinfection";
    start["label"] = "missed_cycle";
    start["windows_missed"] = 1;
    store.add_event(parsed(start), kT0);
    EXPECT_EQ(store.alert(id)->windows_missed, 1);
    auto update = event(id, "update", 1);
    update["check"] = "disinfection";
    update["label"] = "missed_cycle";
    update["windows_missed"] = 2;
    store.add_event(parsed(update), kT0);
    auto end = event(id, "end");
    end["check"] = "disinfection";
    end["label"] = "missed_cycle";
    end["windows_missed"] = 2;
    store.add_event(parsed(end), kT0);
    const auto a = store.alert(id);
    ASSERT_TRUE(a);
    EXPECT_EQ(alert_json(*a, MonitorConfig{}.deadlines, kT0)["windows_missed"], 2);
    const auto history = store.alert_history(id);
    ASSERT_EQ(history.size(), 3u);
    EXPECT_EQ(history[0]["windows_missed"], 1);
    EXPECT_EQ(history[1]["windows_missed"], 2);

    const std::string other = "19ab3c0f2e1-eeeeeeeeeeeeeee8";
    auto odd = event(other, "start");
    EXPECT_FALSE(parsed(odd).windows_missed);
    odd["windows_missed"] = "two";
    const auto m = parsed(odd);
    EXPECT_FALSE(m.windows_missed);
    ASSERT_EQ(m.cleaned.size(), 1u);
    EXPECT_NE(m.cleaned[0].find("windows_missed"), std::string::npos);
    EXPECT_EQ(store.add_event(m, kT0).outcome, IngestOutcome::created);
    EXPECT_TRUE(alert_json(*store.alert(other), MonitorConfig{}.deadlines, kT0)["windows_missed"].is_null());
    EXPECT_TRUE(store.alert_history(other)[0]["windows_missed"].is_null());
    odd["windows_missed"] = 0;
    EXPECT_FALSE(parsed(odd).windows_missed);
    odd["windows_missed"] = 2.5;
    EXPECT_FALSE(parsed(odd).windows_missed);
}

TEST(MonitorStore, ASiteCannotTouchAnotherSitesAlert) {
    Store store(":memory:");
    const std::string id = "19ab3c0f2e1-cccccccccccccccc";
    EXPECT_EQ(store.add_event(parsed(event(id, "start", 0, "sch-0101")), kT0).outcome,
              IngestOutcome::created);
    EXPECT_EQ(store.add_event(parsed(event(id, "end", 0, "sch-0999")), kT0).outcome, IngestOutcome::rejected);
    EXPECT_FALSE(store.add_snapshot("sch-0999", id, "\xff\xd8jpeg", kT0));
    EXPECT_TRUE(store.add_snapshot("sch-0101", id, "\xff\xd8jpeg", kT0));
    EXPECT_EQ(store.alert(id)->condition, "start");
}

TEST(MonitorStore, SurvivesAReopen) {
    TempDir tmp;
    const std::string id = "19ab3c0f2e1-dddddddddddddddd";
    {
        Store store(tmp.path("m.db"));
        store.add_event(parsed(event(id, "start")), kT0);
        ASSERT_EQ(store.act(id, Action::acknowledge, "wang", "", kT0).code, ActionResult::Code::ok);
    }
    Store store(tmp.path("m.db"));
    EXPECT_EQ(store.add_event(parsed(event(id, "start")), kT0).outcome, IngestOutcome::duplicate);
    EXPECT_EQ(store.alert(id)->status, Status::acknowledged);
    EXPECT_EQ(store.unpublished_actions(10).size(), 1u);
    // By status, every status named (the /metrics gauge kgm_alerts{status}).
    const std::string other = "19ab3c0f2e1-eeeeeeeeeeeeeeee";
    store.add_event(parsed(event(other, "start")), kT0);
    EXPECT_EQ(store.count_alerts_by_status(),
              (std::map<std::string, std::int64_t>{{"acknowledged", 1}, {"closed", 0}, {"open", 1}}));
    ASSERT_EQ(store.act(id, Action::close, "wang", "lid closed", kT0).code, ActionResult::Code::ok);
    EXPECT_EQ(store.count_alerts_by_status(),
              (std::map<std::string, std::int64_t>{{"acknowledged", 0}, {"closed", 1}, {"open", 1}}));
}

TEST(MonitorStore, AnUnwritablePathIsAClearError) {
    // Says which database and where: the same layer opens the gateway's outbox, whose errors say "outbox".
    try {
        Store store("/proc/kg-no-such-dir/monitor.db");
        FAIL() << "opened an impossible path";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("database /proc/kg-no-such-dir/monitor.db: cannot open"),
                  std::string::npos)
            << e.what();
    }
}

TEST(MonitorAlertState, TheLoopGoesOpenAcknowledgedClosed) {
    EXPECT_EQ(transition(Status::open, Action::acknowledge, "").next, Status::acknowledged);
    EXPECT_FALSE(transition(Status::open, Action::close, "fixed").ok);       // verify first
    EXPECT_FALSE(transition(Status::acknowledged, Action::close, "  ").ok);  // say what was done
    EXPECT_EQ(transition(Status::acknowledged, Action::close, "bin lid closed").next, Status::closed);
    EXPECT_FALSE(transition(Status::acknowledged, Action::acknowledge, "").ok);
    EXPECT_FALSE(transition(Status::closed, Action::close, "again").ok);
    EXPECT_TRUE(transition(Status::closed, Action::note, "re-checked after 72 h: fine").ok);
    EXPECT_FALSE(transition(Status::open, Action::note, "").ok);
}

TEST(MonitorAlertState, StoreRecordsEachActionForPublication) {
    Store store(":memory:");
    const std::string id = "19ab3c0f2e1-eeeeeeeeeeeeeeee";
    store.add_event(parsed(event(id, "start")), kT0);
    EXPECT_EQ(store.act("nosuchalert0", Action::acknowledge, "wang", "", kT0).code,
              ActionResult::Code::not_found);
    EXPECT_EQ(store.act(id, Action::close, "wang", "done", kT0).code, ActionResult::Code::refused);
    EXPECT_EQ(store.act(id, Action::acknowledge, "wang", "on my way", kT0).code, ActionResult::Code::ok);
    const auto closed = store.act(id, Action::close, "li", "cleaned, staff briefed",
                                  kT0 + std::chrono::minutes(5), "monitor-1");
    ASSERT_EQ(closed.code, ActionResult::Code::ok);
    const auto a = store.alert(id);
    EXPECT_EQ(a->status, Status::closed);
    EXPECT_EQ(a->acknowledged_by.value_or(""), "wang");
    EXPECT_EQ(a->closed_by.value_or(""), "li");
    EXPECT_EQ(a->close_note.value_or(""), "cleaned, staff briefed");
    auto pending = store.unpublished_actions(10);
    ASSERT_EQ(pending.size(), 2u);
    store.mark_published(pending[0].seq, kT0);
    pending = store.unpublished_actions(10);
    ASSERT_EQ(pending.size(), 1u);
    EXPECT_EQ(pending[0].action, "close");

    const auto payload = decision_payload(pending[0], a);
    EXPECT_EQ(payload["decision_id"], "monitor-1-" + std::to_string(pending[0].seq));
    EXPECT_EQ(payload["status"], "closed");
    EXPECT_EQ(payload["operator"], "li");
    EXPECT_EQ(payload["alert"]["camera"], "cooking");
    EXPECT_EQ(decision_topic("kitchen", pending[0]), "kitchen/sch-0101/decisions/" + id);
    // Closed alerts leave the default (active) list but stay in "all".
    EXPECT_TRUE(store.alerts({}).empty());
    AlertFilter all;
    all.all = true;
    EXPECT_EQ(store.alerts(all).size(), 1u);
}

// The list and its count give, for every combination of filters, exactly the alerts a reading of
// each one finds (the filter's SQL is built from the conditions given, to use the active indexes).
TEST(MonitorAlertState, EveryFilterCombinationListsAndCountsTheAlertsItMatches) {
    Store store(":memory:");
    struct Row {
        std::string id, site, check;
        int severity;
        Status status;
    };
    std::vector<Row> rows;
    const std::vector<std::string> sites = {"sch-0101", "sch-0202"}, checks = {"mask", "camera_health"};
    for (int i = 0; i < 24; ++i) {
        Row r{fmt::format("19ab3c0f2e1-{:016x}", i), sites[i % 2], checks[(i / 2) % 2], 1 + i % 3,
              Status::open};
        auto msg = event(r.id, "start", 0, r.site, r.severity);
        msg["check"] = r.check;
        ASSERT_EQ(store.add_event(parsed(msg), kT0 + std::chrono::seconds(i)).outcome,
                  IngestOutcome::created);
        if (i % 4 != 0) {
            ASSERT_EQ(store.act(r.id, Action::acknowledge, "wang", "", kT0).code, ActionResult::Code::ok);
            r.status = Status::acknowledged;
        }
        if (i % 4 == 3) {
            ASSERT_EQ(store.act(r.id, Action::close, "wang", "done", kT0).code, ActionResult::Code::ok);
            r.status = Status::closed;
        }
        rows.push_back(r);
    }
    int combinations = 0;
    for (const std::optional<std::string>& site : {std::optional<std::string>{}, std::optional(sites[1])})
        for (const std::optional<std::string>& check :
             {std::optional<std::string>{}, std::optional(checks[0])})
            for (const std::optional<int> severity : {std::optional<int>{}, std::optional(2)})
                for (const std::optional<Status> status :
                     {std::optional<Status>{}, std::optional(Status::open),
                      std::optional(Status::acknowledged), std::optional(Status::closed)})
                    for (const bool all : {false, true}) {
                        const AlertFilter f{site, check, severity, status, all, 1000};
                        std::set<std::string> expected;
                        for (const auto& r : rows) {
                            const bool status_ok =
                                all || (status ? r.status == *status : r.status != Status::closed);
                            if ((!site || r.site == *site) && (!check || r.check == *check) &&
                                (!severity || r.severity == *severity) && status_ok)
                                expected.insert(r.id);
                        }
                        std::set<std::string> listed;
                        for (const auto& a : store.alerts(f)) listed.insert(a.id);
                        const auto what =
                            fmt::format("site {} check {} severity {} status {} all {}", site.value_or("-"),
                                        check.value_or("-"), severity.value_or(0),
                                        status ? to_string(*status) : "-", all);
                        EXPECT_EQ(listed, expected) << what;
                        EXPECT_EQ(store.count_alerts(f), static_cast<std::int64_t>(expected.size())) << what;
                        ++combinations;
                    }
    EXPECT_EQ(combinations, 64);
    EXPECT_EQ(store.checks(), (std::vector<std::string>{"camera_health", "mask"}));
    EXPECT_TRUE(Store(":memory:").checks().empty());
}

// A database made before the active alerts' indexes gets them at its next start (a write kept out
// of the schema's transaction: a file this process may only read opens without them).
TEST(MonitorAlertState, AnExistingDatabaseGetsTheReadIndexesAtItsNextStart) {
    const auto path =
        fs::temp_directory_path() / ("kg-monitor-indexes-" + std::to_string(::getpid()) + ".db");
    fs::remove(path);
    const auto sql = [&](const char* text) {  // the first column of the first row, as a number
        sqlite3* raw = nullptr;
        EXPECT_EQ(sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
        sqlite3_stmt* stmt = nullptr;
        EXPECT_EQ(sqlite3_prepare_v2(raw, text, -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(raw);
        const int n = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : -1;
        sqlite3_finalize(stmt);
        sqlite3_close(raw);
        return n;
    };
    const auto indexes = [&] {
        return sql(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name IN"
            " ('alerts_active', 'alerts_active_site', 'alerts_check')");
    };
    { Store(path.string()).add_event(parsed(event("19ab3c0f2e1-eeeeeeeeeeeeeee1", "start")), kT0); }
    EXPECT_EQ(indexes(), 3);
    for (const char* drop :
         {"DROP INDEX alerts_active", "DROP INDEX alerts_active_site", "DROP INDEX alerts_check"})
        sql(drop);
    EXPECT_EQ(indexes(), 0);
    {
        Store again(path.string());
        EXPECT_EQ(again.count_alerts(AlertFilter{}), 1);
    }
    EXPECT_EQ(indexes(), 3);
    fs::remove(path);
}

TEST(MonitorAlertState, OverdueByTier) {
    const MonitorConfig cfg;  // defaults: tier 1 ack 15 min / close 2 h; tier 2 ack 2 h / close 72 h
    using std::chrono::hours;
    using std::chrono::minutes;
    EXPECT_FALSE(deadline_state(cfg.deadlines, 1, Status::open, kT0, kT0 + minutes(14)).overdue);
    auto d = deadline_state(cfg.deadlines, 1, Status::open, kT0, kT0 + minutes(16));
    EXPECT_TRUE(d.overdue);
    EXPECT_EQ(d.overdue_reason, "acknowledge");
    EXPECT_FALSE(deadline_state(cfg.deadlines, 1, Status::acknowledged, kT0, kT0 + minutes(16)).overdue);
    d = deadline_state(cfg.deadlines, 1, Status::acknowledged, kT0, kT0 + hours(3));
    EXPECT_EQ(d.overdue_reason, "close");
    EXPECT_FALSE(deadline_state(cfg.deadlines, 1, Status::closed, kT0, kT0 + hours(300)).overdue);
    EXPECT_TRUE(deadline_state(cfg.deadlines, 2, Status::acknowledged, kT0, kT0 + hours(73)).overdue);
    EXPECT_FALSE(deadline_state(cfg.deadlines, 3, Status::open, kT0, kT0 + hours(1000)).overdue);
}

TEST(MonitorIngest, RoutesTheSiteTreeAndRefusesBadMessages) {
    Store store(":memory:");
    std::vector<Change> changes;
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(),
                  [&](const Change& c) { changes.push_back(c); });
    const std::string id = "19ab3c0f2e1-ffffffffffffffff";
    ingest.handle("kitchen/sch-0101/availability", "online", true, kT0);
    ingest.handle("kitchen/sch-0101/events", event(id, "start").dump(), false, kT0);
    ingest.handle("kitchen/sch-0101/events", event(id, "start").dump(), false, kT0);  // redelivered
    ingest.handle("kitchen/sch-0101/events/" + id + "/snapshot", std::string("\xff\xd8\xff\xe0rest", 8),
                  false, kT0);
    ingest.handle(
        "kitchen/sch-0101/sensors/fridge/rollup",
        R"({"site":"sch-0101","sensor":"fridge","unit":"degC","minute":"2026-11-24T06:00:00.000Z","min":3.1,"mean":3.4,"max":3.9,"count":12})",
        false, kT0);
    // Bad input: each refused, none stops the next.
    auto no_severity = event("19ab3c0f2e1-1111111111111111", "start");
    no_severity.erase("severity");
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"kitchen/sch-0101/events", "{not json"},
        {"kitchen/sch-0101/events", "[1,2]"},
        {"kitchen/sch-0101/events", event(id, "start", 0, "sch-0202").dump()},  // site mismatch
        {"kitchen/sch-0101/events", no_severity.dump()},
        {"kitchen/sch-0101/events/" + id + "/snapshot", "not a jpeg"},
        {"kitchen/sch-0101/availability", "maybe"},
        {"kitchen/../events", "{}"},
        {"other/sch-0101/events", "{}"},
        {"kitchen/sch-0101/sensors/fridge/rollup",
         R"({"minute":"yesterday","min":1,"mean":1,"max":1,"count":1})"},
    };
    for (const auto& [topic, payload] : bad) ingest.handle(topic, payload, false, kT0);
    auto wrong_seq = event("19ab3c0f2e1-2222222222222222", "start");
    wrong_seq["message_id"] = "19ab3c0f2e1-2222222222222222:end";  // suffix disagrees with state
    ingest.handle("kitchen/sch-0101/events", wrong_seq.dump(), false, kT0);

    EXPECT_EQ(ingest.counters().created.load(), 1u);
    EXPECT_EQ(ingest.counters().duplicates.load(), 1u);
    EXPECT_EQ(ingest.counters().refused.load(), bad.size() + 1);
    EXPECT_EQ(store.count_alerts(), 1);
    EXPECT_TRUE(store.alert(id)->has_snapshot);
    const auto sites = store.sites();
    ASSERT_EQ(sites.size(), 1u);
    EXPECT_EQ(sites[0]["availability"], "online");
    EXPECT_TRUE(sites[0]["last_seen"].is_string());  // live messages are heartbeats
    const auto rollups = store.rollups("sch-0101", "2026-11-24T00:00:00.000Z", "2026-11-25T00:00:00.000Z");
    ASSERT_TRUE(rollups);
    ASSERT_EQ(rollups->size(), 1u);
    EXPECT_EQ((*rollups)[0]["points"][0]["mean"], 3.4);
    EXPECT_FALSE(store.rollups("sch-0102", "2026-11-24T00:00:00.000Z", "2026-11-25T00:00:00.000Z"));
}

// An installer takes a camera and a sensor out of the configuration: the room showed them offline for
// good. The gateway message lists what the site has; the rest is forgotten, and a state the broker
// kept retained from before does not bring it back.
TEST(MonitorIngest, CamerasAndSensorsTheSiteNoLongerListsAreForgotten) {
    Store store(":memory:");
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    const auto camera = [](const std::string& id) {
        return json{{"site", "sch-0101"}, {"camera", id}, {"name", id}, {"online", false}}.dump();
    };
    const auto sensor = [](const std::string& id) {
        return json{{"site", "sch-0101"}, {"sensor", id}, {"name", id}, {"unit", "degC"}, {"online", false}}
            .dump();
    };
    const auto listed = [&](const char* what) {
        std::set<std::string> ids;
        const json sites = store.sites();
        for (const auto& c : sites.at(0)[what])
            ids.insert(c[what == std::string("cameras") ? "camera" : "sensor"].get<std::string>());
        return ids;
    };
    for (const auto* id : {"cooking", "store"})
        ingest.handle(fmt::format("kitchen/sch-0101/cameras/{}/state", id), camera(id), true, kT0);
    for (const auto* id : {"fridge", "freezer"})
        ingest.handle(fmt::format("kitchen/sch-0101/sensors/{}/state", id), sensor(id), true, kT0);
    ASSERT_EQ(listed("cameras"), (std::set<std::string>{"cooking", "store"}));
    ASSERT_EQ(listed("sensors"), (std::set<std::string>{"fridge", "freezer"}));

    json info = {
        {"site", "sch-0101"},
        {"name", "No. 1"},
        {"version", "0.3.0"},
        {"cameras",
         json::array(
             {{{"id", "cooking"}, {"name", "Cooking"}, {"public", true}, {"checks", json::array()}}})},
        {"sensors",
         json::array({{{"id", "fridge"}, {"name", "Fridge"}, {"kind", "temperature"}, {"unit", "degC"}}})}};
    ingest.handle("kitchen/sch-0101/gateway", info.dump(), true, kT0);
    EXPECT_EQ(listed("cameras"), (std::set<std::string>{"cooking"}));
    EXPECT_EQ(listed("sensors"), (std::set<std::string>{"fridge"}));
    // The broker hands the old retained states over again (the monitor restarted): still gone.
    ingest.handle("kitchen/sch-0101/cameras/store/state", camera("store"), true, kT0);
    ingest.handle("kitchen/sch-0101/sensors/freezer/state", sensor("freezer"), true, kT0);
    EXPECT_EQ(listed("cameras"), (std::set<std::string>{"cooking"}));
    EXPECT_EQ(listed("sensors"), (std::set<std::string>{"fridge"}));
    EXPECT_EQ(ingest.counters().refused.load(), 0u);  // not an error: what a broker keeps
    // A gateway of an older version lists no sensors: the room keeps what it has of them.
    info.erase("sensors");
    info["cameras"].push_back(
        {{"id", "hall"}, {"name", "Hall"}, {"public", false}, {"checks", json::array()}});
    ingest.handle("kitchen/sch-0101/gateway", info.dump(), true, kT0);
    ingest.handle("kitchen/sch-0101/cameras/hall/state", camera("hall"), true, kT0);
    ingest.handle("kitchen/sch-0101/sensors/freezer/state", sensor("freezer"), true, kT0);
    EXPECT_EQ(listed("cameras"), (std::set<std::string>{"cooking", "hall"}));
    EXPECT_EQ(listed("sensors"), (std::set<std::string>{"fridge", "freezer"}));
    // A state topic cleared on the broker (an empty retained message) forgets it too.
    ingest.handle("kitchen/sch-0101/cameras/hall/state", "", false, kT0);
    EXPECT_EQ(listed("cameras"), (std::set<std::string>{"cooking"}));
    EXPECT_EQ(ingest.counters().refused.load(), 0u);
}

// A broken or hostile site naming a new sensor in every roll-up would grow the table, and every
// chart's list of sensors, without end: past 256 sensors a new one is refused, and the cap holds
// across a restart of the room (read back from the table).
TEST(MonitorIngest, RollupsOfMoreSensorsThanASiteCanHaveAreRefused) {
    TempDir tmp;
    const auto db = (tmp.dir / "monitor.db").string();
    const auto rollup = [](const std::string& site, const std::string& sensor, const std::string& minute) {
        return std::pair{fmt::format("kitchen/{}/sensors/{}/rollup", site, sensor), json{{"site", site},
                                                                                         {"sensor", sensor},
                                                                                         {"unit", "degC"},
                                                                                         {"minute", minute},
                                                                                         {"min", 3.1},
                                                                                         {"mean", 3.4},
                                                                                         {"max", 3.9},
                                                                                         {"count", 6}}
                                                                                        .dump()};
    };
    const auto sensors_of = [](Store& store, const std::string& site) {
        std::set<std::string> out;
        const auto rollups = store.rollups(site, "2026-11-24T00:00:00.000Z", "2026-11-25T00:00:00.000Z");
        for (const auto& s : *rollups) out.insert(s["sensor"].get<std::string>());
        return out;
    };
    {
        Store store(db);
        Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
        const auto send = [&](const std::string& site, const std::string& sensor, const std::string& minute) {
            const auto [topic, payload] = rollup(site, sensor, minute);
            ingest.handle(topic, payload, false, kT0);
        };
        for (int i = 0; i < Store::kMaxSourcesPerSite; ++i)
            send("sch-0101", fmt::format("s{:03}", i), "2026-11-24T08:00:00.000Z");
        EXPECT_EQ(ingest.counters().refused.load(), 0u);
        send("sch-0101", "one-too-many", "2026-11-24T08:00:00.000Z");
        EXPECT_EQ(ingest.counters().refused.load(), 1u);
        send("sch-0101", "s000", "2026-11-24T08:01:00.000Z");    // a sensor it has: its next minute
        send("sch-0102", "fridge", "2026-11-24T08:00:00.000Z");  // another site: its own count
        EXPECT_EQ(ingest.counters().refused.load(), 1u);
        const auto kept = sensors_of(store, "sch-0101");
        EXPECT_EQ(kept.size(), static_cast<std::size_t>(Store::kMaxSourcesPerSite));
        EXPECT_FALSE(kept.contains("one-too-many"));
        // A sensor renamed at the cap: the old name's minutes stay until retention, the new name is
        // in the site's gateway message.
        store.set_gateway_info("sch-0101",
                               json{{"site", "sch-0101"},
                                    {"version", 2},
                                    {"started_at", nullptr},
                                    {"sensors", json::array({json{{"id", "renamed"}}})}},
                               kT0);
        send("sch-0101", "renamed", "2026-11-24T08:02:00.000Z");
        EXPECT_EQ(ingest.counters().refused.load(), 1u);
        EXPECT_TRUE(sensors_of(store, "sch-0101").contains("renamed"));
    }
    Store store(db);
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    for (const char* sensor : {"another", "s001"}) {
        const auto [topic, payload] = rollup("sch-0101", sensor, "2026-11-24T09:00:00.000Z");
        ingest.handle(topic, payload, false, kT0);
    }
    EXPECT_EQ(ingest.counters().refused.load(), 1u) << "the new sensor, not s001";
    EXPECT_FALSE(sensors_of(store, "sch-0101").contains("another"));
}

// A site whose clock runs years ahead: its minutes would outlive retention (counted from them) and
// pull every later curve of the sensor to 2037. Refused; a clock a little fast is taken.
TEST(MonitorIngest, ASensorMinuteFarAheadOfTheRoomsClockIsRefused) {
    Store store(":memory:");
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    const auto rollup_at = [](const std::string& minute) {
        return json{{"site", "sch-0101"}, {"sensor", "fridge"}, {"unit", "degC"}, {"minute", minute},
                    {"min", 3.1},         {"mean", 3.4},        {"max", 3.9},     {"count", 6}}
            .dump();
    };
    ingest.handle("kitchen/sch-0101/sensors/fridge/rollup", rollup_at("2037-01-01T00:00:00.000Z"), false,
                  kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 1u);
    ingest.handle("kitchen/sch-0101/sensors/fridge/rollup", rollup_at("2026-11-25T05:00:00.000Z"), false,
                  kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 1u);  // 23 h ahead: taken
    const auto kept = store.rollups("sch-0101", "2026-11-24T00:00:00.000Z", "2038-01-01T00:00:00.000Z");
    ASSERT_TRUE(kept);
    ASSERT_EQ(kept->size(), 1u);
    ASSERT_EQ((*kept)[0]["points"].size(), 1u);
    EXPECT_EQ((*kept)[0]["points"][0]["minute"], "2026-11-25T05:00:00.000Z");
}

// A gateway restarted within a minute: its stop sent the part of the minute before, the next run
// the part after, and the room kept the last, losing the minute's first part (its lowest reading,
// here). Parts marked partial add up, in either order; a whole minute sent twice stays one.
TEST(MonitorIngest, ThePartsOfAMinuteCutByARestartAddUp) {
    Store store(":memory:");
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    const auto part = [](const std::string& sensor, double min, double mean, double max, int count,
                         json partial) {
        json j{{"site", "sch-0101"}, {"sensor", sensor},
               {"unit", "degC"},     {"minute", "2026-11-24T08:00:00.000Z"},
               {"min", min},         {"mean", mean},
               {"max", max},         {"count", count}};
        if (!partial.is_null()) j["partial"] = partial;
        return j.dump();
    };
    const auto send = [&](const std::string& sensor, const std::string& payload) {
        ingest.handle("kitchen/sch-0101/sensors/" + sensor + "/rollup", payload, false, kT0);
    };
    send("fridge", part("fridge", 3.0, 3.5, 4.0, 2, true));    // the stop's part
    send("fridge", part("fridge", 2.0, 5.0, 6.0, 6, true));    // the next run's
    send("freezer", part("freezer", 2.0, 5.0, 6.0, 6, true));  // the other way round
    send("freezer", part("freezer", 3.0, 3.5, 4.0, 2, true));
    send("cellar", part("cellar", 3.0, 3.5, 4.0, 2, nullptr));  // whole, redelivered
    send("cellar", part("cellar", 3.0, 3.5, 4.0, 2, nullptr));
    send("cellar", part("cellar", 3.0, 3.5, 4.0, 2, "yes"));
    EXPECT_EQ(ingest.counters().refused.load(), 1u);
    const auto kept = store.rollups("sch-0101", "2026-11-24T00:00:00.000Z", "2026-11-25T00:00:00.000Z");
    ASSERT_TRUE(kept);
    std::map<std::string, json> point;
    for (const auto& s : *kept) {
        ASSERT_EQ(s["points"].size(), 1u) << s.dump();
        point[s["sensor"].get<std::string>()] = s["points"][0];
    }
    for (const char* sensor : {"fridge", "freezer"}) {
        const auto& p = point[sensor];
        EXPECT_EQ(p["min"], 2.0) << sensor << " " << p.dump();
        EXPECT_EQ(p["max"], 6.0) << sensor << " " << p.dump();
        EXPECT_DOUBLE_EQ(p["mean"].get<double>(), (3.5 * 2 + 5.0 * 6) / 8) << sensor << " " << p.dump();
        EXPECT_EQ(p["count"], 8) << sensor << " " << p.dump();
    }
    EXPECT_EQ(point["cellar"]["count"], 2) << point["cellar"].dump();
    // Parts in two units (changed at that restart) are not added up: the later one stands.
    auto fahrenheit = json::parse(part("pantry", 39.0, 39.5, 40.0, 2, true));
    fahrenheit["unit"] = "degF";
    send("pantry", fahrenheit.dump());
    send("pantry", part("pantry", 3.0, 3.5, 4.0, 6, true));
    json pantry;
    const auto all = store.rollups("sch-0101", "2026-11-24T00:00:00.000Z", "2026-11-25T00:00:00.000Z");
    ASSERT_TRUE(all);
    for (const auto& sensor : *all)
        if (sensor["sensor"] == "pantry") pantry = sensor["points"].at(0);
    EXPECT_EQ(pantry["max"], 4.0) << pantry.dump();
    EXPECT_EQ(pantry["count"], 6) << pantry.dump();
}

// QoS 1 delivers a message again when its PUBACK is lost. A whole minute replaces itself, but a part
// was added again, counting its readings twice. Each part carries its run's id: the same part again
// leaves the minute as it is, another part adds; a part without an id (a gateway from before ids) is
// added as it always was.
TEST(MonitorIngest, APartDeliveredTwiceIsAddedOnce) {
    Store store(":memory:");
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    const auto send = [&](double min, double max, int count, json part, const char* unit = "degC") {
        json j{{"site", "sch-0101"}, {"sensor", "fridge"},
               {"unit", unit},       {"minute", "2026-11-24T08:00:00.000Z"},
               {"min", min},         {"mean", (min + max) / 2},
               {"max", max},         {"count", count},
               {"partial", true}};
        if (!part.is_null()) j["part"] = part;
        ingest.handle("kitchen/sch-0101/sensors/fridge/rollup", j.dump(), false, kT0);
    };
    const auto minute = [&] {
        const auto kept = store.rollups("sch-0101", "2026-11-24T00:00:00.000Z", "2026-11-25T00:00:00.000Z");
        EXPECT_TRUE(kept && kept->size() == 1u && (*kept)[0]["points"].size() == 1u);
        return kept && !kept->empty() && !(*kept)[0]["points"].empty() ? (*kept)[0]["points"][0] : json();
    };
    send(3.0, 4.0, 2, "a1b2c3d4e5f60718");  // the stop's part
    send(3.0, 4.0, 2, "a1b2c3d4e5f60718");  // delivered again
    EXPECT_EQ(minute()["count"], 2) << minute().dump();
    send(2.0, 6.0, 6, "0f0e0d0c0b0a0908");  // the next run's
    send(3.0, 4.0, 2, "a1b2c3d4e5f60718");  // the first, once more, after it
    send(2.0, 6.0, 6, "0f0e0d0c0b0a0908");
    auto p = minute();
    EXPECT_EQ(p["count"], 8) << p.dump();
    EXPECT_EQ(p["min"], 2.0) << p.dump();
    EXPECT_EQ(p["max"], 6.0) << p.dump();
    EXPECT_DOUBLE_EQ(p["mean"].get<double>(), (3.5 * 2 + 4.0 * 6) / 8) << p.dump();
    send(1.0, 1.0, 1, nullptr);  // no id: added each time
    send(1.0, 1.0, 1, nullptr);
    EXPECT_EQ(minute()["count"], 10) << minute().dump();
    // A part in another unit replaces the minute; the ids it had stay, so a late copy of a part of
    // the old unit is a repeat too, not the minute's newest part (it took the minute back).
    send(38.0, 40.0, 3, "1111111111111111", "degF");
    send(38.0, 40.0, 3, "1111111111111111", "degF");
    EXPECT_EQ(minute()["count"], 3) << minute().dump();
    send(2.0, 6.0, 6, "0f0e0d0c0b0a0908");
    EXPECT_EQ(minute()["count"], 3) << minute().dump();
    EXPECT_EQ(minute()["max"], 40.0) << minute().dump();
    EXPECT_EQ(ingest.counters().refused.load(), 0u);
    for (const json& bad : {json(7), json(""), json("a,b"), json(std::string(33, 'a'))}) {
        send(1.0, 1.0, 1, bad);
        EXPECT_EQ(minute()["count"], 3) << bad.dump();
    }
    EXPECT_EQ(ingest.counters().refused.load(), 4u);
}

// The ids kept are bounded: a gateway restarting in a loop within one minute sends many parts, and
// past the bound they are still added (each one once it is new), not refused.
TEST(MonitorStore, ThePartsOfAMinuteKeepTheirIdsUpToABound) {
    Store store(":memory:");
    const auto add = [&](int i) {
        const json r{{"unit", "degC"},  {"minute", "2026-11-24T08:00:00.000Z"},
                     {"min", 1.0},      {"mean", 1.0},
                     {"max", 1.0},      {"count", 1},
                     {"partial", true}, {"part", fmt::format("{:016x}", i)}};
        ASSERT_TRUE(store.add_rollup("sch-0101", "fridge", r));
    };
    const auto count = [&] {
        return (*store.rollups("sch-0101", "2026-11-24T00:00:00.000Z",
                               "2026-11-25T00:00:00.000Z"))[0]["points"][0]["count"]
            .get<int>();
    };
    for (int i = 0; i < 40; ++i) add(i);
    EXPECT_EQ(count(), 40);
    add(3);  // among the ids kept
    EXPECT_EQ(count(), 40);
    add(39);  // past the bound: counted again
    EXPECT_EQ(count(), 41);
}

TEST(MonitorStore, ADatabaseFromBeforePartIdsGetsTheColumn) {
    TempDir tmp;
    const json r{{"unit", "degC"},  {"minute", "2026-11-24T08:00:00.000Z"},
                 {"min", 1.0},      {"mean", 1.0},
                 {"max", 1.0},      {"count", 1},
                 {"partial", true}, {"part", "00000000000000aa"}};
    { Store store(tmp.path("old.db")); }
    {
        // As a monitor of yesterday left it: no parts column.
        kg::sqlite::Db db(tmp.path("old.db"), {.label = "database"});
        db.exec("ALTER TABLE rollups DROP COLUMN parts");
    }
    Store store(tmp.path("old.db"));
    ASSERT_TRUE(store.add_rollup("sch-0101", "fridge", r));
    ASSERT_TRUE(store.add_rollup("sch-0101", "fridge", r));
    EXPECT_EQ((*store.rollups("sch-0101", "2026-11-24T00:00:00.000Z",
                              "2026-11-25T00:00:00.000Z"))[0]["points"][0]["count"],
              1);
}

// A minute written otherwise (no milliseconds, seconds into it) is the same minute: one row, in the
// room's own form, where it made two rows of one minute.
TEST(MonitorIngest, AMinuteWrittenOtherwiseIsTheSameRow) {
    Store store(":memory:");
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    for (const char* minute :
         {"2026-11-24T08:00:00Z", "2026-11-24T08:00:00.000Z", "2026-11-24T08:00:30.5Z"}) {
        const json j{{"site", "sch-0101"}, {"sensor", "fridge"}, {"unit", "degC"}, {"minute", minute},
                     {"min", 3.0},         {"mean", 3.5},        {"max", 4.0},     {"count", 2}};
        ingest.handle("kitchen/sch-0101/sensors/fridge/rollup", j.dump(), false, kT0);
    }
    const auto kept = store.rollups("sch-0101", "2026-11-24T00:00:00.000Z", "2026-11-25T00:00:00.000Z");
    ASSERT_TRUE(kept);
    ASSERT_EQ(kept->size(), 1u);
    ASSERT_EQ((*kept)[0]["points"].size(), 1u) << kept->dump();
    EXPECT_EQ((*kept)[0]["points"][0]["minute"], "2026-11-24T08:00:00.000Z");
}

// Every state message changes its site. The open dashboards get one update a site per period, with
// the site's row as /api/sites lists it, not one event a message upon which each refetched every site.
TEST(MonitorSiteUpdates, ManyChangesOfASiteMakeOneUpdateWithItsRow) {
    Store store(":memory:");
    std::vector<std::pair<std::string, json>> sent;
    int sends = 0;
    SiteUpdates updates(
        std::chrono::seconds(1), [&](const std::string& site) { return store.site(site); },
        [&](const json& rows) {
            ++sends;
            for (const auto& row : rows) sent.emplace_back(row["site"], row);
        },
        kg::Logging::null_logger());
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [&](const Change& c) {
        if (c.kind == Change::Kind::site) updates.mark(c.site);
    });
    for (int i = 0; i < 50; ++i) {
        for (const auto* site : {"sch-0101", "sch-0102"}) {
            const json state = {{"site", site},   {"sensor", "fridge"}, {"name", "Fridge"},
                                {"unit", "degC"}, {"online", true},     {"value", 3.0 + i * 0.1}};
            ingest.handle(fmt::format("kitchen/{}/sensors/fridge/state", site), state.dump(), false, kT0);
        }
    }
    ASSERT_EQ(updates.flush(), 2u);
    ASSERT_EQ(sent.size(), 2u);
    EXPECT_EQ(sends, 1);  // one frame for both
    EXPECT_EQ(sent[0].first, "sch-0101");
    EXPECT_EQ(sent[1].first, "sch-0102");
    for (const auto& [site, row] : sent) {
        EXPECT_EQ(row["site"], site);
        ASSERT_EQ(row["sensors"].size(), 1u);
        EXPECT_DOUBLE_EQ(row["sensors"][0]["value"].get<double>(), 3.0 + 49 * 0.1);  // the last value
        EXPECT_EQ(row, store.sites()[site == "sch-0101" ? 0 : 1]);                   // what /api/sites lists
    }
    EXPECT_EQ(updates.flush(), 0u);  // nothing changed since
    // A site the store does not have sends nothing.
    updates.mark("sch-0999");
    EXPECT_EQ(updates.flush(), 0u);
    EXPECT_FALSE(store.site("sch-0999"));
    // Hundreds of sites at once go in frames of at most kRowsPerSend rows, not one frame a site
    // (a dashboard's stream queue holds 256 frames).
    sends = 0;
    sent.clear();
    for (int i = 0; i < 250; ++i) {
        const auto site = fmt::format("sch-{:04d}", 1000 + i);
        ingest.handle(fmt::format("kitchen/{}/availability", site), "online", true, kT0);
    }
    EXPECT_EQ(updates.flush(), 250u);
    EXPECT_EQ(sent.size(), 250u);
    EXPECT_EQ(sends, 3);
}

TEST(MonitorSiteUpdates, ARowThatCannotBeReadDoesNotHoldTheOthersBack) {
    std::vector<std::string> sent;
    SiteUpdates updates(
        std::chrono::seconds(1),
        [](const std::string& site) -> std::optional<json> {
            if (site == "sch-0101") throw std::runtime_error("database is locked");
            return json{{"site", site}};
        },
        [&](const json& rows) {
            for (const auto& row : rows) sent.push_back(row["site"]);
        },
        kg::Logging::null_logger());
    for (const auto* site : {"sch-0101", "sch-0102", "sch-0103"}) updates.mark(site);
    EXPECT_EQ(updates.flush(), 2u);
    EXPECT_EQ(sent, (std::vector<std::string>{"sch-0102", "sch-0103"}));
}

// The period is the thread's: started, a mark goes out without anyone calling flush().
TEST(MonitorSiteUpdates, ItsThreadSendsWhatIsMarked) {
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<std::string> sent;
    SiteUpdates updates(
        std::chrono::milliseconds(20),
        [](const std::string& site) {
            return std::optional<json>(json{{"site", site}});
        },
        [&](const json& rows) {
            std::lock_guard lock(mutex);
            for (const auto& row : rows) sent.push_back(row["site"]);
            cv.notify_all();
        },
        kg::Logging::null_logger());
    updates.start();
    updates.mark("sch-0101");
    std::unique_lock lock(mutex);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return !sent.empty(); }));
    lock.unlock();
    updates.stop();
    EXPECT_EQ(sent, std::vector<std::string>{"sch-0101"});
}

// A district's gateways may publish under a prefix of more than one level.
TEST(MonitorIngest, APrefixOfSeveralLevels) {
    Store store(":memory:");
    Ingest ingest(store, "district-7/kitchen", kg::Logging::null_logger(), [](const Change&) {});
    const std::string id = "19ab3c0f2e1-ffffffffffffff07";
    ingest.handle("district-7/kitchen/sch-0101/events", event(id, "start").dump(), false, kT0);
    ingest.handle("district-7/kitchen/sch-0101/availability", "online", false, kT0);
    EXPECT_TRUE(store.alert(id).has_value());
    ingest.handle("district-7/kitchenette/sch-0101/availability", "online", false, kT0);
    ingest.handle("district-7/kitchen", "online", false, kT0);
    ingest.handle("district-7/kitchen/", "online", false, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 3);
    EXPECT_EQ(store.count_alerts(), 1);
}

TEST(MonitorIngest, AHugePayloadIsRefusedBeforeTheStore) {
    // One site must not fill the room's disk: a well-formed event padded to 300 KiB, a "snapshot" of
    // 9 MiB with JPEG magic. A snapshot of a few MiB (a 4K frame) is still taken.
    Store store(":memory:");
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    const std::string id = "19ab3c0f2e1-ffffffffffffff02";
    auto padded = event(id, "start");
    padded["boxes"] = json::array({{{"label", std::string(300 * 1024, 'x')}}});
    ingest.handle("kitchen/sch-0101/events", padded.dump(), false, kT0);
    std::string huge(9 * 1024 * 1024, 'j');
    huge[0] = '\xff';
    huge[1] = '\xd8';
    ingest.handle("kitchen/sch-0101/events/" + id + "/snapshot", huge, false, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 2);
    EXPECT_EQ(store.count_alerts(), 0);
    EXPECT_FALSE(store.snapshot(id));
    // The monitor carries on: the same event at its real size, a 3 MiB picture.
    ingest.handle("kitchen/sch-0101/events", event(id, "start").dump(), false, kT0);
    ingest.handle("kitchen/sch-0101/events/" + id + "/snapshot", huge.substr(0, 3 * 1024 * 1024), false, kT0);
    EXPECT_EQ(store.count_alerts(), 1);
    EXPECT_EQ(store.snapshot(id).value_or("").size(), 3u * 1024 * 1024);
    EXPECT_EQ(ingest.counters().refused.load(), 2);
}

TEST(MonitorIngest, JsonNestedTooDeeplyIsRefusedBeforeItCanCrashTheRoom) {
    // 100 000 brackets fit in the size limit. nlohmann parses them, but writing them out again
    // recursed once per level and overflowed the stack: a retained camera state, handed back at
    // every connect, crashed the monitor each time it restarted.
    Store store(":memory:");
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    ingest.handle("kitchen/sch-0101/cameras/c1/state",
                  R"({"site":"sch-0101","camera":"c1","online":true,"x":)" + deep + "}", true, kT0);
    auto seq = event("19ab3c0f2e1-ffffffffffffff03", "start");
    seq["stream"] = "0123456789abcdef";
    ingest.handle("kitchen/sch-0101/events", seq.dump().insert(1, R"("seq":)" + deep + ","), false, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 2u);
    EXPECT_NO_THROW(store.sites());
    // Brackets inside texts are not nesting: a label of them is an ordinary event.
    auto brackets = event("19ab3c0f2e1-ffffffffffffff04", "start");
    brackets["note"] = std::string(1000, '[') + "\\\"{";
    ingest.handle("kitchen/sch-0101/events", brackets.dump(), false, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 2u);
    EXPECT_EQ(store.count_alerts(), 1);
    EXPECT_TRUE(kg::json_nested_deeper_than(R"({"a":[[1]]})", 2));
    EXPECT_FALSE(kg::json_nested_deeper_than(R"({"a":[[1]]})", 3));
    EXPECT_FALSE(kg::json_nested_deeper_than(R"({"a":"[[[\"[["})", 1));
}

// A rule that can never fire is silent by its nature: the site's gateway names it in its gateway
// message, and the room lists it with the site, read by type and bounded (one site cannot fill the
// list of every operator's dashboard).
TEST(MonitorStore, ASitesConfigurationWarningsAreListedWithItBoundedAndByType) {
    Store store(":memory:");
    json warnings = json::array(
        {"sensor 'fridge': threshold 'warm' (above 60) lies outside its valid_range", 42, nullptr, ""});
    for (int i = 0; i < 400; ++i) warnings[3] = warnings[3].get<std::string>() + "\u6e29";  // 3 bytes each
    warnings.push_back("");  // nothing to show: left out
    for (int i = 0; i < 30; ++i) warnings.push_back("doubt " + std::to_string(i));
    store.set_gateway_info("sch-0101",
                           json{{"site", "sch-0101"}, {"version", "0.1.0"}, {"config_warnings", warnings}},
                           kT0, std::nullopt);
    store.set_gateway_info("sch-0102",
                           json{{"site", "sch-0102"}, {"version", "0.1.0"}, {"config_warnings", "x"}}, kT0,
                           std::nullopt);
    store.set_gateway_info("sch-0103", json{{"site", "sch-0103"}, {"version", "0.0.9"}}, kT0, std::nullopt);
    const auto sites = store.sites();
    ASSERT_EQ(sites.size(), 3u);
    const auto& listed = sites[0]["config_warnings"];
    ASSERT_EQ(listed.size(), Store::kMaxConfigWarnings + 1) << listed;
    EXPECT_EQ(listed[0], warnings[0]);
    const auto long_one = listed[1].get<std::string>();  // the number and the null are left out
    EXPECT_LE(long_one.size(), Store::kMaxConfigWarningBytes);
    EXPECT_TRUE(long_one.starts_with("\u6e29") && long_one.ends_with("...")) << long_one;
    EXPECT_FALSE(kg::invalid_utf8_at(long_one)) << "cut inside a character";
    EXPECT_EQ(listed[2], "doubt 0");
    EXPECT_EQ(listed[15], "doubt 13");
    EXPECT_EQ(listed[16], "... and 16 more (see the site's log)");  // not dropped unsaid
    EXPECT_EQ(sites[1]["config_warnings"], json::array());          // not a list: nothing
    EXPECT_EQ(sites[2]["config_warnings"], json::array());          // a gateway before the field
}

TEST(MonitorIngest, FieldsOfTheWrongTypeAreRefusedAndWhatIsStoredIsReadByType) {
    // nlohmann's value() throws when the key is there with another type: one site's gateway message
    // with a number for `version` made every GET /api/sites answer 500, and one event with a text
    // for `score` its alert's history.
    Store store(":memory:");
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    ingest.handle("kitchen/sch-0101/gateway", R"({"site":"sch-0101","version":2,"started_at":null})", true,
                  kT0);
    auto text_score = event("19ab3c0f2e1-ffffffffffffff05", "start");
    text_score["score"] = "high";
    ingest.handle("kitchen/sch-0101/events", text_score.dump(), false, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 2u);
    EXPECT_EQ(store.count_alerts(), 0);
    // Stored before these checks (an earlier version of the monitor): read as missing.
    store.set_gateway_info("sch-0101", json{{"site", "sch-0101"}, {"version", 2}, {"started_at", nullptr}},
                           kT0, std::nullopt);
    auto sites = store.sites();
    ASSERT_EQ(sites.size(), 1u);
    EXPECT_EQ(sites[0]["version"], "");
    std::string error;
    text_score["score"] = 0.75;
    auto m = parse_event("sch-0101", text_score.dump(), error);
    ASSERT_TRUE(m) << error;
    m->raw = text_score.dump().replace(text_score.dump().find("0.75"), 4, "null");
    store.add_event(*m, kT0);
    const auto history = store.alert_history("19ab3c0f2e1-ffffffffffffff05");
    ASSERT_EQ(history.size(), 1u);
    EXPECT_EQ(history[0]["score"], 0.0);
}

// A gateway message listing a camera as a text ("cameras": ["cam1"]) was stored, and every state of
// that site's cameras then failed in the database ("malformed JSON": the store reads each entry's
// id) until a good gateway message came (a review). It is refused, naming the entry; one stored by
// an earlier version no longer breaks the states.
TEST(MonitorIngest, AGatewayMessageWhoseListsAreNotOfObjectsWithIdsIsRefused) {
    Store store(":memory:");
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    const auto gateway = [](json cameras) {
        return json{{"site", "s1"}, {"version", "1.0"}, {"cameras", std::move(cameras)}}.dump();
    };
    const auto state = json{{"site", "s1"}, {"camera", "cam1"}, {"online", true}}.dump();
    ingest.handle("kitchen/s1/gateway", gateway(json{{{"id", "cam1"}}}), true, kT0);
    ASSERT_EQ(ingest.counters().refused.load(), 0u);
    for (const auto& bad :
         {json::array({"cam1"}), json::array({json{{"id", "cam1"}}, json{{"name", "x"}}}),
          json::array({json{{"id", 7}}}), json::array({json{{"id", "a b"}}}), json("cam1")}) {
        SCOPED_TRACE(bad.dump());
        const auto before = ingest.counters().refused.load();
        ingest.handle("kitchen/s1/gateway", gateway(bad), true, kT0);
        EXPECT_EQ(ingest.counters().refused.load(), before + 1);
        ingest.handle("kitchen/s1/cameras/cam1/state", state, true, kT0);
        EXPECT_EQ(ingest.counters().refused.load(), before + 1) << "the camera's state after it";
    }
    // Stored by an earlier version: the states are told the camera is not listed, not a database error.
    store.set_gateway_info("s1", json::parse(gateway(json::array({"cam1"}))), kT0, std::nullopt);
    EXPECT_NO_THROW(
        EXPECT_EQ(store.set_camera_state("s1", "cam1", json::parse(state)), Store::SourceStored::not_listed));
    EXPECT_NO_THROW(store.set_gateway_info(
        "s1", json::parse(gateway(json::array({"cam2", json{{"id", "cam1"}}}))), kT0, std::nullopt));
}

// Any live message made its site, refused or not: a garbage payload on kitchen/ghost-1/events left
// "ghost-1" in the room's list for good (a review). A refused message still beats for a site the
// room knows: its gateway is there, if broken.
TEST(MonitorIngest, ARefusedMessageMakesNoSiteButBeatsForAKnownOne) {
    Store store(":memory:");
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    ingest.handle("kitchen/ghost-1/events", "garbage", false, kT0);
    ingest.handle("kitchen/ghost-2/cameras/c1/state", "{}", false, kT0);
    // A refused event is tracked as delivered (asked again, it would come the same), but not for a
    // site the room does not know: that made the site (the review of this test's fix).
    ingest.handle("kitchen/ghost-3/events", R"({"stream":"0123456789abcdef","seq":1})", false, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 3u);
    EXPECT_TRUE(store.sites().empty()) << store.sites().dump();
    ingest.handle("kitchen/s1/availability", "online", false, kT0);
    ingest.handle("kitchen/s1/events", "garbage", false, kT0 + std::chrono::minutes(10));
    EXPECT_EQ(ingest.counters().refused.load(), 4u);
    const auto sites = store.sites();
    ASSERT_EQ(sites.size(), 1u);
    EXPECT_EQ(sites[0]["site"], "s1");
    EXPECT_EQ(sites[0]["last_seen"], kg::iso8601_utc(kT0 + std::chrono::minutes(10)));
    // The broker's `offline` for a gateway that is gone (its last will) is not the gateway's word.
    ingest.handle("kitchen/s1/availability", "offline", false, kT0 + std::chrono::minutes(12));
    EXPECT_EQ(store.sites()[0]["last_seen"], kg::iso8601_utc(kT0 + std::chrono::minutes(10)));
    EXPECT_EQ(store.sites()[0]["availability"], "offline");
}

// The times a site sends are read strictly: sscanf took "-1" for an hour and 31 February as 3
// March (both stored), and a year past 2262 wrapped round a nanosecond clock (a roll-up of
// 2300-01-01 was stored as 1715-06-13, and an API range of 2300 answered from 1715): a review.
TEST(IsoTime, ReadsOnlyRealTimesOfYearsTheClockHolds) {
    using kg::parse_iso8601_utc;
    EXPECT_EQ(parse_iso8601_utc("2026-11-24T06:00:00.000Z"), kT0);
    EXPECT_EQ(parse_iso8601_utc("2026-11-24T06:00:00Z"), kT0);
    EXPECT_EQ(parse_iso8601_utc("2026-11-24T06:00:00.5z"), kT0 + std::chrono::milliseconds(500));
    EXPECT_EQ(kg::iso8601_utc(*parse_iso8601_utc("2028-02-29T23:59:60Z")), "2028-03-01T00:00:00.000Z");
    EXPECT_EQ(kg::iso8601_utc(*parse_iso8601_utc("1970-01-01T00:00:00Z")), "1970-01-01T00:00:00.000Z");
    EXPECT_TRUE(parse_iso8601_utc("2200-12-31T23:59:59Z"));
    for (const char* bad :
         {"2026-12-05T-1:-1:-1Z", "2026-02-31T06:00:00Z", "2027-02-29T06:00:00Z", "2300-01-01T00:00:00Z",
          "1677-01-01T00:00:00Z", "+026-11-24T06:00:00Z", " 2026-11-24T06:00:00Z", "2026-11-24T06:00:00.Z",
          "2026-11-24T06:00:00", "2026-11-24 06:00:00Z", "2026-1-24T06:00:00Z", "2026-11-24T24:00:00Z",
          "2026-11-24T06:00:00+08:00", "", "2026-11-24T06:00:0Z"})
        EXPECT_FALSE(parse_iso8601_utc(bad)) << bad;
}

// A refusal says what is wrong and where: every payload that did not parse was "not a JSON object",
// whatever it was (invalid UTF-8, garbage after the object, a number too large). And it is one
// line: a reason quoting a payload's value with a line feed in it wrote a line of the sender's own
// into the room's log (a review).
TEST(MonitorIngest, ARefusalSaysWhyInOneLine) {
    std::ostringstream text;
    auto log =
        std::make_shared<spdlog::logger>("ingest", std::make_shared<spdlog::sinks::ostream_sink_mt>(text));
    Store store(":memory:");
    Ingest ingest(store, "kitchen", log, [](const Change&) {});
    ingest.handle("kitchen/s1/events", R"({"a": tru})", false, kT0);
    ingest.handle("kitchen/s1/cameras/c1/state", "[1]", false, kT0);
    ingest.handle("kitchen/s1/cameras/c1/state", R"({"x": 1e400})", false, kT0);
    ingest.handle("kitchen/s1/cameras/c1/state", "{\"site\": \"x\\nerror [ingest] FORGED\"}", false, kT0);
    ingest.handle("kitchen/s1/events", "{\"id\": \"x\\nerror [ingest] FORGED\"}", false, kT0);
    log->flush();
    const auto lines = text.str();
    EXPECT_NE(lines.find("kitchen/s1/events: not JSON: parse error at line 1, column 10: syntax error while "
                         "parsing value - invalid literal; last read: '\"a\": tru}'"),
              std::string::npos)
        << lines;
    EXPECT_NE(lines.find("kitchen/s1/cameras/c1/state: not a JSON object but array"), std::string::npos)
        << lines;
    EXPECT_NE(lines.find("not JSON: number overflow parsing '1e400'"), std::string::npos) << lines;
    EXPECT_EQ(lines.find("\nerror [ingest] FORGED"), std::string::npos) << lines;
    EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 5) << lines;
}

// A broken gateway's refused messages are logged a few a minute for its site, and all counted:
// 20 000 garbage payloads were 20 000 warning lines in 2 s, and the journal's rate limit then
// drops the room's own lines, the warnings of lost numbers among them (the input review).
TEST(MonitorIngest, OneSendersRefusalsAreLoggedAFewAMinuteAndAllCounted) {
    std::ostringstream text;
    auto log =
        std::make_shared<spdlog::logger>("ingest", std::make_shared<spdlog::sinks::ostream_sink_mt>(text));
    Store store(":memory:");
    Ingest ingest(store, "kitchen", log, [](const Change&) {});
    ingest.handle("kitchen/s1/availability", "online", false, kT0);
    ingest.handle("kitchen/s2/availability", "online", false, kT0);
    for (int i = 0; i < 500; ++i) ingest.handle("kitchen/s1/events", "garbage", false, kT0);
    // Senders that are no site the room knows are one sender: one naming a new site with every
    // message neither grows the throttle nor holds a known site's lines back.
    for (int i = 0; i < 50; ++i) ingest.handle("elsewhere/" + std::to_string(i), "garbage", false, kT0);
    for (int i = 0; i < 1000; ++i)
        ingest.handle("kitchen/g" + std::to_string(i) + "/events", "x", false, kT0);
    ingest.handle("kitchen/s2/events", "garbage", false, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 1551u);
    log->flush();
    const auto lines = text.str();
    const auto count = [&](const std::string& what) {
        std::size_t n = 0;
        for (auto at = lines.find(what); at != std::string::npos; at = lines.find(what, at + 1)) ++n;
        return n;
    };
    EXPECT_EQ(count("on kitchen/s1/"), Ingest::kWarningsPerMinute) << lines;
    EXPECT_EQ(count("on kitchen/s2/"), 1u) << lines;
    EXPECT_EQ(count("refused message on"), 2 * Ingest::kWarningsPerMinute + 1) << lines;
}

TEST(MonitorIngest, OneSiteCannotGrowTheRoomsTablesWithoutEnd) {
    // Each message was bounded, the total was not: a site naming a new camera in every state, or
    // sending pictures of events that never come (8 MiB each, kept 180 days), grew the room's
    // memory (every GET /api/sites carries every state) and its disk without end.
    Store store(":memory:");
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    auto state = [](const std::string& camera) {
        return json{{"site", "sch-0101"}, {"camera", camera}, {"online", true}}.dump();
    };
    for (int i = 0; i < Store::kMaxSourcesPerSite + 20; ++i)
        ingest.handle("kitchen/sch-0101/cameras/c" + std::to_string(i) + "/state",
                      state("c" + std::to_string(i)), true, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 20u);
    ingest.handle("kitchen/sch-0101/cameras/c0/state", state("c0"), true, kT0);  // a known one: taken
    auto big = json::parse(state("c1"));
    big["detail"] = std::string(20 * 1024, 'x');
    ingest.handle("kitchen/sch-0101/cameras/c1/state", big.dump(), true, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 21u);
    ASSERT_EQ(store.sites().size(), 1u);
    EXPECT_EQ(store.sites()[0]["cameras"].size(), static_cast<std::size_t>(Store::kMaxSourcesPerSite));
    ingest.handle("kitchen/sch-0202/cameras/c0/state",
                  json{{"site", "sch-0202"}, {"camera", "c0"}, {"online", true}}.dump(), true, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 21u);  // another site has its own

    // Pictures of alerts that have not come: the newest kMaxOrphanSnapshots are kept; a picture of
    // an alert that did come is not counted among them.
    const std::string jpeg("\xff\xd8\xff\xe0picture", 11);
    const std::string alert = "19ab3c0f2e1-ffffffffffffff06";
    ingest.handle("kitchen/sch-0101/events", event(alert, "start").dump(), false, kT0);
    ingest.handle("kitchen/sch-0101/events/" + alert + "/snapshot", jpeg, false, kT0);
    for (int i = 0; i < Store::kMaxOrphanSnapshots + 10; ++i) {
        ingest.handle(fmt::format("kitchen/sch-0101/events/19ab3c0f2e1-{:016x}/snapshot", i + 1), jpeg, false,
                      kT0 + std::chrono::seconds(i));
    }
    EXPECT_TRUE(store.snapshot(alert));
    EXPECT_FALSE(store.snapshot(fmt::format("19ab3c0f2e1-{:016x}", 1)));  // the oldest went
    EXPECT_TRUE(store.snapshot(fmt::format("19ab3c0f2e1-{:016x}", 11)));  // the newest 100 stay
    EXPECT_TRUE(store.snapshot(fmt::format("19ab3c0f2e1-{:016x}", 110)));
}

TEST(MonitorStore, ASiteSeenBeforeTheRoomsClockWasSteppedBackIsSeenAgainAtTheNewTime) {
    // last_seen only rose: after the room's clock ran two hours ahead and was set right, a site
    // that then went silent showed as seen "in the future", online, for those two hours.
    Store store(":memory:");
    store.site_seen("sch-0101", kT0 + std::chrono::hours(2));
    store.site_seen("sch-0101", kT0);
    EXPECT_EQ(store.sites()[0]["last_seen"], kg::iso8601_utc(kT0));
    // Out of order by seconds (two instances on one database): the later time stays.
    store.site_seen("sch-0101", kT0 + std::chrono::seconds(30));
    store.site_seen("sch-0101", kT0 + std::chrono::seconds(10));
    EXPECT_EQ(store.sites()[0]["last_seen"], kg::iso8601_utc(kT0 + std::chrono::seconds(30)));
}

// Every live message is a site's heartbeat, and each write of it was a commit (an fsync at
// synchronous=FULL) for the alerts behind it to wait for: at city scale, several a second a site.
TEST(MonitorStore, ASitesHeartbeatIsWrittenOncePerResolutionNotForEveryMessage) {
    using std::chrono::milliseconds, std::chrono::seconds;
    TempDir tmp;
    Store store(tmp.path("monitor.db"));
    store.set_seen_resolution(seconds(5));
    kg::sqlite::Db probe(tmp.path("monitor.db"), {.label = "probe"});
    const auto written = [&] {
        kg::sqlite::Stmt s(probe, "SELECT last_seen FROM sites WHERE site = 'sch-0101'");
        return s.step() ? s.text(0) : std::string();
    };
    store.site_seen("sch-0101", kT0);
    EXPECT_EQ(written(), kg::iso8601_utc(kT0));
    for (int i = 1; i < 50; ++i)
        store.site_seen("sch-0101", kT0 + milliseconds(100 * i));  // 4.9 s of chatter
    EXPECT_EQ(written(), kg::iso8601_utc(kT0));
    store.site_seen("sch-0101", kT0 + seconds(5));
    EXPECT_EQ(written(), kg::iso8601_utc(kT0 + seconds(5)));
    // Another site has its own.
    store.site_seen("sch-0202", kT0 + seconds(6));
    EXPECT_EQ(store.sites().size(), 2u);
    // The room's clock stepped back: written at once.
    store.site_seen("sch-0101", kT0 - std::chrono::hours(1));
    EXPECT_EQ(written(), kg::iso8601_utc(kT0 - std::chrono::hours(1)));
}

TEST(MonitorIngest, MessageSequence) {
    EXPECT_EQ(message_sequence("abcdefgh", "abcdefgh:start", "start"), 0);
    EXPECT_EQ(message_sequence("abcdefgh", "abcdefgh:update-7", "update"), 7);
    EXPECT_GT(*message_sequence("abcdefgh", "abcdefgh:end", "end"), 1000000);
    EXPECT_FALSE(message_sequence("abcdefgh", "abcdefgh:update-7", "start"));
    EXPECT_FALSE(message_sequence("abcdefgh", "abcdefgX:start", "start"));
    EXPECT_FALSE(message_sequence("abcdefgh", "abcdefgh:update-0", "update"));
}

TEST(MonitorMqtt, SharedSubscriptionsOnlyForTheEventStreams) {
    MqttSettings m;
    m.share_group = "room";
    const auto f = subscription_filters(m);
    EXPECT_NE(std::find(f.begin(), f.end(), "$share/room/kitchen/+/events/#"), f.end());
    EXPECT_NE(std::find(f.begin(), f.end(), "$share/room/kitchen/+/sensors/+/rollup"), f.end());
    // Answers to replay requests: one instance of the group takes each.
    EXPECT_NE(std::find(f.begin(), f.end(), "$share/room/kitchen/+/lost"), f.end());
    // Retained state is never sent to shared subscriptions: every instance reads it.
    EXPECT_NE(std::find(f.begin(), f.end(), "kitchen/+/availability"), f.end());
    m.share_group.clear();
    EXPECT_EQ(subscription_filters(m).at(4), "kitchen/+/events/#");
}

TEST(MonitorMqtt, StatesAreReadAtQos0AndEverythingElseAtQos1) {
    MqttSettings m;
    m.share_group = "room";
    std::vector<std::string> qos0;
    for (const auto& f : subscription_filters(m)) {
        if (subscription_qos(f) == 0)
            qos0.push_back(f);
        else
            EXPECT_EQ(subscription_qos(f), 1) << f;
    }
    EXPECT_EQ(qos0, (std::vector<std::string>{"kitchen/+/cameras/+/state", "kitchen/+/sensors/+/state"}));
}

TEST(MonitorAuth, PasswordsTokensAndSessions) {
    Auth auth({{"wang", "correct-horse", ""}, {"bot", "", "0123456789abcdef0123"}}, std::chrono::hours(1));
    Request req;
    EXPECT_FALSE(auth.identify(req, kT0));
    req.set(http::field::authorization, "Basic d2FuZzpjb3JyZWN0LWhvcnNl");  // wang:correct-horse
    EXPECT_EQ(auth.identify(req, kT0).value_or(""), "wang");
    req.set(http::field::authorization, "Basic d2FuZzp3cm9uZw==");  // wang:wrong
    EXPECT_FALSE(auth.identify(req, kT0));
    req.set(http::field::authorization, "Bearer 0123456789abcdef0123");
    EXPECT_EQ(auth.identify(req, kT0).value_or(""), "bot");
    EXPECT_FALSE(auth.login("bot", "", kT0));  // a token-only operator has no password
    const auto token = auth.login("wang", "correct-horse", kT0);
    ASSERT_TRUE(token);
    Request browser;
    browser.set(http::field::cookie, std::string("a=b; ") + kSessionCookie + "=" + *token);
    EXPECT_EQ(auth.identify(browser, kT0).value_or(""), "wang");
    EXPECT_FALSE(auth.identify(browser, kT0 + std::chrono::hours(2)));  // expired
}

// Sign-in guesses were not held up: a script could try passwords as fast as the room answered. After
// five wrong ones for an operator from an address, each further one waits, doubling to a minute;
// other addresses, other operators, bearer tokens and sessions are not held up, and a right password
// clears the count of its own name only.
TEST(MonitorAuth, WrongPasswordsFromAnAddressAreHeldUp) {
    using std::chrono::seconds;
    Auth auth(
        {{"wang", "correct-horse", ""}, {"li", "battery-staple", ""}, {"bot", "", "0123456789abcdef0123"}},
        std::chrono::hours(1));
    kg::SteadyPoint steady{};
    auth.set_steady_clock([&] { return steady; });
    const std::string guesser = "203.0.113.9", colleague = "10.0.0.7";
    Request wrong_basic;
    wrong_basic.set(http::field::authorization, "Basic d2FuZzp3cm9uZw==");  // wang:wrong
    for (int i = 0; i < Auth::kFreeGuesses; ++i) {
        EXPECT_EQ(auth.retry_after(guesser, "wang"), kg::Duration::zero()) << i;
        // Sign-in and HTTP Basic count alike.
        if (i % 2) {
            EXPECT_FALSE(auth.identify(wrong_basic, kT0, guesser));
        } else {
            EXPECT_FALSE(auth.login("wang", fmt::format("guess-{}", i), kT0, guesser));
        }
    }
    EXPECT_EQ(auth.retry_after(guesser, "wang"), seconds(1));
    // Meanwhile even the right password for that name is not checked from there; from elsewhere, or
    // for another name, it is, and that does not clear the guesses at wang.
    EXPECT_FALSE(auth.login("wang", "correct-horse", kT0, guesser));
    EXPECT_TRUE(auth.login("wang", "correct-horse", kT0, colleague));
    EXPECT_TRUE(auth.login("li", "battery-staple", kT0, guesser));
    EXPECT_EQ(auth.retry_after(guesser, "wang"), seconds(1));
    Request basic;
    basic.set(http::field::authorization, "Basic d2FuZzpjb3JyZWN0LWhvcnNl");  // wang:correct-horse
    EXPECT_FALSE(auth.identify(basic, kT0, guesser));
    Request bearer;
    bearer.set(http::field::authorization, "Bearer 0123456789abcdef0123");
    EXPECT_EQ(auth.identify(bearer, kT0, guesser).value_or(""), "bot");
    // Each wrong one after the wait doubles it, up to a minute.
    std::vector<long> waits;
    for (int i = 0; i < 8; ++i) {
        steady += auth.retry_after(guesser, "wang");
        EXPECT_FALSE(auth.login("wang", "still-wrong", kT0, guesser));
        waits.push_back(std::chrono::duration_cast<seconds>(auth.retry_after(guesser, "wang")).count());
    }
    EXPECT_EQ(waits, (std::vector<long>{2, 4, 8, 16, 32, 60, 60, 60}));
    // A right password after the wait signs in and clears the count.
    steady += auth.retry_after(guesser, "wang");
    EXPECT_TRUE(auth.login("wang", "correct-horse", kT0, guesser));
    EXPECT_EQ(auth.retry_after(guesser, "wang"), kg::Duration::zero());
    // Wrong ones further apart than the window do not add up.
    for (int i = 0; i < 10; ++i) {
        steady += Auth::kGuessWindow + seconds(1);
        EXPECT_FALSE(auth.login("li", "typo", kT0, colleague));
    }
    EXPECT_EQ(auth.retry_after(colleague, "li"), kg::Duration::zero());
}

// A host picks any address of its IPv6 /64: its guesses add up, another network's do not.
// Guesses at names no operator has share one count per address: keyed by the name sent, 4 100
// made-up names in under a second evicted the guesser's own count at a real name (five free
// guesses again, about 7 a second instead of one a minute), and names of 60 KB grew the room by
// 240 MB without a sign-in (the 53rd session's review).
TEST(MonitorAuth, MadeUpNamesNeitherClearAGuessersCountNorGrowTheRoom) {
    Auth auth(std::vector<Operator>{{"wang", "correct-horse", ""}, {"li", "battery-staple", ""}},
              std::chrono::hours(1));
    kg::SteadyPoint steady{};
    auth.set_steady_clock([&] { return steady; });
    const std::string guesser = "203.0.113.9";
    for (int i = 0; i < Auth::kFreeGuesses; ++i) EXPECT_FALSE(auth.login("li", "wrong", kT0, guesser));
    EXPECT_GT(auth.retry_after(guesser, "li"), kg::Duration::zero());
    const std::string long_name(60000, 'x');
    for (int i = 0; i < 5000; ++i) {
        steady += std::chrono::milliseconds(1);
        EXPECT_FALSE(auth.login(long_name + std::to_string(i), "wrong", kT0, guesser));
    }
    // The count at li went on: its next wrong one waits 2 s, as a sixth does (a first would not).
    EXPECT_FALSE(auth.login("li", "wrong", kT0, guesser));
    EXPECT_EQ(auth.retry_after(guesser, "li"), std::chrono::seconds(2));
    // Made-up names are held up together after their own free guesses; a real name is not.
    EXPECT_GT(auth.retry_after(guesser, "anyone-else"), kg::Duration::zero());
    EXPECT_EQ(auth.retry_after(guesser, "wang"), kg::Duration::zero());
    EXPECT_TRUE(auth.login("wang", "correct-horse", kT0, guesser));
    // Thousands of addresses fill the table: those under their free guesses go first, a count in
    // force stays.
    for (int i = 0; i < 5000; ++i) {
        steady += std::chrono::milliseconds(1);  // each newer than li's count: the oldest is li's
        EXPECT_FALSE(auth.login("wang", "wrong", kT0, fmt::format("10.{}.{}.1", i / 250, i % 250)));
    }
    // li's count went on: the next wrong one is the seventh, and waits 4 s (a first would not).
    EXPECT_FALSE(auth.login("li", "wrong", kT0, guesser));
    EXPECT_EQ(auth.retry_after(guesser, "li"), std::chrono::seconds(4));
}

TEST(MonitorAuth, WrongPasswordsFromOneIPv6NetworkAddUp) {
    Auth auth({{"wang", "correct-horse", ""}}, std::chrono::hours(1));
    kg::SteadyPoint steady{};
    auth.set_steady_clock([&] { return steady; });
    for (int i = 0; i < Auth::kFreeGuesses; ++i)
        EXPECT_FALSE(auth.login("wang", "wrong", kT0, fmt::format("2001:db8:1:2::{:x}", i + 1)));
    EXPECT_EQ(auth.retry_after("2001:db8:1:2:aaaa::1", "wang"), std::chrono::seconds(1));
    EXPECT_EQ(auth.retry_after("2001:db8:1:3::1", "wang"), kg::Duration::zero());
    EXPECT_TRUE(auth.login("wang", "correct-horse", kT0, "2001:db8:1:3::1"));
}

TEST(MonitorApi, ASignInHeldUpIsA429WithRetryAfter) {
    Store store{":memory:"};
    MonitorConfig cfg;
    Auth auth{{{"wang", "correct-horse", ""}}, std::chrono::hours(1)};
    WebHandler handler = make_api(test_context(store, auth, cfg), kg::Logging::null_logger());
    const auto login = [&](const std::string& password) {
        Request req{http::verb::post, "/api/login", 11};
        req.set(http::field::content_type, "application/json");
        req.body() = json{{"operator", "wang"}, {"password", password}}.dump();
        req.prepare_payload();
        return handler(req, {"203.0.113.9"}).response;
    };
    for (int i = 0; i < Auth::kFreeGuesses; ++i) EXPECT_EQ(login("wrong").result_int(), 401u);
    const auto held = login("correct-horse");
    EXPECT_EQ(held.result_int(), 429u);
    EXPECT_EQ(held[http::field::retry_after], "1");
    EXPECT_NE(
        held.body().find("too many wrong passwords for this operator from this address: try again in 1 s"),
        std::string::npos)
        << held.body();
}

// Failed sign-ins are logged a few a minute per address, and all counted: 2 000 anonymous tries
// were 2 000 warning lines in 0.2 s, and the journal's rate limit (10 000 lines per 30 s) then
// drops the room's own lines (the input review of the 52nd session).
TEST(MonitorApi, FailedSignInsAreLoggedAFewAMinutePerAddressAndAllCounted) {
    std::ostringstream text;
    auto log =
        std::make_shared<spdlog::logger>("api", std::make_shared<spdlog::sinks::ostream_sink_mt>(text));
    Store store{":memory:"};
    MonitorConfig cfg;
    Auth auth{{{"wang", "correct-horse", ""}}, std::chrono::hours(1)};
    WebHandler handler = make_api(test_context(store, auth, cfg), log);
    const auto login = [&](const std::string& client) {
        Request req{http::verb::post, "/api/login", 11};
        req.set(http::field::content_type, "application/json");
        req.body() = json{{"operator", "wang"}, {"password", "wrong"}}.dump();
        req.prepare_payload();
        return handler(req, {client}).response.result_int();
    };
    for (int i = 0; i < 200; ++i) login("203.0.113.9");
    EXPECT_EQ(login("198.51.100.7"), 401u);  // another address: its own line
    // HTTP Basic with a wrong password: counted and logged as a sign-in (unsaid before, though it
    // holds up the operator's sign-in).
    Request basic{http::verb::get, "/api/me", 11};
    basic.set(http::field::authorization, "Basic d2FuZzp3cm9uZw==");  // wang:wrong
    EXPECT_EQ(handler(basic, {"192.0.2.1"}).response.result_int(), 401u);
    log->flush();
    const auto lines = text.str();
    const auto count = [&](const std::string& what) {
        std::size_t n = 0;
        for (auto at = lines.find(what); at != std::string::npos; at = lines.find(what, at + 1)) ++n;
        return n;
    };
    EXPECT_EQ(count("from 203.0.113.9"), 5u) << lines;
    EXPECT_EQ(count("from 198.51.100.7"), 1u) << lines;
    EXPECT_EQ(count("failed HTTP Basic sign-in as 'wang' from 192.0.2.1"), 1u) << lines;
    const auto metrics = handler(Request{http::verb::get, "/metrics", 11}, {"127.0.0.1"}).response.body();
    EXPECT_NE(metrics.find(fmt::format("kgm_sign_ins_failed_total{{reason=\"wrong_password\"}} {}\n",
                                       Auth::kFreeGuesses + 2)),
              std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find(fmt::format("kgm_sign_ins_failed_total{{reason=\"throttled\"}} {}\n",
                                       200 - Auth::kFreeGuesses)),
              std::string::npos)
        << metrics;
}

// Behind a proxy that terminates TLS, the session cookie is Secure: the browser never sends it
// over plain HTTP. Straight to the monitor (plain HTTP) it cannot be, or the browser would drop it.
// Whether the request came over https is the server's reading (the next test, with a real one).
TEST(MonitorApi, TheSessionCookieIsSecureBehindAnHttpsProxy) {
    Store store{":memory:"};
    MonitorConfig cfg;
    Auth auth{{{"wang", "correct-horse", ""}}, std::chrono::hours(1)};
    WebHandler handler = make_api(test_context(store, auth, cfg), kg::Logging::null_logger());
    const auto cookie = [&](bool https) {
        Request req{http::verb::post, "/api/login", 11};
        req.set(http::field::content_type, "application/json");
        req.body() = json{{"operator", "wang"}, {"password", "correct-horse"}}.dump();
        req.prepare_payload();
        const auto res = handler(req, {"203.0.113.9", https}).response;
        EXPECT_EQ(res.result_int(), 200u);
        return std::string(res[http::field::set_cookie]);
    };
    const auto plain = cookie(false);
    EXPECT_NE(plain.find("HttpOnly; SameSite=Strict"), std::string::npos) << plain;
    EXPECT_EQ(plain.find("Secure"), std::string::npos) << plain;
    const auto secure = cookie(true);
    EXPECT_NE(secure.find("; Secure"), std::string::npos) << secure;
    EXPECT_NE(secure.find("Max-Age=3600"), std::string::npos) << secure;
    // Signing out clears it with the same attributes, or the browser would keep the Secure one.
    const auto token = secure.substr(0, secure.find(';'));
    Request out{http::verb::post, "/api/logout", 11};
    out.set(http::field::cookie, token);
    out.set(http::field::content_type, "application/json");
    out.prepare_payload();
    const auto res = handler(out, {"203.0.113.9", true}).response;
    EXPECT_EQ(res.result_int(), 200u);
    EXPECT_NE(std::string(res[http::field::set_cookie])
                  .find("Max-Age=0; Path=/; HttpOnly; SameSite=Strict; Secure"),
              std::string::npos)
        << res[http::field::set_cookie];
}

namespace {

// The room's API for operator wang (password correct-horse) served by a real WebServer on a
// thread of its own, for the tests that speak HTTP to it.
struct ServedApi {
    explicit ServedApi(WebLimits limits = {})
        : handler(make_api(test_context(store, auth, cfg), kg::Logging::null_logger())),
          server(io, "127.0.0.1:0", std::move(limits), handler, hub, kg::Logging::null_logger()) {
        server.start();
        runner = std::thread([this] { io.run(); });
    }
    ~ServedApi() {
        boost::asio::post(io, [this] { server.stop(); });
        io.stop();
        runner.join();
    }
    unsigned short port() const { return server.port(); }

    Store store{":memory:"};
    MonitorConfig cfg;
    Auth auth{{{"wang", "correct-horse", ""}}, std::chrono::hours(1)};
    WebHandler handler;
    std::shared_ptr<EventHub> hub = std::make_shared<EventHub>();
    boost::asio::io_context io;
    WebServer server;
    std::thread runner;
};

}  // namespace

namespace {

// The session cookie a real WebServer on `port` sets for a sign-in sent from `from` (an address of
// this host) with these X-Forwarded-Proto fields.
std::string session_cookie(unsigned short port, const std::string& from,
                           const std::vector<std::string>& protos) {
    namespace net = boost::asio;
    net::io_context io;
    net::ip::tcp::socket socket(io);
    socket.open(net::ip::tcp::v4());
    socket.bind({net::ip::make_address(from), 0});
    socket.connect({net::ip::make_address("127.0.0.1"), port});
    Request req{http::verb::post, "/api/login", 11};
    req.set(http::field::host, "room");
    req.set(http::field::content_type, "application/json");
    for (const auto& proto : protos) req.insert("X-Forwarded-Proto", proto);
    req.body() = json{{"operator", "wang"}, {"password", "correct-horse"}}.dump();
    req.prepare_payload();
    http::write(socket, req);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(socket, buffer, res);
    EXPECT_EQ(res.result_int(), 200u) << res.body();
    return std::string(res[http::field::set_cookie]);
}

bool secure(const std::string& cookie) { return cookie.find("; Secure") != std::string::npos; }

}  // namespace

// X-Forwarded-Proto decides whether the session cookie is Secure. With trusted proxies listed, it is
// believed from a listed proxy only, and its last value, the one that proxy wrote: what a client
// connected straight writes, or wrote before the proxy appended its own, is not. With none listed,
// any peer's last value is, as docs/monitor.md has promised a TLS proxy in front that sends it.
TEST(MonitorWebServer, XForwardedProtoIsBelievedFromATrustedProxyAndItsLastValueOnly) {
    const auto serve = [](const std::vector<std::string>& proxies,
                          const std::function<void(unsigned short)>& use) {
        WebLimits limits;
        limits.http.trusted_proxies = kg::web::TrustedProxies::parse(proxies);
        ServedApi api(limits);
        use(api.port());
    };
    // The proxy connects from 127.0.0.2, a client straight from 127.0.0.1.
    serve({"127.0.0.2"}, [](unsigned short port) {
        EXPECT_FALSE(secure(session_cookie(port, "127.0.0.1", {"https"})))
            << "a client straight claims https";
        EXPECT_TRUE(secure(session_cookie(port, "127.0.0.2", {"https"})));
        EXPECT_TRUE(secure(session_cookie(port, "127.0.0.2", {"HTTPS"})));
        EXPECT_FALSE(secure(session_cookie(port, "127.0.0.2", {"http"})));
        EXPECT_FALSE(secure(session_cookie(port, "127.0.0.2", {})));
        // The proxy appended to what its client wrote: its own value is the last.
        EXPECT_FALSE(secure(session_cookie(port, "127.0.0.2", {"https, http"}))) << "the client's value";
        EXPECT_TRUE(secure(session_cookie(port, "127.0.0.2", {"http, https "})));
        // Or added a field of its own (HAProxy's add-header): the fields are one list, in order.
        EXPECT_FALSE(secure(session_cookie(port, "127.0.0.2", {"https", "http"})));
        EXPECT_TRUE(secure(session_cookie(port, "127.0.0.2", {"http", "https"})));
        EXPECT_FALSE(secure(session_cookie(port, "127.0.0.2", {"https,"})));
    });
    // No proxy listed: every peer is believed, its last value.
    serve({}, [](unsigned short port) {
        EXPECT_TRUE(secure(session_cookie(port, "127.0.0.1", {"https"})));
        EXPECT_TRUE(secure(session_cookie(port, "127.0.0.1", {"http, https"})));
        EXPECT_FALSE(secure(session_cookie(port, "127.0.0.1", {"https, http"})));
        EXPECT_FALSE(secure(session_cookie(port, "127.0.0.1", {})));
    });
}

// What the server cannot read is refused in the API's shape, {"error": ...} as JSON, as every other
// refusal of the room's: it was text/plain, so a client reading the error field of a 413 or 431
// (the dashboard, a script) found none.
TEST(MonitorWebServer, RequestsItCannotReadAreRefusedAsJsonSayingWhy) {
    namespace net = boost::asio;
    ServedApi api;
    // `rest` is sent once the server has refused the request: it reads and drops it, or the client
    // saw a reset instead of the refusal (a body sent after its head, as a client uploads).
    const auto ask = [&](const std::string& raw, const std::string& rest = {}) {
        http::response<http::string_body> res;
        try {
            net::io_context client;
            net::ip::tcp::socket socket(client);
            socket.connect({net::ip::make_address("127.0.0.1"), api.port()});
            net::write(socket, net::buffer(raw));
            if (!rest.empty()) {
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
                net::write(socket, net::buffer(rest));
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
            boost::beast::flat_buffer buffer;
            http::read(socket, buffer, res);
        } catch (const std::exception& e) {
            ADD_FAILURE() << "no answer: " << e.what();
        }
        return res;
    };
    const auto said = [](const http::response<http::string_body>& res) {
        EXPECT_EQ(res[http::field::content_type], "application/json") << res.body();
        const auto body = json::parse(res.body(), nullptr, false);
        return body.is_object() ? body.value("error", std::string("(none)")) : "(not JSON)";
    };
    auto res = ask("GET /api/alerts HTTP/1.1\r\nHost: room\r\nX-Pad: " + std::string(9000, 'p') + "\r\n\r\n");
    EXPECT_EQ(res.result_int(), 431u);
    EXPECT_EQ(said(res), "header limit exceeded");
    res =
        ask("POST /api/alerts/x/acknowledge HTTP/1.1\r\nHost: room\r\nContent-Type: application/json"
            "\r\nContent-Length: 70000\r\n\r\n",
            std::string(70000, ' '));
    EXPECT_EQ(res.result_int(), 413u);
    EXPECT_EQ(said(res), "body limit exceeded");
    res = ask("GET /api/alerts HTTP/1.1\r\nHost room\r\n\r\n");
    EXPECT_EQ(res.result_int(), 400u);
    EXPECT_EQ(said(res).rfind("bad request: ", 0), 0u) << res.body();
}

namespace {

std::string config_error(const std::string& yaml) {
    try {
        load_monitor_config_string(yaml, "/etc/kitchen-monitor/monitor.yaml");
    } catch (const kg::config::ConfigInvalid& e) {
        return e.errors.front().to_string();
    }
    return "";
}

const std::string kGood = R"(mqtt:
  url: tcp://127.0.0.1:1883
  client_id: monitor-1
  share_group: room
db:
  path: monitor.db
http:
  listen: 127.0.0.1:8090
  operators:
    - name: wang
      password: correct-horse
deadlines:
  severity_2: {acknowledge: 1h, close: 24h}
  severity_3: {acknowledge: none, close: 7d}
)";

}  // namespace

TEST(MonitorConfig, ErrorsComeInTheFilesOrderAndATypoGetsTheKeyItMeant) {
    // As the gateway's: an installer fixes them from the top (the password's error, read first,
    // came before the log's above it).
    std::string two = "log: {level: loud}\n" + kGood;
    two.replace(two.find("correct-horse"), 13, "abc");
    try {
        load_monitor_config_string(two, "m.yaml");
        FAIL() << "accepted";
    } catch (const kg::config::ConfigInvalid& e) {
        ASSERT_GE(e.errors.size(), 2u);
        for (std::size_t i = 1; i < e.errors.size(); ++i)
            EXPECT_LE(e.errors[i - 1].line, e.errors[i].line) << e.errors[i].to_string();
        EXPECT_EQ(e.errors.front().key, "log.level");
        EXPECT_EQ(e.errors.back().key, "http.operators[0].password");
    }
    EXPECT_EQ(config_error(kGood + "heartbeat_timout: 5m\n"),
              "/etc/kitchen-monitor/monitor.yaml:15:1: heartbeat_timout: unknown key (known here: mqtt, db, "
              "http, deadlines, retention, replay, notify, heartbeat_timeout, log); did you mean "
              "'heartbeat_timeout'?");
    // A WebSocket listener at its path, as the gateway takes it.
    std::string ws = kGood;
    ws.replace(ws.find("tcp://127.0.0.1:1883"), 20, "wss://broker.example:443/mqtt");
    EXPECT_EQ(load_monitor_config_string(ws, "m.yaml").mqtt.url, "wss://broker.example:443/mqtt");
    ws.replace(ws.find("wss://"), 6, "tcp://");
    EXPECT_NE(config_error(ws).find("is not a broker URL"), std::string::npos);
}

TEST(MonitorConfig, LoadsAndNamesFileAndLineOfEachError) {
    const auto cfg = load_monitor_config_string(kGood, "/etc/kitchen-monitor/monitor.yaml");
    EXPECT_EQ(cfg.mqtt.share_group, "room");
    EXPECT_EQ(cfg.db_path, "/etc/kitchen-monitor/monitor.db");  // relative to the file
    EXPECT_EQ(*cfg.deadlines[1].acknowledge, std::chrono::hours(1));
    EXPECT_FALSE(cfg.deadlines[2].acknowledge);
    EXPECT_EQ(*cfg.deadlines[2].close, std::chrono::hours(24 * 7));
    EXPECT_EQ(*cfg.deadlines[0].acknowledge, std::chrono::minutes(15));  // default kept

    EXPECT_EQ(
        config_error(kGood + "colour: blue\n"),
        "/etc/kitchen-monitor/monitor.yaml:15:1: colour: unknown key (known here: mqtt, db, http, deadlines, "
        "retention, replay, notify, heartbeat_timeout, log)");
    std::string short_password = kGood;
    short_password.replace(short_password.find("correct-horse"), 13, "abc");
    EXPECT_EQ(config_error(short_password),
              "/etc/kitchen-monitor/monitor.yaml:11:17: http.operators[0].password: too short: at least 8 "
              "characters");
    std::string no_ops = kGood;
    no_ops.replace(no_ops.find("  operators:"), no_ops.find("deadlines:") - no_ops.find("  operators:"), "");
    EXPECT_NE(config_error(no_ops).find("http.operators: required"), std::string::npos);
    std::string bad_url = kGood;
    bad_url.replace(bad_url.find("tcp://127.0.0.1:1883"), 20, "http://x/y");
    EXPECT_EQ(config_error(bad_url).rfind("/etc/kitchen-monitor/monitor.yaml:2:8: mqtt.url:", 0), 0u);
    std::string bad_deadline = kGood;
    bad_deadline.replace(bad_deadline.find("1h"), 2, "soon");
    EXPECT_NE(config_error(bad_deadline)
                  .find(":13:29: deadlines.severity_2.acknowledge: expected a positive duration"),
              std::string::npos);
    EXPECT_NE(config_error("mqtt: [").find("/etc/kitchen-monitor/monitor.yaml:"), std::string::npos);
    // A password whose closing quote is missing took the rest of the file with it.
    std::string unclosed = kGood;
    unclosed.replace(unclosed.find("correct-horse"), 13, "\"correct-horse");
    EXPECT_NE(config_error(unclosed).find(
                  ":11:17: YAML syntax error: the quote (\") opening this value is never closed"),
              std::string::npos)
        << config_error(unclosed);
    unsetenv("KGM_TEST_UNSET");
    std::string env = kGood;
    env.replace(env.find("correct-horse"), 13, "${KGM_TEST_UNSET}");
    EXPECT_NE(config_error(env).find("environment variable KGM_TEST_UNSET is not set"), std::string::npos);
    // The proxy in front, named by address (a host name cannot be matched against a peer).
    std::string proxies = kGood;
    proxies.replace(proxies.find("  operators:"), 0, "  trusted_proxies: [127.0.0.1, 'fd00::/8']\n");
    EXPECT_EQ(load_monitor_config_string(proxies, "m.yaml").http.trusted_proxies,
              (std::vector<std::string>{"127.0.0.1", "fd00::/8"}));
    proxies.replace(proxies.find("'fd00::/8'"), 10, "nginx");
    EXPECT_EQ(config_error(proxies),
              "/etc/kitchen-monitor/monitor.yaml:9:32: http.trusted_proxies[1]: 'nginx' is not an IP address "
              "(a host "
              "name cannot be matched)");
}

// The room reads the prefixes the gateways may publish under, and refuses what they may not: a
// prefix of more than one level used to be refused here while the gateways took it, and TLS
// settings on a plain URL were dropped without a word.
TEST(MonitorConfig, TopicPrefixesAndTlsAsTheGatewaysHaveThem) {
    std::string levels = kGood;
    levels.replace(levels.find("  url: tcp://127.0.0.1:1883\n"), 0, "  topic_prefix: district-7/kitchen\n");
    EXPECT_EQ(load_monitor_config_string(levels, "/etc/kitchen-monitor/monitor.yaml").mqtt.topic_prefix,
              "district-7/kitchen");
    std::string sys = kGood;
    sys.replace(sys.find("  url: tcp://127.0.0.1:1883\n"), 0, "  topic_prefix: $SYS\n");
    EXPECT_NE(config_error(sys).find("mqtt.topic_prefix: '$SYS': starts with '$'"), std::string::npos);
    std::string plain_tls = kGood;
    plain_tls.replace(plain_tls.find("  url: tcp://127.0.0.1:1883\n"), 0, "  tls: {verify_server: true}\n");
    EXPECT_NE(config_error(plain_tls).find(
                  "mqtt.tls: TLS settings for 'tcp://127.0.0.1:1883', which is not a TLS URL"),
              std::string::npos);
}

namespace {

// In a child process: the monitor's database on a disk that is full (RLIMIT_FSIZE: no file may grow),
// then is not. Each check is one bit of the exit code.
int run_full_database(const fs::path& dir) {
    int failed = 0;
    auto check = [&failed](int bit, bool ok) { failed |= ok ? 0 : 1 << bit; };
    Store store((dir / "monitor.db").string());
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    const std::string a = "19ab3c0f2e1-aaaaaaaaaaaaaaaa", b = "19ab3c0f2e1-bbbbbbbbbbbbbbbb",
                      c = "19ab3c0f2e1-cccccccccccccccc";
    ingest.handle("kitchen/sch-0101/events", event(a, "start").dump(), false, kT0);
    check(0, store.alert(a).has_value());

    std::signal(SIGXFSZ, SIG_IGN);  // write() fails with EFBIG instead of killing the process
    rlimit limit{};
    getrlimit(RLIMIT_FSIZE, &limit);
    const auto hard = limit.rlim_max;
    std::uintmax_t largest = 0;
    for (const auto& f : fs::directory_iterator(dir)) largest = std::max(largest, f.file_size());
    limit.rlim_cur = largest;
    setrlimit(RLIMIT_FSIZE, &limit);
    // The disk has room again after a second: the message that arrived meanwhile is stored, not
    // dropped (the broker had its PUBACK already).
    std::string failure_meanwhile;
    std::thread space([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(1200));
        failure_meanwhile = ingest.store_failure();  // what /readyz says while it retries
        rlimit more = limit;
        more.rlim_cur = hard;
        setrlimit(RLIMIT_FSIZE, &more);
    });
    ingest.handle("kitchen/sch-0101/events", event(b, "start").dump(), false, kT0);
    space.join();
    check(1, store.alert(b).has_value());
    check(2, ingest.counters().store_retries >= 1 && ingest.counters().refused == 0);
    check(4, failure_meanwhile.find("database") != std::string::npos);
    check(5, ingest.store_failure().empty());

    // Full again, and the monitor stops: the wait ends, the message is counted as refused.
    setrlimit(RLIMIT_FSIZE, &limit);
    std::thread stopper([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(800));
        ingest.stop();
    });
    ingest.handle("kitchen/sch-0101/events", event(c, "start").dump(), false, kT0);
    stopper.join();
    check(3, ingest.counters().refused == 1);
    return failed;
}

}  // namespace

TEST(MonitorIngest, AMessageTheDatabaseCannotTakeNowIsRetriedNotDropped) {
    TempDir tmp;
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) _exit(run_full_database(tmp.dir));
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), 0) << "failed checks (bits): " << WEXITSTATUS(status);
}

namespace {

// Overwrites the pages of `table`'s b-trees (its rows and indexes) with noise, as a failing disk may.
void damage_table(const fs::path& db, const std::string& table) {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    std::vector<std::int64_t> pages;
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(
        sqlite3_prepare_v2(raw, "SELECT rootpage FROM sqlite_master WHERE tbl_name = ?1 AND rootpage > 1", -1,
                           &stmt, nullptr),
        SQLITE_OK);
    sqlite3_bind_text(stmt, 1, table.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(stmt) == SQLITE_ROW) pages.push_back(sqlite3_column_int64(stmt, 0));
    sqlite3_finalize(stmt);
    sqlite3_stmt* size = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(raw, "PRAGMA page_size", -1, &size, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(size), SQLITE_ROW);
    const auto page_size = sqlite3_column_int64(size, 0);
    sqlite3_finalize(size);
    sqlite3_close(raw);
    ASSERT_FALSE(pages.empty());
    std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
    const std::string noise(static_cast<std::size_t>(page_size), '\xab');
    for (const auto page : pages) {
        f.seekp((page - 1) * page_size);
        f.write(noise.data(), static_cast<std::streamsize>(noise.size()));
    }
    ASSERT_TRUE(f.good());
}

// A database with one alert whose alerts table is then damaged.
void make_damaged_database(const fs::path& db) {
    {
        Store store(db.string());
        ASSERT_EQ(store.add_event(parsed(event("19ab3c0f2e1-aaaaaaaaaaaaaaaa", "start")), kT0).outcome,
                  IngestOutcome::created);
    }
    damage_table(db, "alerts");
}

}  // namespace

// A damaged file is the database's failure, not the message's: refused, this message and every one
// after it would be dropped (the broker had their PUBACKs). Held, they wait at the broker, and
// /readyz says what to do, until the file is mended.
TEST(MonitorIngest, ADamagedDatabaseHoldsTheMessagesInsteadOfDroppingThem) {
    TempDir tmp;
    const auto db = tmp.dir / "monitor.db";
    ASSERT_NO_FATAL_FAILURE(make_damaged_database(db));
    Store store(db.string());
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    std::string failure_meanwhile;
    std::thread stopper([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(1200));
        failure_meanwhile = ingest.store_failure();  // what /readyz says meanwhile
        ingest.stop();
    });
    const auto t0 = std::chrono::steady_clock::now();
    ingest.handle("kitchen/sch-0101/events", event("19ab3c0f2e1-bbbbbbbbbbbbbbbb", "start").dump(), false,
                  kT0);
    const auto held = std::chrono::steady_clock::now() - t0;
    stopper.join();
    EXPECT_GE(held, std::chrono::milliseconds(1000)) << "refused at once, not held";
    EXPECT_GE(ingest.counters().store_retries.load(), 1u);
    EXPECT_NE(failure_meanwhile.find("the database file is damaged"), std::string::npos) << failure_meanwhile;
    EXPECT_NE(failure_meanwhile.find("malformed"), std::string::npos) << failure_meanwhile;
    // Given up only because the monitor stopped: counted, and logged as lost.
    EXPECT_EQ(ingest.counters().refused.load(), 1u);
}

// docs/monitor.md: "${NAME} in any value is replaced by the environment variable". Booleans, a
// notification target's severities and a retention or deadline's `none` were read as written.
TEST(MonitorConfig, EnvironmentVariablesWorkInEveryKindOfValue) {
    struct Variables {  // unset again however the test ends
        Variables() {
            setenv("KGM_TEST_JSON", "true", 1);
            setenv("KGM_TEST_KEEP", "none", 1);
            setenv("KGM_TEST_TIER", "2", 1);
            setenv("KGM_TEST_WORD", "maybe", 1);
        }
        ~Variables() {
            for (const char* name : {"KGM_TEST_JSON", "KGM_TEST_KEEP", "KGM_TEST_TIER", "KGM_TEST_WORD"})
                unsetenv(name);
        }
    } variables;
    const auto cfg = load_monitor_config_string(
        kGood +
            "retention: {alerts: '${KGM_TEST_KEEP}'}\nreplay: {enabled: '${KGM_TEST_JSON}'}\n"
            "notify: {targets: [{name: a, url: 'http://x/', severities: ['${KGM_TEST_TIER}']}]}\n"
            "log: {json: '${KGM_TEST_JSON}'}\n",
        "m.yaml");
    EXPECT_FALSE(cfg.retention.alerts);
    EXPECT_TRUE(cfg.replay.enabled);
    EXPECT_TRUE(cfg.log_json);
    EXPECT_EQ(cfg.notify.targets.at(0).severities, std::vector<int>{2});
    EXPECT_EQ(config_error(kGood + "log: {json: '${KGM_TEST_WORD}'}\n"),
              "/etc/kitchen-monitor/monitor.yaml:15:13: log.json: expected true or false, not 'maybe'");
    EXPECT_EQ(config_error(kGood + "retention: {alerts: '${KGM_TEST_WORD}'}\n"),
              "/etc/kitchen-monitor/monitor.yaml:15:21: retention.alerts: expected a positive duration like "
              "30s, 15m, 2h, or none, not 'maybe'");
    EXPECT_EQ(config_error(kGood + "log: {json: [true]}\n"),
              "/etc/kitchen-monitor/monitor.yaml:15:13: log.json: expected true or false, not a list");
}

TEST(MonitorConfig, RetentionDefaultsNoneAndUnitSlips) {
    auto cfg = load_monitor_config_string(kGood, "/etc/kitchen-monitor/monitor.yaml");
    EXPECT_EQ(*cfg.retention.alerts, std::chrono::hours(24 * 730));
    EXPECT_EQ(*cfg.retention.rollups, std::chrono::hours(24 * 90));
    cfg = load_monitor_config_string(kGood + "retention: {alerts: none, rollups: 30d}\n", "m.yaml");
    EXPECT_FALSE(cfg.retention.alerts);
    EXPECT_EQ(*cfg.retention.rollups, std::chrono::hours(24 * 30));
    EXPECT_EQ(*cfg.retention.snapshots, std::chrono::hours(24 * 180));  // default kept
    EXPECT_EQ(
        config_error(kGood + "retention: {rollups: 30m}\n"),
        "/etc/kitchen-monitor/monitor.yaml:15:22: retention.rollups: shorter than a day: is the unit right? "
        "(30d, not 30m)");
    EXPECT_NE(config_error(kGood + "retention: {pictures: 30d}\n").find("retention.pictures: unknown key"),
              std::string::npos);
}

namespace {

// An event of `id` that started at `start` (ISO), with its messages, snapshot and a decision.
void closed_alert(Store& store, const std::string& id, const std::string& start, kg::TimePoint closed_at) {
    auto j = event(id, "start");
    j["start_time"] = start;
    ASSERT_EQ(store.add_event(parsed(j), closed_at).outcome, IngestOutcome::created);
    j = event(id, "end");
    j["start_time"] = start;
    ASSERT_EQ(store.add_event(parsed(j), closed_at).outcome, IngestOutcome::updated);
    ASSERT_TRUE(store.add_snapshot("sch-0101", id, "\xff\xd8jpeg", closed_at));
    ASSERT_EQ(store.act(id, Action::acknowledge, "wang", "", closed_at).code, ActionResult::Code::ok);
    const auto r = store.act(id, Action::close, "wang", "cleaned", closed_at);
    ASSERT_EQ(r.code, ActionResult::Code::ok);
    for (const auto& a : store.unpublished_actions(10)) store.mark_published(a.seq, closed_at);
}

json rollup(const std::string& minute) {
    return {{"minute", minute}, {"unit", "degC"}, {"min", 2.0}, {"mean", 3.0}, {"max", 4.0}, {"count", 6}};
}

}  // namespace

TEST(MonitorStore, RetentionDeletesOnlyWhatIsPastItsTime) {
    using std::chrono::hours;
    const auto day = hours(24);
    Store store(":memory:", Retention{.alerts = day * 10, .snapshots = day * 5, .rollups = day * 2});
    const auto now = kT0 + day * 30;
    closed_alert(store, "old000000001", "2026-11-24T06:00:00.000Z", kT0);             // closed 30 days ago
    closed_alert(store, "mid000000001", "2026-12-16T06:00:00.000Z", kT0 + day * 22);  // closed 8 days ago
    closed_alert(store, "new000000001", "2026-12-23T06:00:00.000Z", kT0 + day * 29);  // closed yesterday
    // Open for 30 days: work still to do, never deleted, nor its picture.
    auto open = event("opn000000001", "start");
    ASSERT_EQ(store.add_event(parsed(open), kT0).outcome, IngestOutcome::created);
    ASSERT_TRUE(store.add_snapshot("sch-0101", "opn000000001", "\xff\xd8jpeg", kT0));
    // A picture whose event never came, 30 days ago.
    ASSERT_TRUE(store.add_snapshot("sch-0101", "orphan000001", "\xff\xd8jpeg", kT0));
    for (const char* m : {"2026-12-21T05:59:00.000Z", "2026-12-22T06:01:00.000Z", "2026-12-24T05:00:00.000Z"})
        store.add_rollup("sch-0101", "fridge1", rollup(m));

    const auto p = store.prune(now, 500);
    EXPECT_EQ(p.alerts, 1);     // old: past 10 days
    EXPECT_EQ(p.snapshots, 2);  // mid's (closed, received 8 days ago) and the orphan's
    EXPECT_EQ(p.rollups, 1);    // before 2026-12-22T06:00
    EXPECT_FALSE(p.more);
    EXPECT_FALSE(store.alert("old000000001"));
    EXPECT_TRUE(store.alert_history("old000000001").empty());
    EXPECT_TRUE(store.actions("old000000001").empty());
    EXPECT_TRUE(store.alert("mid000000001"));
    EXPECT_FALSE(store.snapshot("mid000000001"));
    EXPECT_TRUE(store.snapshot("new000000001"));
    EXPECT_TRUE(store.snapshot("opn000000001"));
    EXPECT_FALSE(store.snapshot("orphan000001"));
    EXPECT_EQ(store.count_alerts(), 3);
    const auto left = *store.rollups("sch-0101", "2026-12-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z");
    ASSERT_EQ(left.size(), 1u);
    ASSERT_EQ(left[0]["points"].size(), 2u);
    EXPECT_EQ(left[0]["points"][0]["minute"], "2026-12-22T06:01:00.000Z");
    EXPECT_EQ(store.prune(now, 500).total(), 0);  // nothing left to do

    // A late copy of the deleted alert's start does not reopen it, nor does its picture come back.
    auto late = event("old000000001", "start");
    late["start_time"] = "2026-11-24T06:00:00.000Z";
    EXPECT_EQ(store.add_event(parsed(late), now).outcome, IngestOutcome::expired);
    EXPECT_FALSE(store.alert("old000000001"));
    EXPECT_TRUE(store.add_snapshot("sch-0101", "old000000001", "\xff\xd8jpeg", now));
    EXPECT_FALSE(store.snapshot("old000000001"));
    // A new event is an alert whatever the gateway's clock says: one whose clock was never set
    // (1970) still raises alerts.
    auto unset_clock = event("clk000000001", "start");
    unset_clock["start_time"] = "1970-01-01T00:02:10.000Z";
    EXPECT_EQ(store.add_event(parsed(unset_clock), now).outcome, IngestOutcome::created);
    // The deleted alert is remembered 30 days, then forgotten.
    EXPECT_EQ(store.prune(now + day * 31, 500).alerts, 2);  // mid and new, closed over 10 days ago by then
    EXPECT_EQ(store.add_event(parsed(late), now + day * 31).outcome, IngestOutcome::created);
}

TEST(MonitorStore, RetentionWorksInBatchesAndKeepsUndecidedAlerts) {
    using std::chrono::hours;
    Store store(":memory:",
                Retention{.alerts = hours(24), .snapshots = std::nullopt, .rollups = std::nullopt});
    for (int i = 0; i < 5; ++i)
        closed_alert(store, fmt::format("bat{:09}", i), "2026-11-24T06:00:00.000Z", kT0);
    // Closed, but the site has not heard of it yet: its decision is unpublished.
    auto j = event("unp000000001", "start");
    ASSERT_EQ(store.add_event(parsed(j), kT0).outcome, IngestOutcome::created);
    ASSERT_EQ(store.act("unp000000001", Action::acknowledge, "wang", "", kT0).code, ActionResult::Code::ok);
    ASSERT_EQ(store.act("unp000000001", Action::close, "wang", "done", kT0).code, ActionResult::Code::ok);
    const auto now = kT0 + hours(48);
    auto p = store.prune(now, 2);
    EXPECT_EQ(p.alerts, 2);
    EXPECT_TRUE(p.more);
    EXPECT_EQ(store.prune(now, 2).alerts, 2);
    p = store.prune(now, 2);
    EXPECT_EQ(p.alerts, 1);
    EXPECT_FALSE(p.more);
    EXPECT_EQ(store.count_alerts(), 1);
    EXPECT_TRUE(store.alert("unp000000001"));
    for (const auto& a : store.unpublished_actions(10)) store.mark_published(a.seq, now);
    EXPECT_EQ(store.prune(now, 2).alerts, 1);
    EXPECT_EQ(store.count_alerts(), 0);
}

namespace {

// One request to the API as an operator with a bearer token; the response's status and body.
struct ApiProbe {
    Store store{":memory:"};
    MonitorConfig cfg;
    Auth auth{{{"wang", "", "tok-0123456789abcdef"}}, std::chrono::hours(1)};
    WebHandler handler = make_api(test_context(store, auth, cfg), kg::Logging::null_logger());

    std::pair<int, std::string> call(http::verb method, const std::string& target, bool signed_in = true) {
        Request req{method, target, 11};
        if (signed_in) req.set(http::field::authorization, "Bearer tok-0123456789abcdef");
        const auto reply = handler(req, {"127.0.0.1"});
        return {static_cast<int>(reply.response.result_int()), reply.response.body()};
    }
};

}  // namespace

// Connected to the broker but unable to store: the monitor was "ready" while every message waited
// at the broker behind the one it kept retrying.
TEST(MonitorApi, ReadyzSaysWhenTheDatabaseDoesNotTakeMessages) {
    Store store{":memory:"};
    MonitorConfig cfg;
    Auth auth{{{"wang", "", "tok-0123456789abcdef"}}, std::chrono::hours(1)};
    bool connected = true;
    std::string failure;
    WebHandler handler = make_api(ApiContext{store,
                                             auth,
                                             cfg,
                                             [&] { return connected; },
                                             [](const ActionRecord&) {},
                                             nullptr,
                                             {},
                                             {},
                                             {},
                                             [&] { return failure; },
                                             nullptr,
                                             {},
                                             {}},
                                  kg::Logging::null_logger());
    const auto readyz = [&] {
        const auto reply = handler(Request{http::verb::get, "/readyz", 11}, {"127.0.0.1"});
        return std::pair{static_cast<int>(reply.response.result_int()), reply.response.body()};
    };
    // And /metrics, for an alert rule.
    const auto failing = [&] {
        const auto body = handler(Request{http::verb::get, "/metrics", 11}, {"127.0.0.1"}).response.body();
        const auto at = body.find("\nkgm_store_failing ");
        return at == std::string::npos ? std::string("absent") : body.substr(at + 19, 1);
    };
    EXPECT_EQ(readyz(), (std::pair<int, std::string>{200, "ready\n"}));
    EXPECT_EQ(failing(), "0");
    failure = "database /var/lib/kitchen-monitor/monitor.db: database or disk is full";
    EXPECT_EQ(failing(), "1");
    auto [status, body] = readyz();
    EXPECT_EQ(status, 503);
    EXPECT_NE(body.find("the database does not take messages (retrying; the broker holds what follows): "
                        "database /var/lib/kitchen-monitor/monitor.db: database or disk is full"),
              std::string::npos)
        << body;
    connected = false;
    std::tie(status, body) = readyz();
    EXPECT_EQ(status, 503);
    EXPECT_NE(body.find("not connected to the broker"), std::string::npos) << body;
    EXPECT_NE(body.find("disk is full"), std::string::npos) << body;
    failure.clear();
    connected = true;
    EXPECT_EQ(readyz().first, 200);
}

TEST(MonitorStore, ADatabaseOfALaterVersionIsRefusedAndLeftAsItWas) {
    // A monitor downgraded after an upgrade would misread the later version's tables, and write rows
    // the later version misreads in turn: it refuses to start, saying why.
    TempDir tmp;
    const auto db = tmp.dir / "monitor.db";
    {
        Store store(db.string());
        ASSERT_EQ(store.add_event(parsed(event("19ab3c0f2e1-aaaaaaaaaaaaaaaa", "start")), kT0).outcome,
                  IngestOutcome::created);
    }
    kg::sqlite::Db(db.string(), {}).exec("PRAGMA user_version=7");
    try {
        Store store(db.string());
        FAIL() << "opened";
    } catch (const kg::sqlite::Error& e) {
        EXPECT_NE(std::string(e.what()).find(
                      "schema version: the file was written by a later version of this program (schema "
                      "version 7; this one reads up to 2)"),
                  std::string::npos)
            << e.what();
    }
    kg::sqlite::Db(db.string(), {}).exec("PRAGMA user_version=1");
    Store store(db.string());
    EXPECT_TRUE(store.alert("19ab3c0f2e1-aaaaaaaaaaaaaaaa").has_value()) << "left as it was";
}

TEST(MonitorApi, MetricsSayTheStoreFailsWhenItsAlertsCannotBeCounted) {
    // A database that does not answer (here its alerts table is damaged): the scrape still answers,
    // with kgm_store_failing, rather than a 500 the alert rule never sees.
    TempDir tmp;
    const auto db = tmp.dir / "monitor.db";
    ASSERT_NO_FATAL_FAILURE(make_damaged_database(db));
    Store store(db.string());
    MonitorConfig cfg;
    Auth auth{{{"wang", "", "tok-0123456789abcdef"}}, std::chrono::hours(1)};
    WebHandler handler = make_api(ApiContext{store,
                                             auth,
                                             cfg,
                                             [] { return true; },
                                             [](const ActionRecord&) {},
                                             nullptr,
                                             {},
                                             {},
                                             {},
                                             [] { return std::string("the database file is damaged"); },
                                             nullptr,
                                             {},
                                             {}},
                                  kg::Logging::null_logger());
    const auto reply = handler(Request{http::verb::get, "/metrics", 11}, {"127.0.0.1"});
    const auto& body = reply.response.body();
    EXPECT_EQ(reply.response.result_int(), 200);
    EXPECT_NE(body.find("kgm_store_failing 1"), std::string::npos) << body;
    EXPECT_EQ(body.find("kgm_alerts"), std::string::npos) << body;
}

TEST(MonitorApi, AHeadOfTheEventStreamIsNotAStream) {
    Store store{":memory:"};
    MonitorConfig cfg;
    Auth auth{{{"wang", "", "tok-0123456789abcdef"}}, std::chrono::hours(1)};
    WebHandler handler = make_api(test_context(store, auth, cfg), kg::Logging::null_logger());
    Request req{http::verb::head, "/api/stream", 11};
    req.set(http::field::authorization, "Bearer tok-0123456789abcdef");
    const auto reply = handler(req, {"127.0.0.1"});
    EXPECT_FALSE(reply.event_stream);
    EXPECT_EQ(reply.response.result_int(), 200);
    EXPECT_EQ(reply.response[http::field::content_type], "text/event-stream");
}

TEST(MonitorApi, BadQueryValuesAndWrongMethodsAreRefusedClearly) {
    ApiProbe api;
    const std::string id = "19ab3c0f2e1-ffffffffffffff01";
    api.store.add_event(parsed(event(id, "start")), kT0);
    // limit: a whole number from 1 to 5000, nothing read into it.
    for (const std::string bad : {"-1", "0", "20x", "", "5001", "99999999999", "1e3"}) {
        const auto [status, body] = api.call(http::verb::get, "/api/alerts?limit=" + bad);
        EXPECT_EQ(status, 400) << bad;
        EXPECT_NE(body.find("is not a whole number from 1 to 5000"), std::string::npos) << body;
    }
    EXPECT_EQ(api.call(http::verb::get, "/api/alerts?limit=5000").first, 200);
    EXPECT_EQ(json::parse(api.call(http::verb::get, "/api/alerts?limit=1").second).size(), 1u);
    // Times: not a time, and a window that ends before it starts.
    EXPECT_EQ(api.call(http::verb::get, "/api/sites/sch-0101/rollups?from=garbage").first, 400);
    const auto [status, body] = api.call(
        http::verb::get, "/api/sites/sch-0101/rollups?from=2026-11-25T00:00:00Z&to=2026-11-24T00:00:00Z");
    EXPECT_EQ(status, 400);
    EXPECT_NE(body.find("is after to"), std::string::npos) << body;
    // A leap second of 2200 is written as 2201, which does not read back: the span is the times'
    // own (an empty result was read, and the answer said "more than 7 days").
    const auto [leap, leap_body] = api.call(
        http::verb::get, "/api/sites/sch-0101/rollups?from=2200-12-31T23:59:60Z&to=2200-12-25T00:00:00Z");
    EXPECT_EQ(leap, 400);
    EXPECT_NE(leap_body.find("is after to"), std::string::npos) << leap_body;
    // A site the room has never heard from is not a site without sensors.
    api.store.site_seen("sch-0101", kT0);
    EXPECT_EQ(api.call(http::verb::get, "/api/sites/sch-0101/rollups").first, 200);
    // Times written without milliseconds are read as the stored minutes are written: from included,
    // to not (compared as text, `...00:00Z` sorted after `...00:00.000Z`: the first minute was left
    // out and the last one taken in).
    for (const char* minute : {"2026-11-24T00:00:00.000Z", "2026-11-24T01:00:00.000Z"})
        ASSERT_TRUE(api.store.add_rollup(
            "sch-0101", "fridge",
            {{"minute", minute}, {"min", 3.0}, {"mean", 3.5}, {"max", 4.0}, {"count", 6}, {"unit", "degC"}}));
    const auto [window, points] = api.call(
        http::verb::get, "/api/sites/sch-0101/rollups?from=2026-11-24T00:00:00Z&to=2026-11-24T01:00:00Z");
    ASSERT_EQ(window, 200) << points;
    const auto got = json::parse(points)["sensors"].at(0)["points"];
    ASSERT_EQ(got.size(), 1u) << points;
    EXPECT_EQ(got[0]["minute"], "2026-11-24T00:00:00.000Z") << points;
    // A span longer than a week is asked for in parts, not built whole under the store's lock.
    const auto [long_span, long_body] = api.call(
        http::verb::get, "/api/sites/sch-0101/rollups?from=2025-11-24T00:00:00Z&to=2026-11-24T00:00:00Z");
    EXPECT_EQ(long_span, 400);
    EXPECT_NE(long_body.find("is more than 7 days"), std::string::npos) << long_body;
    const auto [unknown, unknown_body] = api.call(http::verb::get, "/api/sites/sch-9999/rollups");
    EXPECT_EQ(unknown, 404);
    EXPECT_NE(unknown_body.find("no such site 'sch-9999'"), std::string::npos) << unknown_body;
    // Reading routes read only: another method is 405, not an answer that looks like it worked.
    for (const std::string& path :
         std::vector<std::string>{"/api/alerts", "/api/alerts/" + id, "/api/alerts/" + id + "/snapshot.jpg",
                                  "/api/sites", "/api/checks", "/api/me", "/api/stream",
                                  "/api/sites/sch-0101/rollups", "/metrics", "/healthz"}) {
        EXPECT_EQ(api.call(http::verb::delete_, path).first, 405) << path;
        EXPECT_EQ(api.call(http::verb::post, path).first, 405) << path;
    }
    EXPECT_EQ(api.call(http::verb::get, "/api/logout").first, 405);
    EXPECT_EQ(api.call(http::verb::get, "/api/alerts/" + id + "/acknowledge").first, 405);
    EXPECT_EQ(api.call(http::verb::post, "/api/nothing").first, 404);
    EXPECT_EQ(api.call(http::verb::get, "/api/alerts/" + id + "/bogus").first, 404);
    EXPECT_EQ(api.call(http::verb::get, "/api/alerts/" + id).first, 200);
    EXPECT_EQ(api.call(http::verb::get, "/api/alerts", false).first, 401);
    EXPECT_EQ(api.store.alert(id)->status, Status::open);
}

// A page of another site cannot sign the room's browser in (as the attacker's operator, whose name
// every action would then carry) or out: an HTML form posted a text/plain body that read as JSON
// (the 53rd session's review). Media types are read case-insensitively, and the answers say why.
TEST(MonitorApi, RequestsAPageOfAnotherSiteCanMakeAreRefusedAndAnswersSayWhy) {
    std::ostringstream text;
    Store store{":memory:"};
    MonitorConfig cfg;
    Auth auth{{{"wang", "correct-horse", "tok-0123456789abcdef"}}, std::chrono::hours(1)};
    WebHandler handler = make_api(
        test_context(store, auth, cfg),
        std::make_shared<spdlog::logger>("api", std::make_shared<spdlog::sinks::ostream_sink_mt>(text)));
    const std::string id = "19ab3c0f2e1-ffffffffffffff01";
    store.add_event(parsed(event(id, "start")), kT0);
    const auto call = [&](const std::string& target, const std::string& type, const std::string& body,
                          const std::string& fetch_site = {}, bool bearer = false) {
        Request req{http::verb::post, target, 11};
        if (!type.empty()) req.set(http::field::content_type, type);
        if (!fetch_site.empty()) req.set("Sec-Fetch-Site", fetch_site);
        if (bearer) req.set(http::field::authorization, "Bearer tok-0123456789abcdef");
        req.body() = body;
        req.prepare_payload();
        const auto res = handler(req, {"127.0.0.1"}).response;
        return std::pair<int, std::string>{res.result_int(), res.body()};
    };
    const std::string form = R"({"operator":"wang","password":"correct-horse","pad":"="})";
    auto [status, body] = call("/api/login", "text/plain", form);
    EXPECT_EQ(status, 415);
    EXPECT_NE(body.find("send application/json"), std::string::npos) << body;
    std::tie(status, body) = call("/api/login", "application/json", form, "cross-site");
    EXPECT_EQ(status, 403);
    EXPECT_NE(body.find("a page of another site"), std::string::npos) << body;
    EXPECT_EQ(call("/api/logout", "application/json", "{}", "cross-site").first, 403);
    EXPECT_EQ(call("/api/logout", "", "", "", true).first, 415);
    EXPECT_EQ(call("/api/login", "Application/JSON; charset=utf-8", form, "same-origin").first, 200);
    // Actions: the media type in any case; "application/jsonx" is not JSON.
    const auto ack = "/api/alerts/" + id + "/acknowledge";
    EXPECT_EQ(call(ack, "application/jsonx", "{}", "", true).first, 415);
    std::tie(status, body) = call(ack, "application/json", "{\"note\": \"\xff\"}", "", true);
    EXPECT_EQ(status, 400);
    EXPECT_NE(body.find("not JSON: "), std::string::npos) << body;
    EXPECT_NE(body.find("ill-formed UTF-8"), std::string::npos) << body;
    std::tie(status, body) =
        call(ack, "application/json", json{{"note", std::string(4001, 'n')}}.dump(), "", true);
    EXPECT_EQ(status, 413);
    EXPECT_NE(body.find("note too long: 4001 bytes, at most 4000"), std::string::npos) << body;
    // A note's line feeds are kept in the note, not let into the log as lines of their own.
    const std::string note = "ok\n2026-12-05T23:59:59.000 info [http] li close evt-x: forged";
    std::tie(status, body) = call(ack, "APPLICATION/json", json{{"note", note}}.dump(), "", true);
    EXPECT_EQ(status, 200) << body;
    EXPECT_NE(text.str().find("acknowledge " + id + " from 127.0.0.1: ok 2026-12-05"), std::string::npos)
        << text.str();
    EXPECT_EQ(text.str().find("\n2026-12-05T23:59:59.000 info"), std::string::npos) << text.str();
    // The request target is a path: "xapi/alerts/<id>" was served as /api/alerts/<id>.
    Request odd{http::verb::get, "xapi/alerts/" + id, 11};
    odd.set(http::field::authorization, "Bearer tok-0123456789abcdef");
    EXPECT_EQ(handler(odd, {"127.0.0.1"}).response.result_int(), 400u);
}

// A site sending an update 30 times a second made an alert's detail of 20 000 lines: 3.6 MB built
// under the store's lock on the HTTP thread, 0.3-0.4 s, for every open dashboard at every update
// (the review of the 53rd session). The first and last 100 messages are given, and how many.
TEST(MonitorApi, ALongHistoryIsGivenByItsEndsAndItsCount) {
    ApiProbe api;
    const std::string id = "19ab3c0f2e1-ffffffffffffff01";
    api.store.add_event(parsed(event(id, "start")), kT0);
    for (int i = 1; i <= 250; ++i)
        api.store.add_event(parsed(event(id, "update", i)), kT0 + std::chrono::seconds(i));
    const auto [status, body] = api.call(http::verb::get, "/api/alerts/" + id);
    ASSERT_EQ(status, 200) << body;
    const auto a = json::parse(body);
    EXPECT_EQ(a["history_total"], 251);
    ASSERT_EQ(a["history"].size(), 2 * Store::kHistoryEnds);
    EXPECT_EQ(a["history"][0]["message_id"], id + ":start");
    EXPECT_EQ(a["history"][99]["message_id"], id + ":update-99");
    EXPECT_EQ(a["history"][100]["message_id"], id + ":update-151");
    EXPECT_EQ(a["history"][199]["message_id"], id + ":update-250");
    std::size_t total = 0;
    EXPECT_EQ(api.store.alert_history(id, &total).size(), 200u);
    EXPECT_EQ(total, 251u);
}

// Behind a trusted proxy, a stream closed for falling behind is logged with the client the proxy
// forwards, as the requests are: the proxy's own address named every operator alike.
TEST(MonitorWebServer, AStreamClosedForFallingBehindNamesTheClientBehindTheProxy) {
    namespace net = boost::asio;
    std::ostringstream lines;
    auto log =
        std::make_shared<spdlog::logger>("web", std::make_shared<spdlog::sinks::ostream_sink_mt>(lines));
    WebLimits limits;
    limits.stream_queue = 4;
    limits.http.trusted_proxies = kg::web::TrustedProxies::parse({"127.0.0.1"});
    auto hub = std::make_shared<EventHub>();
    net::io_context io;
    WebServer server(
        io, "127.0.0.1:0", limits,
        [](const Request&, const Sender&) {
            return Reply{{}, true};
        },
        hub, log);
    server.start();
    std::thread runner([&] { io.run(); });

    net::io_context client_io;
    net::ip::tcp::socket client(client_io);
    client.connect({net::ip::make_address("127.0.0.1"), server.port()});
    net::write(client, net::buffer(std::string("GET /api/stream HTTP/1.1\r\nHost: room\r\n"
                                               "X-Forwarded-For: 203.0.113.9\r\n\r\n")));
    net::streambuf head;
    net::read_until(client, head, "\r\n\r\n");  // a stream now; the client reads no more
    for (int i = 0; i < 200 && hub->streams() == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(hub->streams(), 1u);
    // Far more than the socket's buffers hold: the queue fills and the stream is closed.
    const std::string big(64 * 1024, 'x');
    for (int i = 0; i < 400 && hub->streams() > 0; ++i) {
        hub->broadcast("alert", big);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    for (int i = 0; i < 500 && lines.str().find("closed") == std::string::npos; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    net::post(io, [&] { server.stop(); });
    io.stop();
    runner.join();
    EXPECT_NE(lines.str().find("event stream to 203.0.113.9 closed"), std::string::npos) << lines.str();
}

// A stream's sign-in is asked again before each ping: checked only when it opened, a stream went
// on giving every alert and site row after its sign-out and past its session's end (the review of
// the 53rd session). A bearer token's stream, still signed in, goes on.
TEST(MonitorWebServer, AStreamEndsWhenItsSignInNoLongerHolds) {
    namespace net = boost::asio;
    std::ostringstream lines;
    auto log =
        std::make_shared<spdlog::logger>("web", std::make_shared<spdlog::sinks::ostream_sink_mt>(lines));
    Store store{":memory:"};
    MonitorConfig cfg;
    Auth auth{{{"wang", "correct-horse", "tok-0123456789abcdef"}}, std::chrono::hours(1)};
    WebHandler handler = make_api(test_context(store, auth, cfg), kg::Logging::null_logger());
    Request login{http::verb::post, "/api/login", 11};
    login.set(http::field::content_type, "application/json");
    login.body() = json{{"operator", "wang"}, {"password", "correct-horse"}}.dump();
    login.prepare_payload();
    const auto set_cookie = std::string(handler(login, {"127.0.0.1"}).response[http::field::set_cookie]);
    const auto cookie = set_cookie.substr(0, set_cookie.find(';'));
    ASSERT_FALSE(cookie.empty());

    WebLimits limits;
    limits.ping_interval = std::chrono::milliseconds(100);
    auto hub = std::make_shared<EventHub>();
    net::io_context io;
    WebServer server(io, "127.0.0.1:0", limits, handler, hub, log);
    server.start();
    std::thread runner([&] { io.run(); });
    net::io_context client_io;
    const auto open = [&](const std::string& credentials) {
        auto socket = std::make_unique<net::ip::tcp::socket>(client_io);
        socket->connect({net::ip::make_address("127.0.0.1"), server.port()});
        net::write(*socket,
                   net::buffer("GET /api/stream HTTP/1.1\r\nHost: room\r\n" + credentials + "\r\n\r\n"));
        net::streambuf head;
        net::read_until(*socket, head, "\r\n\r\n");
        return socket;
    };
    auto by_cookie = open("Cookie: " + cookie);
    auto by_token = open("Authorization: Bearer tok-0123456789abcdef");
    auto by_basic = open("Authorization: Basic d2FuZzpjb3JyZWN0LWhvcnNl");  // wang:correct-horse
    for (int i = 0; i < 200 && hub->streams() < 3; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(hub->streams(), 3u);
    // A guesser at wang from the stream's address: the Basic stream's check neither ends on his
    // count nor clears it with its right password (the review of the fix).
    Request guess{http::verb::post, "/api/login", 11};
    guess.set(http::field::content_type, "application/json");
    guess.body() = json{{"operator", "wang"}, {"password", "wrong"}}.dump();
    guess.prepare_payload();
    for (int i = 0; i < Auth::kFreeGuesses; ++i) handler(guess, {"127.0.0.1"});
    EXPECT_GT(auth.retry_after("127.0.0.1", "wang"), kg::Duration::zero());
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // pings: all still signed in
    EXPECT_EQ(hub->streams(), 3u);
    EXPECT_GT(auth.retry_after("127.0.0.1", "wang"), kg::Duration::zero());
    Request logout{http::verb::post, "/api/logout", 11};
    logout.set(http::field::cookie, cookie);
    logout.set(http::field::content_type, "application/json");
    logout.prepare_payload();
    EXPECT_EQ(handler(logout, {"127.0.0.1"}).response.result_int(), 200u);
    for (int i = 0; i < 300 && hub->streams() > 2; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(hub->streams(), 2u);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(hub->streams(), 2u);  // the token's and the password's
    net::post(io, [&] { server.stop(); });
    io.stop();
    runner.join();
    EXPECT_NE(lines.str().find("event stream to 127.0.0.1 ended: its sign-in no longer holds"),
              std::string::npos)
        << lines.str();
}

// A sign-out ends its streams at once, not at the next ping (15 s): the page signed out in one tab
// went on receiving alerts in another until then.
TEST(MonitorWebServer, ASignOutEndsItsStreamsAtOnce) {
    namespace net = boost::asio;
    WebLimits limits;
    limits.ping_interval = std::chrono::hours(1);
    ServedApi api(limits);
    const auto& hub = api.hub;
    const auto cookie = session_cookie(api.port(), "127.0.0.1", {});
    net::io_context client_io;
    net::ip::tcp::socket stream(client_io);
    stream.connect({net::ip::make_address("127.0.0.1"), api.port()});
    net::write(stream, net::buffer("GET /api/stream HTTP/1.1\r\nHost: room\r\nCookie: " +
                                   cookie.substr(0, cookie.find(';')) + "\r\n\r\n"));
    net::streambuf head;
    net::read_until(stream, head, "\r\n\r\n");
    for (int i = 0; i < 200 && hub->streams() < 1; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(hub->streams(), 1u);
    net::ip::tcp::socket other(client_io);
    other.connect({net::ip::make_address("127.0.0.1"), api.port()});
    Request logout{http::verb::post, "/api/logout", 11};
    logout.set(http::field::host, "room");
    logout.set(http::field::cookie, cookie.substr(0, cookie.find(';')));
    logout.set(http::field::content_type, "application/json");
    logout.prepare_payload();
    http::write(other, logout);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(other, buffer, res);
    EXPECT_EQ(res.result_int(), 200u);
    for (int i = 0; i < 200 && hub->streams() > 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(hub->streams(), 0u) << "the stream outlived its sign-out";
}

// A room whose clock is a day behind refused every site's roll-ups as ahead, and nothing said its
// own clock was the cause. Live states carry their gateway's time: the median over the sites says
// it, once an hour, and /metrics gives it; one site's wrong clock, and retained states, do not.
TEST(MonitorClock, TheRoomSaysWhenMostSitesAgreeItsClockIsOff) {
    using std::chrono::hours;
    using std::chrono::minutes;
    using std::chrono::seconds;
    std::ostringstream lines;
    auto log =
        std::make_shared<spdlog::logger>("ingest", std::make_shared<spdlog::sinks::ostream_sink_mt>(lines));
    Store store(":memory:");
    Ingest ingest(store, "kitchen", log, [](const Change&) {});
    const auto room = kT0;  // the room's clock; the sites' read a day later
    auto state = [&](const std::string& site, kg::TimePoint sent) {
        return nlohmann::json{
            {"site", site}, {"camera", "k"}, {"online", true}, {"time", kg::iso8601_utc(sent)}}
            .dump();
    };
    // Two sites: too few to outvote one wrong clock.
    ingest.handle("kitchen/s1/cameras/k/state", state("s1", room + hours(24)), false, room);
    ingest.handle("kitchen/s2/cameras/k/state", state("s2", room + hours(24)), false, room);
    EXPECT_FALSE(ingest.clock().offset().has_value());
    // A retained state is hours old whatever the clocks: not counted.
    ingest.handle("kitchen/s3/cameras/k/state", state("s3", room - hours(5)), true, room);
    EXPECT_FALSE(ingest.clock().offset().has_value());
    ingest.handle("kitchen/s3/cameras/k/state", state("s3", room + hours(24) + seconds(1)), false, room);
    const auto off = ingest.clock().offset();
    ASSERT_TRUE(off.has_value());
    EXPECT_NEAR(off->seconds, 86400, 1);
    EXPECT_EQ(off->sites, 3u);
    // One site's own clock a year off does not move the median.
    ingest.handle("kitchen/s4/cameras/k/state", state("s4", room - hours(24 * 365)), false, room);
    EXPECT_NEAR(ingest.clock().offset()->seconds, 86400, 1);

    // The warning: checked at most once a minute, said at most once an hour.
    kg::monitor::ClockWatch watch(log);
    const auto t = std::chrono::steady_clock::time_point{} + hours(1);
    for (const auto* site : {"a", "b", "c"}) watch.heard(site, room + seconds(30), room, t);
    watch.heard("a", room + seconds(30), room, t + minutes(2));
    EXPECT_EQ(lines.str().find("the room's clock is"), std::string::npos) << "30 s is a delivery delay";
    for (const auto* site : {"a", "b", "c"}) watch.heard(site, room + hours(24), room, t + minutes(4));
    watch.heard("a", room + hours(24), room, t + minutes(5));
    watch.heard("a", room + hours(24), room, t + minutes(7));
    const auto text = lines.str();
    EXPECT_NE(text.find("the room's clock is 86400 s behind the clocks of 3 sites"), std::string::npos)
        << text;
    EXPECT_EQ(text.find("the room's clock is", text.find("the room's clock is") + 1), std::string::npos)
        << "once an hour: " << text;
}

// After the room's own outage the broker delivers what it kept as live messages, each as old as the
// outage: the room read its clock as that far ahead, and said so, while the backlog drained.
TEST(MonitorClock, ABacklogDeliveredAfterTheRoomsOutageIsNotTakenForItsClock) {
    using std::chrono::minutes;
    using std::chrono::seconds;
    std::ostringstream lines;
    auto log =
        std::make_shared<spdlog::logger>("ingest", std::make_shared<spdlog::sinks::ostream_sink_mt>(lines));
    kg::monitor::ClockWatch watch(log);
    const auto steady = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
    const std::vector<std::string> sites = {"a", "b", "c", "d", "e"};
    for (const auto& site : sites) watch.heard(site, kT0, kT0, steady);
    // Down 30 minutes; back, it takes 3 minutes to drain what the sites sent meanwhile and still
    // send, oldest first, while their clocks and its own agree.
    const auto back = kT0 + minutes(31);
    const auto drain = steady + minutes(31);
    for (int i = 0; i < 60; ++i) {
        for (std::size_t k = 0; k < sites.size(); ++k) {
            const auto arrives = drain + seconds(3 * i) + std::chrono::milliseconds(100 * k);
            const auto room_now = back + (arrives - drain);
            // Sent from a minute after the outage began until a second before it is drained.
            const auto sent = kT0 + minutes(1) + (room_now - seconds(1) - kT0 - minutes(1)) * i / 59;
            watch.heard(sites[k], sent, room_now, arrives);
        }
    }
    EXPECT_EQ(lines.str().find("the room's clock is"), std::string::npos) << lines.str();
    // Drained: the offset is the sites' newest message's, a delivery delay.
    const auto off = watch.offset(drain + minutes(3));
    ASSERT_TRUE(off.has_value());
    EXPECT_LT(std::abs(off->seconds), 120) << off->seconds;
}

// The room's clock two days behind refused every site's roll-ups as ahead, acknowledged to the
// broker and lost; set a year ahead, retention would delete every record as past its time. When
// most sites agree, their clock is the measure for both; one site, or two, cannot move it.
TEST(MonitorClock, RollUpsAndRetentionGoByTheSitesClocksWhenMostAgreeTheRoomsIsOff) {
    using std::chrono::hours;
    const auto day = hours(24);
    Store store(":memory:", Retention{.alerts = day * 10, .snapshots = day * 5, .rollups = day * 2});
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    const auto room = kT0;  // the room's clock; the sites' read two days later
    const auto sites = room + day * 2;
    auto state = [&](const std::string& site) {
        return json{{"site", site}, {"camera", "k"}, {"online", true}, {"time", kg::iso8601_utc(sites)}}
            .dump();
    };
    auto rollup_at = [](kg::TimePoint minute) {
        return json{
            {"site", "s1"}, {"sensor", "fridge"}, {"unit", "degC"}, {"minute", kg::iso8601_utc(minute)},
            {"min", 3.1},   {"mean", 3.4},        {"max", 3.9},     {"count", 6}}
            .dump();
    };
    auto kept = [&] {
        const auto r = store.rollups("s1", "2026-11-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z");
        return r && !r->empty() ? (*r)[0]["points"].size() : 0u;
    };
    ingest.handle("kitchen/s1/cameras/k/state", state("s1"), false, room);
    ingest.handle("kitchen/s2/cameras/k/state", state("s2"), false, room);
    ingest.handle("kitchen/s1/sensors/fridge/rollup", rollup_at(sites), false, room);
    EXPECT_EQ(ingest.counters().refused.load(), 1u) << "two sites are too few to outvote the room";
    EXPECT_EQ(kept(), 0u);
    ingest.handle("kitchen/s3/cameras/k/state", state("s3"), false, room);
    EXPECT_EQ(ingest.clock().later_of(room), sites);
    EXPECT_EQ(ingest.clock().earlier_of(room), room) << "the room is behind, not ahead";
    ingest.handle("kitchen/s1/sensors/fridge/rollup", rollup_at(sites), false, room);
    EXPECT_EQ(ingest.counters().refused.load(), 1u) << "the sites' minute, two days after the room's";
    EXPECT_EQ(kept(), 1u);
    // A site's minute far beyond the sites' clocks is still refused.
    ingest.handle("kitchen/s1/sensors/fridge/rollup", rollup_at(sites + day * 2), false, room);
    EXPECT_EQ(ingest.counters().refused.load(), 2u);
    EXPECT_EQ(kept(), 1u);

    // The room a year ahead: retention counts back from the sites' clocks, and keeps yesterday's
    // minute that the room's own clock would call a year old.
    kg::monitor::ClockWatch watch(kg::Logging::null_logger());
    const auto ahead = sites + day * 365;
    for (const auto* site : {"a", "b", "c"}) watch.heard(site, sites, ahead);
    EXPECT_EQ(watch.later_of(ahead), ahead);
    ASSERT_EQ(watch.earlier_of(ahead), sites);
    EXPECT_EQ(store.prune(watch.earlier_of(ahead), 500).rollups, 0);
    EXPECT_EQ(kept(), 1u);
    // Two sites of three a year off move the median, but do not agree with the third: the room's
    // own clock stands.
    kg::monitor::ClockWatch split(kg::Logging::null_logger());
    split.heard("a", room + day * 365, room);
    split.heard("b", room + day * 365, room);
    split.heard("c", room, room);
    EXPECT_NEAR(split.offset()->seconds, 86400.0 * 365, 1);
    EXPECT_EQ(split.later_of(room), room);
}

// A room whose clock came up a year ahead at a boot ran retention's pass at start before any site
// could outvote it, and deleted every record as past its time (review). Retention never counts
// from more than a day after the last message a site sent.
TEST(MonitorStore, RetentionCountsFromNoLaterThanADayAfterTheLastMessage) {
    using std::chrono::hours;
    const auto day = hours(24);
    Store store(":memory:", Retention{.alerts = day * 10, .snapshots = day * 5, .rollups = day * 2});
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    ingest.handle(
        "kitchen/s1/cameras/k/state",
        json{{"site", "s1"}, {"camera", "k"}, {"online", true}, {"time", kg::iso8601_utc(kT0)}}.dump(), false,
        kT0);
    store.add_rollup("s1", "fridge1", rollup(kg::iso8601_utc(kT0 - hours(1))));
    EXPECT_EQ(store.prune(kT0 + day * 365, 500).rollups, 0) << "a year ahead at the start";
    EXPECT_EQ(store.prune(kT0 + day * 3, 500).rollups, 0) << "counted from a day after the last message";
    ingest.handle(
        "kitchen/s1/cameras/k/state",
        json{{"site", "s1"}, {"camera", "k"}, {"online", true}, {"time", kg::iso8601_utc(kT0 + day * 3)}}
            .dump(),
        false, kT0 + day * 3);
    EXPECT_EQ(store.prune(kT0 + day * 3, 500).rollups, 1) << "the room ran on: its sites keep it recent";
}
