// kitchen-monitor's side of sequence numbers and replay (docs/mqtt.md): the per-site tracker
// (in order, gaps, out of order, baselines, lost ranges, the cap), its store (restart, new streams),
// ingest of stream/seq and `lost`, the replay requester, and the replay config.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/logging.hpp"
#include "common/sqlite_db.hpp"
#include "monitor/ingest.hpp"
#include "monitor/iso_time.hpp"
#include "monitor/monitor_config.hpp"
#include "monitor/replay.hpp"
#include "monitor/sequence.hpp"
#include "monitor/store.hpp"

using namespace kg::monitor;
using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const kg::TimePoint kT0 = *parse_iso8601_utc("2026-12-01T08:00:00.000Z");
const std::string kStream = "00c0ffee00c0ffee";
const std::string kOther = "0123456789abcdef";

std::vector<std::pair<std::int64_t, std::int64_t>> ranges(const StreamTrack& t) {
    std::vector<std::pair<std::int64_t, std::int64_t>> out;
    for (const auto& r : t.missing()) out.emplace_back(r.from, r.to);
    return out;
}

using Ranges = std::vector<std::pair<std::int64_t, std::int64_t>>;

// A numbered event in the gateway's format (docs/mqtt.md): event `n` of the stream is its seq.
json numbered_event(int n, const std::string& stream = kStream, const std::string& site = "sch-0101") {
    const std::string id = fmt::format("19ab3c0f2e1-{:016x}", n);
    return {{"message_id", id + ":start"},
            {"id", id},
            {"site", site},
            {"camera", "cooking"},
            {"check", "bin_lid"},
            {"label", "open"},
            {"severity", 2},
            {"state", "start"},
            {"start_time", "2026-12-01T07:59:50.000Z"},
            {"end_time", nullptr},
            {"time", "2026-12-01T07:59:55.000Z"},
            {"stream", stream},
            {"seq", n}};
}

// A numbered clip report in the gateway's format (docs/schemas/clip.schema.json).
json clip_report(const std::string& id, std::int64_t seq, const std::string& site = "sch-0101") {
    return {{"id", id},
            {"site", site},
            {"camera", "cooking"},
            {"start_time", "2026-12-01T07:59:50.000Z"},
            {"path", id + ".mp4"},
            {"duration_s", 10.0},
            {"bytes", 123456},
            {"stream", kStream},
            {"seq", seq}};
}

json gateway_info(std::int64_t seq, const std::string& stream = kStream) {
    return {{"site", "sch-0101"}, {"name", "No. 1"}, {"version", "0.2.0"}, {"stream", stream}, {"seq", seq}};
}

json lost(std::int64_t from, std::int64_t to, const std::string& stream = kStream) {
    return {{"site", "sch-0101"},
            {"stream", stream},
            {"from", from},
            {"to", to},
            {"reason", "not kept"},
            {"request_id", "r-1"},
            {"time", "2026-12-01T08:02:00.000Z"}};
}

struct TempDir {
    fs::path dir =
        fs::temp_directory_path() / ("kg-monitor-seq-" + std::to_string(getpid()) + "-" +
                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    TempDir() { fs::create_directories(dir); }
    ~TempDir() { fs::remove_all(dir); }
    std::string path(const std::string& name) const { return (dir / name).string(); }
};

// A logger whose lines the test reads.
struct CapturedLog {
    std::ostringstream text;
    std::shared_ptr<spdlog::logger> logger =
        std::make_shared<spdlog::logger>("ingest", std::make_shared<spdlog::sinks::ostream_sink_st>(text));
    std::string str() const { return text.str(); }
};

}  // namespace

TEST(MonitorSequence, InOrderAdvancesTheMarkAndKeepsNothing) {
    auto t = StreamTrack::from_message(kStream, 1);
    for (int n = 1; n <= 500; ++n) EXPECT_TRUE(t.receive(n, kT0));
    EXPECT_EQ(t.mark(), 500);
    EXPECT_EQ(t.missing_count(), 0);
    EXPECT_TRUE(t.missing().empty());
    EXPECT_FALSE(t.receive(499, kT0));  // a redelivered copy
    EXPECT_EQ(t.lost(), 0);
}

TEST(MonitorSequence, GapsAndOutOfOrder) {
    auto t = StreamTrack::from_message(kStream, 1);
    t.receive(1, kT0);
    t.receive(2, kT0);
    t.receive(6, kT0 + 1s);  // 3-5 missing from now
    t.receive(9, kT0 + 2s);  // 7-8 too
    EXPECT_EQ(t.mark(), 2);
    EXPECT_EQ(t.missing_count(), 5);
    EXPECT_EQ(ranges(t), (Ranges{{3, 5}, {7, 8}}));
    EXPECT_TRUE(t.receive(4, kT0 + 3s));  // splits its range; both halves keep when they went missing
    EXPECT_EQ(ranges(t), (Ranges{{3, 3}, {5, 5}, {7, 8}}));
    EXPECT_EQ(t.missing()[1].since, kT0 + 1s);
    EXPECT_FALSE(t.receive(4, kT0 + 3s));
    EXPECT_FALSE(t.receive(6, kT0 + 3s));  // received already, not missing
    t.receive(3, kT0 + 4s);
    EXPECT_EQ(t.mark(), 5 - 1);
    t.receive(5, kT0 + 4s);
    EXPECT_EQ(t.mark(), 6);
    t.receive(8, kT0);
    t.receive(7, kT0);
    EXPECT_EQ(t.mark(), 9);
    EXPECT_EQ(t.missing_count(), 0);
}

TEST(MonitorSequence, BaselinesOfANewStream) {
    // Seen first in the gateway message: everything up to its seq was delivered before the room watched.
    auto g = StreamTrack::from_gateway(kStream, 40);
    EXPECT_EQ(g.mark(), 40);
    EXPECT_FALSE(g.receive(38, kT0));  // a late copy from before
    EXPECT_TRUE(g.receive(41, kT0));
    EXPECT_EQ(g.missing_count(), 0);
    // Seen first in a numbered message: it starts just below it.
    auto m = StreamTrack::from_message(kStream, 17);
    EXPECT_EQ(m.mark(), 16);
    m.receive(17, kT0);
    EXPECT_EQ(m.mark(), 17);
    EXPECT_FALSE(m.receive(12, kT0));
    EXPECT_EQ(m.missing_count(), 0);
    // A gateway of a fresh outbox says 0.
    EXPECT_EQ(StreamTrack::from_gateway(kStream, 0).mark(), 0);
}

TEST(MonitorSequence, TheGatewaysSeqCountsAsSentAndTheTimersFollowIt) {
    auto t = StreamTrack::from_gateway(kStream, 10);
    t.receive(11, kT0);
    EXPECT_FALSE(t.sent_up_to(11, kT0));
    EXPECT_TRUE(t.sent_up_to(14, kT0));  // the tail of the stream: 12-14 never came
    EXPECT_EQ(ranges(t), (Ranges{{12, 14}}));
    EXPECT_TRUE(t.due(kT0 + 59s, 60s, 5min).empty());
    ASSERT_EQ(t.due(kT0 + 60s, 60s, 5min).size(), 1u);
    t.asked(12, 14, kT0 + 60s);
    EXPECT_TRUE(t.due(kT0 + 61s, 60s, 5min).empty());
    t.receive(13, kT0 + 62s);  // one came: the rest is still asked for, on the same schedule
    EXPECT_EQ(ranges(t), (Ranges{{12, 12}, {14, 14}}));
    EXPECT_TRUE(t.due(kT0 + 60s + 4min, 60s, 5min).empty());
    EXPECT_EQ(t.due(kT0 + 60s + 5min, 60s, 5min).size(), 2u);
}

TEST(MonitorSequence, ALostRangeIsSettledAndCountedOnce) {
    auto t = StreamTrack::from_message(kStream, 1);
    t.receive(1, kT0);
    t.receive(2, kT0);
    t.receive(10, kT0);
    t.receive(6, kT0);
    EXPECT_EQ(ranges(t), (Ranges{{3, 5}, {7, 9}}));
    EXPECT_EQ(t.lose(4, 8, kT0), 4);  // 4, 5, 7, 8: 6 was received, it is not lost
    EXPECT_EQ(t.lost(), 4);
    EXPECT_EQ(ranges(t), (Ranges{{3, 3}, {9, 9}}));
    EXPECT_EQ(t.lose(4, 8, kT0), 0);  // the same answer again (a redelivery) counts nothing
    EXPECT_EQ(t.lose(1, 3, kT0), 1);
    EXPECT_EQ(t.mark(), 8);
    // Numbers above what was known sent: the gateway assigned them, so they are sent and lost.
    EXPECT_EQ(t.lose(9, 12, kT0), 3);  // 9, 11, 12: 10 arrived
    EXPECT_EQ(t.lost(), 8);
    EXPECT_EQ(t.mark(), 12);
    EXPECT_EQ(t.missing_count(), 0);
}

TEST(MonitorSequence, TheNumbersCountedLostAreNamedExactly) {
    auto t = StreamTrack::from_message(kStream, 1);
    for (std::int64_t n : {1, 2, 6, 10}) t.receive(n, kT0);  // 3-5 and 7-9 missing
    t.lose(4, 8, kT0);
    EXPECT_EQ(t.newly_lost(), (std::vector<NumberRange>{{4, 5}, {7, 8}}));  // not 6, which arrived
    t.give_up_missed_before(kT0);
    EXPECT_EQ(t.newly_lost(), (std::vector<NumberRange>{{4, 5}, {7, 8}, {3, 3}, {9, 9}}));
    EXPECT_EQ(t.lost(), 6);
    t.found_lost(1);
    EXPECT_EQ(t.lost(), 5);
    t.found_lost(10);  // never below nothing
    EXPECT_EQ(t.lost(), 0);
    // The cap drops the oldest missing numbers, skipping those that arrived between them.
    auto s = StreamTrack::from_message(kStream, 1);
    for (std::int64_t n = 1; n <= 3 * StreamTrack::kMaxMissing; n += 2) s.receive(n, kT0);
    std::int64_t counted = 0;
    for (const auto& r : s.newly_lost()) {
        EXPECT_EQ(r.from % 2, 0) << r.from;  // the even numbers were missing, the odd ones arrived
        EXPECT_EQ(r.from, r.to);
        ++counted;
    }
    EXPECT_EQ(counted, s.lost());
    EXPECT_EQ(s.newly_lost().front().from, 2);
    EXPECT_EQ(s.newly_lost().back().from, 9998);
}

TEST(MonitorSequence, AFarJumpIsCappedNotAllocated) {
    auto t = StreamTrack::from_message(kStream, 1);
    t.receive(1, kT0);
    std::optional<GivenUp> gone;
    t.receive(1'000'000'000'000, kT0, &gone);
    EXPECT_EQ(t.missing_count(), StreamTrack::kMaxMissing);
    EXPECT_EQ(t.missing().size(), 1u);  // one range, whatever its length
    ASSERT_TRUE(gone);
    EXPECT_EQ(gone->from, 2);
    EXPECT_EQ(gone->count, 1'000'000'000'000 - 2 - StreamTrack::kMaxMissing);
    EXPECT_EQ(gone->to, gone->from + gone->count - 1);
    EXPECT_EQ(t.lost(), gone->count);
    EXPECT_EQ(t.mark(), gone->to);
    EXPECT_EQ(ranges(t), (Ranges{{gone->to + 1, 1'000'000'000'000 - 1}}));
    // Many small gaps: the oldest go first.
    auto s = StreamTrack::from_message(kStream, 1);
    for (std::int64_t n = 1; n <= 3 * StreamTrack::kMaxMissing; n += 2) s.receive(n, kT0);
    EXPECT_EQ(s.missing_count(), StreamTrack::kMaxMissing);
    // 14999 even numbers missing: the lowest 4999 (2-9998) go.
    EXPECT_EQ(s.missing().front().from, 10000);
    EXPECT_EQ(s.lost(), 4999);
    EXPECT_EQ(s.mark(), 9999);
}

TEST(MonitorSequence, RequestsCoverCloseRangesOnceAndFarOnesApart) {
    const auto r = [](std::int64_t from, std::int64_t to) {
        return MissingRange{from, to, kT0, std::nullopt};
    };
    EXPECT_EQ(plan_requests({r(41, 45), r(50, 57)}), (std::vector<ReplayRange>{{41, 57}}));
    EXPECT_EQ(plan_requests({r(41, 45), r(46 + kMaxResentInRequest, 200)}),
              (std::vector<ReplayRange>{{41, 200}}));
    EXPECT_EQ(plan_requests({r(41, 45), r(47 + kMaxResentInRequest, 200)}),
              (std::vector<ReplayRange>{{41, 45}, {47 + kMaxResentInRequest, 200}}));
    // No request names more than a gateway takes.
    EXPECT_EQ(plan_requests({r(1, 9000), r(9050, 12000)}),
              (std::vector<ReplayRange>{{1, 9000}, {9050, 12000}}));
    EXPECT_EQ(plan_requests({r(1, 25000)}),
              (std::vector<ReplayRange>{{1, 10000}, {10001, 20000}, {20001, 25000}}));
    EXPECT_TRUE(plan_requests({}).empty());
}

TEST(MonitorSequenceStore, SurvivesARestartAndStartsAfreshForANewOutbox) {
    TempDir tmp;
    const auto db = tmp.path("monitor.db");
    {
        Store store(db);
        EXPECT_EQ(store.set_gateway_info("sch-0101", gateway_info(3), kT0, Sequence{kStream, 3}).track.kind,
                  TrackResult::Kind::started);
        store.track_received("sch-0101", {kStream, 4}, kT0);
        const auto r = store.track_received("sch-0101", {kStream, 9}, kT0 + 1s);  // 5-8 missing
        EXPECT_TRUE(r.changed);
        store.track_received("sch-0101", {kStream, 7}, kT0 + 1s);
        store.mark_asked("sch-0101", kStream, 5, 8, kT0 + 61s);
    }
    Store store(db);  // the monitor restarted
    auto t = store.stream_track("sch-0101");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->mark(), 4);
    EXPECT_EQ(ranges(*t), (Ranges{{5, 6}, {8, 8}}));
    EXPECT_EQ(t->missing()[0].since, kT0 + 1s);
    EXPECT_EQ(t->missing()[0].asked_at, kT0 + 61s);
    EXPECT_TRUE(store.due_replays(kT0 + 62s, 60s, 5min).empty());  // asked a moment ago
    const auto due = store.due_replays(kT0 + 61s + 5min, 60s, 5min);
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(due[0].site, "sch-0101");
    EXPECT_EQ(due[0].stream, kStream);
    EXPECT_EQ(due[0].ranges.size(), 2u);
    EXPECT_EQ(store.track_lost("sch-0101", kStream, 8, 8, kT0 + 400s).lost, 1);
    auto sites = store.sites();
    EXPECT_EQ(sites[0]["missing_messages"], 2);
    EXPECT_EQ(sites[0]["lost_messages"], 1);
    EXPECT_EQ(sites[0]["stream"], kStream);

    // The site's outbox was replaced: a new stream, numbered from 1. The old stream's missing
    // numbers went with its outbox: counted as lost, with the one lost before.
    const auto r = store.track_received("sch-0101", {kOther, 1}, kT0 + 500s);
    EXPECT_EQ(r.kind, TrackResult::Kind::started);
    EXPECT_EQ(r.replaced_stream, kStream);
    EXPECT_EQ(r.replaced_missing, 2);
    sites = store.sites();
    EXPECT_EQ(sites[0]["missing_messages"], 0);
    EXPECT_EQ(sites[0]["lost_messages"], 3);
    EXPECT_EQ(sites[0]["stream"], kOther);
    EXPECT_TRUE(store.due_replays(kT0 + 1h, 60s, 5min).empty());
    // A late message of the old outbox (the broker still had it) does not switch back; its number,
    // counted lost at the replacement, is not any more.
    EXPECT_EQ(store.track_received("sch-0101", {kStream, 6}, kT0 + 501s).kind, TrackResult::Kind::ignored);
    EXPECT_EQ(store.stream_track("sch-0101")->stream(), kOther);
    EXPECT_EQ(store.stream_track("sch-0101")->lost(), 2);
    // A lost answer about a stream the room does not follow changes nothing.
    EXPECT_EQ(store.track_lost("sch-0101", "ffffffffffffffff", 1, 5, kT0).kind, TrackResult::Kind::ignored);
    EXPECT_EQ(store.stream_track("sch-0101")->lost(), 2);
}

TEST(MonitorSequenceStore, ANewStreamOfAFollowedSiteStartsFromOneAndTheOldOnesMissingAreLost) {
    Store store(":memory:");
    CapturedLog log;
    Ingest ingest(store, "kitchen", log.logger, [](const Change&) {});
    // A site the room has never followed: what came before was delivered before it watched.
    ingest.handle("kitchen/sch-0101/events", numbered_event(7).dump(), false, kT0);
    ingest.handle("kitchen/sch-0101/events", numbered_event(9).dump(), false, kT0);
    EXPECT_EQ(store.stream_track("sch-0101")->mark(), 7);
    EXPECT_EQ(ranges(*store.stream_track("sch-0101")), (Ranges{{8, 8}}));
    // Its outbox is moved aside as corrupt; events 1-5 of the new one were acknowledged and the
    // broker lost them: the room sees 6 first.
    ingest.handle("kitchen/sch-0101/events", numbered_event(16, kOther).dump(), false, kT0 + 10s);
    const auto t = store.stream_track("sch-0101");
    EXPECT_EQ(t->stream(), kOther);
    EXPECT_EQ(ranges(*t), (Ranges{{1, 15}}));
    EXPECT_EQ(t->lost(), 1);  // 8 of the old stream
    EXPECT_EQ(ingest.counters().lost_numbers.load(), 1u);
    EXPECT_NE(log.str().find("stream 00c0ffee00c0ffee is no longer followed and its 1 missing numbers will "
                             "never come: counted as lost"),
              std::string::npos)
        << log.str();
    const auto due = store.due_replays(kT0 + 80s, 60s, 5min);
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(due[0].stream, kOther);
    EXPECT_EQ(due[0].ranges.front().from, 1);
    EXPECT_EQ(store.sites()[0]["lost_messages"], 1);
    EXPECT_EQ(store.sites()[0]["missing_messages"], 15);

    // Replaced again, first seen through its gateway message: everything up to its seq is missing.
    ingest.handle("kitchen/sch-0101/gateway", gateway_info(4, "ffffffffffffffff").dump(), true, kT0 + 20s);
    EXPECT_EQ(ranges(*store.stream_track("sch-0101")), (Ranges{{1, 4}}));
    EXPECT_EQ(store.stream_track("sch-0101")->lost(), 16);
    EXPECT_EQ(ingest.counters().lost_numbers.load(), 16u);
}

// A message of event `id` (update or end) numbered `seq` of `stream`.
json numbered_message(const std::string& id, const std::string& state, int seq, const std::string& stream) {
    json j = numbered_event(seq, stream);
    j["id"] = id;
    j["message_id"] = state == "end" ? id + ":end" : fmt::format("{}:update-{}", id, seq);
    j["state"] = state;
    if (state == "end") {
        j["end_time"] = "2026-12-01T08:05:00.000Z";
        j["end_reason"] = "cleared";
    }
    return j;
}

TEST(MonitorSequenceIngest, TheAlertsAReplacedOutboxLeftOpenAreEndedByTheRoom) {
    Store store(":memory:");
    store.set_notify_routes(
        [](const EventMessage&, const std::string&) { return std::vector<std::string>{"duty"}; });
    std::vector<Change> changes;
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(),
                  [&](const Change& c) { changes.push_back(c); });
    const std::string open_one = fmt::format("19ab3c0f2e1-{:016x}", 1);
    const std::string cleared = fmt::format("19ab3c0f2e1-{:016x}", 2);
    ingest.handle("kitchen/sch-0101/events", numbered_event(1).dump(), false, kT0);
    ingest.handle("kitchen/sch-0101/events", numbered_event(2).dump(), false, kT0);
    ingest.handle("kitchen/sch-0101/events", numbered_message(cleared, "end", 3, kStream).dump(), false, kT0);
    ASSERT_EQ(store.alert(open_one)->condition, "start");
    // Its outbox is moved aside as corrupt: the new stream's first message raises an alert of its own.
    changes.clear();
    const std::string fresh = "19ab3c0f2e2-00000000000000aa";
    json first = numbered_event(1, kOther);
    first["id"] = fresh;
    first["message_id"] = fresh + ":start";
    ingest.handle("kitchen/sch-0101/events", first.dump(), false, kT0 + 60s);
    const auto ended = store.alert(open_one);
    EXPECT_EQ(ended->condition, "end");
    EXPECT_EQ(ended->end_reason, std::string(kEndOutboxReplaced));
    EXPECT_EQ(ended->end_time, kg::iso8601_utc(kT0 + 60s));
    EXPECT_EQ(store.alert(cleared)->end_reason, "cleared");  // ended by its gateway: left as it was
    EXPECT_EQ(store.alert(fresh)->condition, "start");       // the new stream's own
    EXPECT_TRUE(std::any_of(changes.begin(), changes.end(), [&](const Change& c) {
        return c.kind == Change::Kind::alert && c.event_id == open_one;
    }));
    // Its end is notified once, like an end the gateway sent.
    int ends = 0;
    while (const auto n = store.take_notification("duty", kT0 + 61s, 1min)) {
        if (n->event_id == open_one && n->kind == kNotifyEnd) ++ends;
        store.notification_done(n->id);
    }
    EXPECT_EQ(ends, 1);

    // A late update of the old stream (the broker still held it) does not open it again; a late end of
    // the gateway's own replaces the room's.
    ingest.handle("kitchen/sch-0101/events", numbered_message(open_one, "update", 4, kStream).dump(), false,
                  kT0 + 70s);
    EXPECT_EQ(store.alert(open_one)->condition, "end");
    EXPECT_EQ(store.alert(open_one)->end_reason, std::string(kEndOutboxReplaced));
    ingest.handle("kitchen/sch-0101/events", numbered_message(open_one, "end", 5, kStream).dump(), false,
                  kT0 + 71s);
    EXPECT_EQ(store.alert(open_one)->end_reason, "cleared");
    EXPECT_EQ(store.alert(open_one)->end_time, "2026-12-01T08:05:00.000Z");
    // ...and is not notified again: the room's end went out (and its row is gone) above.
    while (const auto n = store.take_notification("duty", kT0 + 72s, 1min)) {
        EXPECT_FALSE(n->event_id == open_one && n->kind == kNotifyEnd) << "a second end of " << open_one;
        store.notification_done(n->id);
    }
    // The old stream's start of an alert the room has never seen (another instance of a share group
    // held it): nothing will end it either, so it is stored ended.
    const std::string late = fmt::format("19ab3c0f2e1-{:016x}", 6);
    ingest.handle("kitchen/sch-0101/events", numbered_event(6).dump(), false, kT0 + 80s);
    ASSERT_TRUE(store.alert(late));
    EXPECT_EQ(store.alert(late)->condition, "end");
    EXPECT_EQ(store.alert(late)->end_reason, std::string(kEndOutboxReplaced));
    // A site's first stream (a monitor deployed after its gateway) ends nothing.
    ingest.handle("kitchen/sch-0202/events", numbered_event(7, kStream, "sch-0202").dump(), false, kT0);
    EXPECT_EQ(store.alert(fmt::format("19ab3c0f2e1-{:016x}", 7))->condition, "start");
}

// The documented mend (config.md): an outbox folder that could not be opened made the gateway run
// in memory, a new stream; mended, the gateway restarts on its old outbox. The room kept that stream
// retired for good: each new alert of it was stored ended as `outbox replaced` and its losses were
// never asked for (the 55th session's review). Its `gateway` message makes it current again.
TEST(MonitorSequenceIngest, AStreamWhoseOutboxCameBackIsFollowedAgain) {
    Store store(":memory:");
    CapturedLog log;
    Ingest ingest(store, "kitchen", log.logger, [](const Change&) {});
    const auto id = [](int n) { return fmt::format("19ab3c0f2e1-{:016x}", n); };
    const auto run = [](const std::string& stream, std::int64_t seq, const std::string& started_at) {
        auto g = gateway_info(seq, stream);
        g["started_at"] = started_at;
        return g.dump();
    };
    ingest.handle("kitchen/sch-0101/gateway", run(kStream, 0, "2026-12-01T07:00:00.000Z"), true, kT0);
    for (int n = 1; n <= 3; ++n)
        ingest.handle("kitchen/sch-0101/events", numbered_event(n).dump(), false, kT0);
    ingest.handle("kitchen/sch-0101/gateway", run(kStream, 3, "2026-12-01T07:00:00.000Z"), false, kT0 + 1s);
    // The run in memory: its own stream, one alert.
    ingest.handle("kitchen/sch-0101/gateway", run(kOther, 0, "2026-12-01T08:00:30.000Z"), true, kT0 + 60s);
    json in_memory = numbered_event(1, kOther);
    in_memory["id"] = "19ab3c0f2e2-00000000000000aa";
    in_memory["message_id"] = "19ab3c0f2e2-00000000000000aa:start";
    ingest.handle("kitchen/sch-0101/events", in_memory.dump(), false, kT0 + 61s);
    EXPECT_EQ(store.alert(id(1))->end_reason, std::string(kEndOutboxReplaced));
    // A late copy of the old stream's last gateway message (a share group's instance lagging, a
    // broker node's retained copy) is of the run before: it changes nothing (the review of the fix).
    ingest.handle("kitchen/sch-0101/gateway", run(kStream, 3, "2026-12-01T07:00:00.000Z"), false, kT0 + 62s);
    EXPECT_EQ(store.sites()[0]["stream"], kOther);
    EXPECT_EQ(store.alert("19ab3c0f2e2-00000000000000aa")->condition, "start");
    // Back on the old outbox, a run begun after: its gateway message says every number up to 3 was sent.
    ingest.handle("kitchen/sch-0101/gateway", run(kStream, 3, "2026-12-01T08:01:50.000Z"), true, kT0 + 120s);
    EXPECT_EQ(store.sites()[0]["stream"], kStream);
    EXPECT_EQ(store.alert("19ab3c0f2e2-00000000000000aa")->end_reason, std::string(kEndOutboxReplaced));
    EXPECT_NE(log.str().find("sch-0101: stream 00c0ffee00c0ffee is back"), std::string::npos) << log.str();
    // Its new alert is open, and a number the broker lost (4) is missing, to be asked for.
    ingest.handle("kitchen/sch-0101/events", numbered_event(5).dump(), false, kT0 + 130s);
    EXPECT_EQ(store.alert(id(5))->condition, "start");
    EXPECT_EQ(ranges(*store.stream_track("sch-0101")), (Ranges{{4, 4}}));
    EXPECT_EQ(store.sites()[0]["missing_messages"], 1);
    // A late gateway message of the in-memory run does not switch back.
    ingest.handle("kitchen/sch-0101/gateway", run(kOther, 1, "2026-12-01T08:00:30.000Z"), false, kT0 + 131s);
    EXPECT_EQ(store.sites()[0]["stream"], kStream);
    EXPECT_EQ(store.alert(id(5))->condition, "start");
}

// What a site sends goes into notifications and the dashboard: a name of kilobytes (a robot refuses
// the whole message, and the duty group's queue waited a day behind it) is stored shortened, with
// its control characters replaced, and said in the log: the alert itself is never dropped for it. A
// severity that is 1 only once cut to an int, or 0, is refused by name.
TEST(MonitorSequenceIngest, AnOverlongNameIsShortenedAndASeverityOutOfRangeRefused) {
    Store store(":memory:");
    CapturedLog log;
    Ingest ingest(store, "kitchen", log.logger, [](const Change&) {});
    const auto stored = [&](int n, const char* key, const json& value) {
        auto e = numbered_event(n);
        e[key] = value;
        ingest.handle("kitchen/sch-0101/events", e.dump(), false, kT0);
        return store.alert(e["id"].get<std::string>());
    };
    const auto label = stored(1, "label", std::string(5000, 'x'));
    ASSERT_TRUE(label);
    EXPECT_EQ(label->label, std::string(125, 'x') + "...");
    EXPECT_EQ(stored(2, "check", "mask\n**urgent**")->check, "mask **urgent**");
    auto unit = numbered_event(3);
    unit.erase("camera");
    unit["sensor"] = "fridge";
    unit["value"] = 9.5;
    unit["unit"] = "\u00b0" + std::string(40, 'C');  // cut after the degree sign, not inside it
    ingest.handle("kitchen/sch-0101/events", unit.dump(), false, kT0);
    EXPECT_EQ(store.alert(unit["id"].get<std::string>())->unit, "\u00b0" + std::string(27, 'C') + "...");
    // 136 bytes; the cut at 125 would fall inside the second character: it goes before it.
    const auto chinese = std::string(120, 'x') + "\u672a\u6234" + std::string(10, 'y');
    EXPECT_EQ(stored(4, "label", chinese)->label, std::string(120, 'x') + "\u672a...");
    EXPECT_FALSE(stored(5, "severity", 4294967297ULL));
    EXPECT_FALSE(stored(6, "severity", -4294967295LL));
    EXPECT_FALSE(stored(7, "severity", 0));
    EXPECT_EQ(stored(8, "label", std::string(128, 'x'))->label.size(), 128u);  // as long as a name may be
    EXPECT_EQ(stored(9, "check", "model:" + std::string(64, 'm'))->check, "model:" + std::string(64, 'm'));
    EXPECT_EQ(ingest.counters().refused.load(), 3u);
    EXPECT_NE(
        log.str().find("label of alert 19ab3c0f2e1-0000000000000001 stored shortened or with its control "
                       "characters replaced"),
        std::string::npos)
        << log.str();
    EXPECT_NE(log.str().find("severity missing or not 1, 2 or 3"), std::string::npos);
}

TEST(MonitorSequenceIngest, FieldsAreReadAndAWrongOneIsLoggedWhileTheMessageIsStored) {
    Store store(":memory:");
    CapturedLog log;
    int site_changes = 0;
    Ingest ingest(store, "kitchen", log.logger, [&](const Change& c) {
        if (c.kind == Change::Kind::site) ++site_changes;
    });
    ingest.handle("kitchen/sch-0101/gateway", gateway_info(2).dump(), true, kT0);
    ingest.handle("kitchen/sch-0101/events", numbered_event(3).dump(), false, kT0);
    ingest.handle("kitchen/sch-0101/events", numbered_event(6).dump(), false, kT0);
    const std::string three = "19ab3c0f2e1-0000000000000003";
    ingest.handle("kitchen/sch-0101/events/" + three + "/clip", clip_report(three, 5).dump(), false, kT0);
    EXPECT_EQ(ranges(*store.stream_track("sch-0101")), (Ranges{{4, 4}}));

    auto wrong = numbered_event(7);
    wrong["seq"] = "7";
    ingest.handle("kitchen/sch-0101/events", wrong.dump(), false, kT0);
    auto bad_stream = numbered_event(8);
    bad_stream["stream"] = "C0FFEE";
    ingest.handle("kitchen/sch-0101/events", bad_stream.dump(), false, kT0);
    auto negative = numbered_event(9);
    negative["seq"] = -1;
    ingest.handle("kitchen/sch-0101/events", negative.dump(), false, kT0);
    EXPECT_EQ(ingest.counters().created.load(), 5u);  // stored as today
    EXPECT_EQ(ingest.counters().refused.load(), 0u);
    EXPECT_NE(
        log.str().find("sequence number on kitchen/sch-0101/events ignored (the message is kept): 'seq' is "
                       "\"7\", not a whole number"),
        std::string::npos)
        << log.str();
    EXPECT_NE(log.str().find("'stream' is \"C0FFEE\", not 16 lowercase hex digits"), std::string::npos);
    EXPECT_NE(log.str().find("'seq' is -1"), std::string::npos);
    EXPECT_EQ(store.stream_track("sch-0101")->top(), 6);

    // A message refused for its body was still delivered: its number is not asked for.
    auto refused = numbered_event(4);
    refused.erase("severity");
    ingest.handle("kitchen/sch-0101/events", refused.dump(), false, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 1u);
    EXPECT_EQ(store.stream_track("sch-0101")->missing_count(), 0);
    EXPECT_GT(site_changes, 0);

    // An older gateway: no fields, nothing followed, no complaint.
    ingest.handle("kitchen/sch-0202/gateway", R"({"site":"sch-0202","version":"0.1.0"})", true, kT0);
    auto old = numbered_event(1, kStream, "sch-0202");
    old.erase("stream");
    old.erase("seq");
    ingest.handle("kitchen/sch-0202/events", old.dump(), false, kT0);
    EXPECT_FALSE(store.stream_track("sch-0202"));
    const auto sites = store.sites();
    ASSERT_EQ(sites[1]["site"], "sch-0202");
    EXPECT_TRUE(sites[1]["missing_messages"].is_null() && sites[1]["lost_messages"].is_null());
    EXPECT_EQ(log.str().find("kitchen/sch-0202"), std::string::npos) << log.str();
}

TEST(MonitorSequenceIngest, AReplayedMessageFillsTheGapWithoutCountingTheAlertTwice) {
    Store store(":memory:");
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    ingest.handle("kitchen/sch-0101/events", numbered_event(1).dump(), false, kT0);
    // Event 2 was stored without its number: an older monitor that crashed between the two (this
    // one records both in one transaction), or one that did not track sequences.
    std::string error;
    const auto two = parse_event("sch-0101", numbered_event(2).dump(), error);
    ASSERT_TRUE(two) << error;
    EXPECT_EQ(store.add_event(*two, kT0).outcome, IngestOutcome::created);
    ingest.handle("kitchen/sch-0101/events", numbered_event(3).dump(), false, kT0);
    EXPECT_EQ(store.stream_track("sch-0101")->missing_count(), 1);
    // The gateway's replay: the same message, deduplicated, and the gap is closed.
    ingest.handle("kitchen/sch-0101/events", numbered_event(2).dump(), false, kT0 + 70s);
    ingest.handle("kitchen/sch-0101/events", numbered_event(2).dump(), false, kT0 + 71s);
    EXPECT_EQ(ingest.counters().duplicates.load(), 2u);
    EXPECT_EQ(store.count_alerts(), 3);
    EXPECT_EQ(store.alert(fmt::format("19ab3c0f2e1-{:016x}", 2))->messages, 1);
    EXPECT_EQ(store.stream_track("sch-0101")->missing_count(), 0);
    EXPECT_EQ(store.stream_track("sch-0101")->mark(), 3);
}

// A new canteen whose first messages the broker lost after acknowledging them (one without
// persistence restarted while the room was away): the room first hears of its stream through a
// gateway message at seq 4. Counted from 4, as for a site that ran before the room, the four were
// lost without a gap shown. The gateway says when its stream began; begun after the room started
// watching, it is followed from 1, and 1-4 are asked for.
TEST(MonitorSequenceIngest, ANewSitesStreamBegunAfterTheRoomIsFollowedFromItsFirstNumber) {
    TempDir tmp;
    const auto db = tmp.path("monitor.db");
    {
        Store opened(db);
        EXPECT_FALSE(opened.watching_since());      // a room not yet subscribed watches nothing
        EXPECT_EQ(opened.note_watching(kT0), kT0);  // the broker granted the events
    }
    Store store(db);  // a later start: it has watched since the first
    EXPECT_EQ(store.watching_since(), kT0);
    EXPECT_EQ(store.note_watching(kT0 + 24h), kT0);  // once and for all
    CapturedLog log;
    Ingest ingest(store, "kitchen", log.logger, [](const Change&) {});
    auto begun_after = gateway_info(4);
    begun_after["stream_started"] = "2026-12-01T09:00:00.000Z";
    ingest.handle("kitchen/sch-0101/gateway", begun_after.dump(), true, kT0 + 25h);
    auto t = store.stream_track("sch-0101");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->mark(), 0);
    EXPECT_EQ(ranges(*t), (Ranges{{1, 4}}));
    const auto due = store.due_replays(kT0 + 25h + 61s, 60s, 5min);
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(plan_requests(due[0].ranges), (std::vector<ReplayRange>{{1, 4}}));
    EXPECT_NE(log.str().find("sch-0101: following stream 00c0ffee00c0ffee from its first number"),
              std::string::npos)
        << log.str();
    // The replay brings them; the gap closes.
    for (int n = 1; n <= 4; ++n)
        ingest.handle("kitchen/sch-0101/events", numbered_event(n).dump(), false, kT0 + 25h + 62s);
    EXPECT_EQ(store.stream_track("sch-0101")->missing_count(), 0);
    EXPECT_EQ(store.count_alerts(), 4);

    // A site whose stream began before the room watched (a room deployed after its gateways): what
    // came before was delivered before, as always; not a week of history asked for.
    auto begun_before = gateway_info(500);
    begun_before["site"] = "sch-0202";
    begun_before["stream_started"] = "2026-11-20T09:00:00.000Z";
    ingest.handle("kitchen/sch-0202/gateway", begun_before.dump(), true, kT0 + 25h);
    EXPECT_EQ(store.stream_track("sch-0202")->mark(), 500);
    EXPECT_EQ(store.stream_track("sch-0202")->missing_count(), 0);
    // A gateway of a version that does not say: as before.
    auto unsaid = gateway_info(7);
    unsaid["site"] = "sch-0303";
    ingest.handle("kitchen/sch-0303/gateway", unsaid.dump(), true, kT0 + 25h);
    EXPECT_EQ(store.stream_track("sch-0303")->mark(), 7);
    // Not a time: that field is not taken, said, and the rest of the message is (as before).
    auto garbled = gateway_info(3);
    garbled["site"] = "sch-0404";
    garbled["stream_started"] = "yesterday";
    ingest.handle("kitchen/sch-0404/gateway", garbled.dump(), true, kT0 + 25h);
    EXPECT_NE(log.str().find("'stream_started' on kitchen/sch-0404/gateway ignored (the message is kept): "
                             "\"yesterday\" is not a time"),
              std::string::npos)
        << log.str();
    EXPECT_EQ(store.stream_track("sch-0404")->mark(), 3);
    EXPECT_EQ(ingest.counters().refused.load(), 0u);
}

// The same site, heard of first through an event (a broker that hands over retained messages
// after live ones: EMQX, a cluster, a bridge): the event does not say when its stream began, so
// the numbers below it are taken as delivered only until the site's gateway message, which does.
TEST(MonitorSequenceIngest, ANewSiteHeardOfThroughAnEventIsFollowedFromOneOnceItsGatewayMessageSaysSo) {
    Store store(":memory:");
    ASSERT_EQ(store.note_watching(kT0), kT0);
    CapturedLog log;
    Ingest ingest(store, "kitchen", log.logger, [](const Change&) {});
    ingest.handle("kitchen/sch-0101/events", numbered_event(5).dump(), false, kT0 + 25h);
    EXPECT_EQ(store.stream_track("sch-0101")->mark(), 5);
    auto begun_after = gateway_info(5);
    begun_after["stream_started"] = "2026-12-01T09:00:00.000Z";
    ingest.handle("kitchen/sch-0101/gateway", begun_after.dump(), true, kT0 + 25h + 1s);
    auto t = store.stream_track("sch-0101");
    EXPECT_EQ(t->mark(), 0);
    EXPECT_EQ(ranges(*t), (Ranges{{1, 4}}));
    EXPECT_NE(
        log.str().find("sch-0101: stream 00c0ffee00c0ffee began after the room started following sites"),
        std::string::npos)
        << log.str();
    // Said once: the next gateway message changes nothing.
    ingest.handle("kitchen/sch-0101/gateway", begun_after.dump(), false, kT0 + 25h + 2s);
    EXPECT_EQ(ranges(*store.stream_track("sch-0101")), (Ranges{{1, 4}}));
    for (int n = 1; n <= 4; ++n)
        ingest.handle("kitchen/sch-0101/events", numbered_event(n).dump(), false, kT0 + 25h + 70s);
    EXPECT_EQ(store.stream_track("sch-0101")->missing_count(), 0);
    EXPECT_EQ(store.stream_track("sch-0101")->mark(), 5);

    // A site whose stream began before the room watched, heard of through an event: stays as it was.
    ingest.handle("kitchen/sch-0202/events", numbered_event(9, kStream, "sch-0202").dump(), false, kT0 + 25h);
    auto older = gateway_info(9);
    older["site"] = "sch-0202";
    older["stream_started"] = "2026-11-20T09:00:00.000Z";
    ingest.handle("kitchen/sch-0202/gateway", older.dump(), true, kT0 + 25h + 1s);
    EXPECT_EQ(store.stream_track("sch-0202")->mark(), 9);
    EXPECT_EQ(store.stream_track("sch-0202")->missing_count(), 0);
}

// A database file the monitor may only read (monitor.md), made by a version before the room's
// start was kept: it opens as before, and sites are followed from the number first heard.
TEST(MonitorSequenceStore, AReadOnlyDatabaseFromBeforeOpensWithoutAStartOfWatching) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root, to become nobody for the read-only open";
    TempDir tmp;
    const auto db = tmp.path("monitor.db");
    {
        Store made(db);
        made.note_watching(kT0);
    }
    kg::sqlite::Db(db, {.label = "earlier"}).exec("DROP TABLE room; DROP TABLE seq_assumed");
    fs::permissions(db, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
    fs::permissions(tmp.dir, fs::perms::all);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
        try {
            Store store(db);
            _exit(store.watching_since() || store.note_watching(kT0 + 1h) ? 2 : 0);
        } catch (const std::exception&) {
            _exit(1);
        }
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "1: it did not open; 2: it kept a start of watching; 3: setuid";
}

TEST(MonitorSequenceIngest, AClipReportAheadOfItsLostStartWaitsForItAndIsAttached) {
    Store store(":memory:", Retention{.alerts = std::nullopt, .snapshots = 24h, .rollups = std::nullopt});
    CapturedLog log;
    Ingest ingest(store, "kitchen", log.logger, [](const Change&) {});
    const std::string one = fmt::format("19ab3c0f2e1-{:016x}", 1);
    const auto clip = [&](std::int64_t seq, const std::string& id, const std::string& site = "sch-0101") {
        return std::pair{fmt::format("kitchen/{}/events/{}/clip", site, id),
                         clip_report(id, seq, site).dump()};
    };
    ingest.handle("kitchen/sch-0101/gateway", gateway_info(0).dump(), true, kT0);
    // Start 1 was acknowledged by the broker and lost; its clip report, 2, arrives.
    const auto [topic, payload] = clip(2, one);
    ingest.handle(topic, payload, false, kT0);
    EXPECT_NE(log.str().find("clip report for event " + one + " kept until its alert arrives"),
              std::string::npos)
        << log.str();
    EXPECT_FALSE(store.alert(one));
    EXPECT_EQ(ranges(*store.stream_track("sch-0101")), (Ranges{{1, 1}}));  // 2 is received
    // Another site cannot take the waiting report's place.
    const auto theirs = store.set_clip("sch-0202", one, json{{"path", "theirs.mp4"}}, kT0);
    EXPECT_FALSE(theirs.attached);
    EXPECT_FALSE(theirs.pending);
    // The replay brings the start: the alert is created with its clip, once.
    ingest.handle("kitchen/sch-0101/events", numbered_event(1).dump(), false, kT0 + 70s);
    ASSERT_TRUE(store.alert(one));
    ASSERT_TRUE(store.alert(one)->clip);
    EXPECT_EQ(json::parse(*store.alert(one)->clip)["path"], one + ".mp4");
    EXPECT_EQ(store.stream_track("sch-0101")->missing_count(), 0);
    EXPECT_EQ(store.stream_track("sch-0101")->mark(), 2);

    // Reports whose alert never comes are bounded per site (the oldest go) and expire with the
    // snapshots whose event never came.
    for (int n = 0; n <= Store::kMaxPendingClips; ++n) {
        const auto stored = store.set_clip("sch-0101", fmt::format("19ab3c0f2e2-{:016x}", n), json{{"n", n}},
                                           kT0 + std::chrono::seconds(n));
        EXPECT_TRUE(stored.pending);
        EXPECT_EQ(stored.evicted, n == Store::kMaxPendingClips ? 1 : 0);
    }
    auto late = numbered_event(1);
    const auto first = fmt::format("19ab3c0f2e2-{:016x}", 0), second = fmt::format("19ab3c0f2e2-{:016x}", 1);
    for (const auto& id : {first, second}) {
        late["id"] = id;
        late["message_id"] = id + ":start";
        late.erase("stream");
        late.erase("seq");
        ingest.handle("kitchen/sch-0101/events", late.dump(), false, kT0 + 2h);
    }
    EXPECT_FALSE(store.alert(first)->clip);  // evicted
    EXPECT_EQ(json::parse(*store.alert(second)->clip)["n"], 1);
    EXPECT_EQ(store.prune(kT0 + 2h).pending_clips, 0);
    std::int64_t expired = 0;
    Pruned p;
    do expired += (p = store.prune(kT0 + 25h)).pending_clips;
    while (p.more);
    EXPECT_EQ(expired, Store::kMaxPendingClips - 1);
}

TEST(MonitorSequenceStore, ANumberCountsAsReceivedWhateverTheStoreDidWithItsMessage) {
    Store store(":memory:");
    std::string error;
    const auto event = [&](int n, const std::string& site = "sch-0101") {
        auto m = parse_event(site, numbered_event(n, kStream, site).dump(), error);
        EXPECT_TRUE(m) << error;
        return *m;
    };
    const auto mark = [&] { return store.stream_track("sch-0101")->mark(); };
    auto stored = store.add_event(event(1), kT0, Sequence{kStream, 1});
    EXPECT_EQ(stored.outcome, IngestOutcome::created);
    EXPECT_EQ(stored.track.kind, TrackResult::Kind::started);
    EXPECT_EQ(mark(), 1);
    // A copy of event 1 sent again under number 2 (a replay the gateway numbered anew).
    stored = store.add_event(event(1), kT0, Sequence{kStream, 2});
    EXPECT_EQ(stored.outcome, IngestOutcome::duplicate);
    EXPECT_EQ(stored.track.kind, TrackResult::Kind::tracked);
    EXPECT_EQ(mark(), 2);
    // Another site's alert id: refused, and delivered.
    store.add_event(event(7, "sch-0202"), kT0);
    auto clash = event(7);
    EXPECT_EQ(store.add_event(clash, kT0, Sequence{kStream, 3}).outcome, IngestOutcome::rejected);
    EXPECT_EQ(mark(), 3);
    EXPECT_EQ(store.alert(clash.id)->site, "sch-0202");
    // A clip report of an event the room never had.
    const auto clip = store.set_clip("sch-0101", "19ab3c0f2e1-ffffffffffffffff", json{{"path", "x.mp4"}}, kT0,
                                     Sequence{kStream, 5});
    EXPECT_FALSE(clip.attached);
    EXPECT_TRUE(clip.track.changed);  // 4 is missing
    EXPECT_EQ(ranges(*store.stream_track("sch-0101")), (Ranges{{4, 4}}));
    // Without a number, nothing is tracked.
    EXPECT_EQ(store.add_event(event(4), kT0).track.kind, TrackResult::Kind::ignored);
    EXPECT_EQ(ranges(*store.stream_track("sch-0101")), (Ranges{{4, 4}}));
    EXPECT_EQ(store.set_gateway_info("sch-0101", gateway_info(9), kT0, Sequence{kStream, 9}).track.kind,
              TrackResult::Kind::tracked);
    EXPECT_EQ(ranges(*store.stream_track("sch-0101")), (Ranges{{4, 4}, {6, 9}}));
}

TEST(MonitorSequenceIngest, AMessageAndItsNumberAreStoredTogetherOrNotAtAll) {
    TempDir tmp;
    const auto path = tmp.path("monitor.db");
    Store store(path);
    Ingest ingest(store, "kitchen", kg::Logging::null_logger(), [](const Change&) {});
    const std::string one = fmt::format("19ab3c0f2e1-{:016x}", 1),
                      two = fmt::format("19ab3c0f2e1-{:016x}", 2);
    ingest.handle("kitchen/sch-0101/gateway", gateway_info(0).dump(), true, kT0);
    ingest.handle("kitchen/sch-0101/events", numbered_event(1).dump(), false, kT0);
    ASSERT_EQ(store.stream_track("sch-0101")->mark(), 1);

    // Recording the number fails after the message was written (a trigger here; a full disk, an I/O
    // error or a crash in the field): neither the message nor its number is kept, for each kind of
    // numbered message.
    kg::sqlite::Db other(path, {});
    other.exec(
        "CREATE TRIGGER fail_tracking BEFORE UPDATE ON seq_streams BEGIN SELECT RAISE(ABORT, 'tracking "
        "failed'); END");
    ingest.handle("kitchen/sch-0101/events", numbered_event(2).dump(), false, kT0);
    const json clip = clip_report(one, 3);
    ingest.handle("kitchen/sch-0101/events/" + one + "/clip", clip.dump(), false, kT0);
    auto renamed = gateway_info(3);
    renamed["name"] = "No. 1 renamed";
    ingest.handle("kitchen/sch-0101/gateway", renamed.dump(), true, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 3u);
    EXPECT_FALSE(store.alert(two));
    EXPECT_FALSE(store.alert(one)->clip);
    EXPECT_EQ(store.sites()[0]["name"], "No. 1");
    EXPECT_EQ(store.stream_track("sch-0101")->top(), 1);

    // The same messages again (the broker's redelivery, the gateway's replay): both go in.
    other.exec("DROP TRIGGER fail_tracking");
    ingest.handle("kitchen/sch-0101/events", numbered_event(2).dump(), false, kT0 + 70s);
    ingest.handle("kitchen/sch-0101/events/" + one + "/clip", clip.dump(), false, kT0 + 70s);
    ingest.handle("kitchen/sch-0101/gateway", renamed.dump(), true, kT0 + 70s);
    EXPECT_TRUE(store.alert(two));
    EXPECT_TRUE(store.alert(one)->clip);
    EXPECT_EQ(store.sites()[0]["name"], "No. 1 renamed");
    EXPECT_EQ(store.stream_track("sch-0101")->mark(), 3);
    EXPECT_EQ(store.stream_track("sch-0101")->missing_count(), 0);
}

TEST(MonitorSequenceIngest, ABadClipReportIsRefusedAndItsNumberStillCounts) {
    // A clip report is checked as an event is before it touches an alert: the dashboard shows what
    // it says as the site's clip.
    Store store(":memory:");
    CapturedLog log;
    Ingest ingest(
        store, "kitchen", log.logger, [](const Change&) {}, true, 100);  // every reason logged
    const std::string one = fmt::format("19ab3c0f2e1-{:016x}", 1);
    ingest.handle("kitchen/sch-0101/events", numbered_event(1).dump(), false, kT0);
    const std::string topic = "kitchen/sch-0101/events/" + one + "/clip";
    auto other_site = clip_report(one, 2, "sch-0202");
    auto other_event = clip_report(fmt::format("19ab3c0f2e1-{:016x}", 9), 3);
    auto no_camera = clip_report(one, 4);
    no_camera.erase("camera");
    auto neither = clip_report(one, 5);
    neither.erase("path");
    auto text_bytes = clip_report(one, 6);
    text_bytes["bytes"] = "123";
    auto empty_error = clip_report(one, 7);
    empty_error.erase("path");
    empty_error["error"] = "";
    for (const auto& bad : {other_site, other_event, no_camera, neither, text_bytes, empty_error})
        ingest.handle(topic, bad.dump(), false, kT0);
    ingest.handle("kitchen/sch-0101/events/ANY/clip", clip_report("ANY", 8).dump(), false, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 7u);
    EXPECT_FALSE(store.alert(one)->clip);
    for (const char* why :
         {"'site' is 'sch-0202', not 'sch-0101', the site in the topic",
          "'id' is '19ab3c0f2e1-0000000000000009', not '19ab3c0f2e1-0000000000000001', the event in the "
          "topic",
          "'camera' missing or not an id", "neither 'error' nor 'path' (a text)",
          "'bytes' missing or not a whole number", "'error' is not a text", "the event level is not an id"})
        EXPECT_NE(log.str().find(std::string("/clip: ") + why), std::string::npos) << why << "\n"
                                                                                   << log.str();
    // Delivered all the same (asking again would bring the same message), except the one whose topic
    // is not an event's: numbers 2-7 are in, 8 is not.
    EXPECT_EQ(store.stream_track("sch-0101")->top(), 7);
    EXPECT_EQ(store.stream_track("sch-0101")->missing_count(), 0);

    // A report with an error instead of a clip is whole.
    auto failed = clip_report(one, 9);
    for (const char* key : {"path", "duration_s", "bytes"}) failed.erase(key);
    failed["error"] = "gateway restarted before the clip was recorded";
    ingest.handle(topic, failed.dump(), false, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 7u);
    ASSERT_TRUE(store.alert(one)->clip);
    EXPECT_EQ(json::parse(*store.alert(one)->clip)["error"],
              "gateway restarted before the clip was recorded");

    // States name their site and camera or sensor as their topic does.
    ingest.handle("kitchen/sch-0101/cameras/cooking/state",
                  json{{"site", "sch-0202"}, {"camera", "cooking"}, {"online", true}}.dump(), true, kT0);
    ingest.handle("kitchen/sch-0101/sensors/fridge/state",
                  json{{"site", "sch-0101"}, {"sensor", "freezer"}, {"online", true}}.dump(), true, kT0);
    ingest.handle("kitchen/sch-0101/gateway", json{{"name", "No. 1"}}.dump(), true, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 10u);
    EXPECT_NE(log.str().find("cameras/cooking/state: 'site' is 'sch-0202', not 'sch-0101'"),
              std::string::npos);
    EXPECT_NE(
        log.str().find("sensors/fridge/state: 'sensor' is 'freezer', not 'fridge', the sensor in the topic"),
        std::string::npos);
    EXPECT_NE(log.str().find("/gateway: 'site' missing or not a text"), std::string::npos);
}

TEST(MonitorSequenceIngest, LostMessagesAreCountedLoggedAndCheckedFirst) {
    Store store(":memory:");
    CapturedLog log;
    Ingest ingest(store, "kitchen", log.logger, [](const Change&) {});
    ingest.handle("kitchen/sch-0101/events", numbered_event(1).dump(), false, kT0);
    ingest.handle("kitchen/sch-0101/events", numbered_event(20).dump(), false, kT0);
    ingest.handle("kitchen/sch-0101/lost", lost(2, 5).dump(), false, kT0);
    EXPECT_EQ(ingest.counters().lost_numbers.load(), 4u);
    EXPECT_NE(
        log.str().find("[warning] sch-0101 stream 00c0ffee00c0ffee: 2-5 lost (not kept, request r-1): 4 "
                       "numbers no longer asked for"),
        std::string::npos)
        << log.str();
    EXPECT_EQ(store.stream_track("sch-0101")->lost(), 4);
    EXPECT_EQ(store.stream_track("sch-0101")->mark(), 5);
    // Bad answers are refused with what is wrong; nothing is marked.
    auto other_site = lost(6, 7);
    other_site["site"] = "sch-0202";
    auto reversed = lost(9, 7);
    auto no_reason = lost(6, 7);
    no_reason.erase("reason");
    auto text_from = lost(6, 7);
    text_from["from"] = "6";
    for (const auto& bad : {other_site, reversed, no_reason, text_from})
        ingest.handle("kitchen/sch-0101/lost", bad.dump(), false, kT0);
    EXPECT_EQ(ingest.counters().refused.load(), 4u);
    EXPECT_NE(log.str().find("refused message on kitchen/sch-0101/lost: 'from' 9 is after 'to' 7"),
              std::string::npos);
    EXPECT_NE(log.str().find("refused message on kitchen/sch-0101/lost: 'from' is \"6\""), std::string::npos);
    EXPECT_EQ(store.stream_track("sch-0101")->lost(), 4);
    EXPECT_EQ(ingest.counters().lost_numbers.load(), 4u);
}

// A `lost` answer past the highest number the room knew sent: those numbers are sent and lost, and
// the ones between as sent and missing. Made missing first, the answer's own numbers pushed the ones
// still awaited past the cap of missing numbers, given up unasked (2-99, 101-149 below: 598 given
// up for an answer about 150 onward); and what a gap past the cap did give up was in the site's
// count but not in kgm_lost_messages_total.
TEST(MonitorSequenceIngest, ALostAnswerPastTheTopLosesItsNumbersAndGivesUpOnlyPastTheCap) {
    Store store(":memory:");
    CapturedLog log;
    Ingest ingest(store, "kitchen", log.logger, [](const Change&) {});
    ingest.handle("kitchen/sch-0101/events", numbered_event(1).dump(), false, kT0);
    ingest.handle("kitchen/sch-0101/events", numbered_event(100).dump(), false, kT0);  // 2-99 missing
    ingest.handle("kitchen/sch-0101/lost", lost(150, 10600).dump(), false, kT0);
    auto t = store.stream_track("sch-0101");
    ASSERT_TRUE(t);
    EXPECT_EQ(ranges(*t), (Ranges{{2, 99}, {101, 149}}));
    EXPECT_EQ(t->lost(), 10600 - 150 + 1);
    EXPECT_EQ(ingest.counters().lost_numbers.load(), static_cast<std::uint64_t>(t->lost()));
    EXPECT_EQ(log.str().find("no longer asked for, counted as lost"), std::string::npos) << log.str();
    // A gap itself past the cap: the oldest missing numbers are given up, and counted everywhere.
    const std::int64_t from = 10600 + StreamTrack::kMaxMissing + 101, to = from + 399;
    ingest.handle("kitchen/sch-0101/lost", lost(from, to).dump(), false, kT0);
    t = store.stream_track("sch-0101");
    EXPECT_EQ(t->missing_count(), StreamTrack::kMaxMissing);
    EXPECT_EQ(t->lost() + t->missing_count(), to - 2);  // every number but 1 and 100
    EXPECT_EQ(ingest.counters().lost_numbers.load(), static_cast<std::uint64_t>(t->lost())) << log.str();
    EXPECT_EQ(store.sites()[0]["lost_messages"], t->lost());
    EXPECT_NE(log.str().find("no longer asked for, counted as lost"), std::string::npos) << log.str();
}

TEST(MonitorSequenceIngest, ALateMessageOfAReplacedStreamIsNoLongerCountedLost) {
    Store store(":memory:");
    CapturedLog log;
    Ingest ingest(store, "kitchen", log.logger, [](const Change&) {});
    for (int n : {1, 4, 9}) ingest.handle("kitchen/sch-0101/events", numbered_event(n).dump(), false, kT0);
    ingest.handle("kitchen/sch-0101/lost", lost(2, 3).dump(), false, kT0 + 61s);  // 5-8 still missing
    ingest.handle("kitchen/sch-0101/events", numbered_event(1, kOther).dump(), false, kT0 + 120s);
    EXPECT_EQ(store.sites()[0]["lost_messages"], 6);  // 2, 3 and the missing 5-8
    EXPECT_EQ(ingest.counters().lost_numbers.load(), 6u);
    ingest.handle("kitchen/sch-0101/events", numbered_event(6).dump(), false, kT0 + 130s);
    ingest.handle("kitchen/sch-0101/events", numbered_event(3).dump(), false, kT0 + 130s);
    EXPECT_EQ(store.sites()[0]["lost_messages"], 4);
    EXPECT_EQ(ingest.counters().found_numbers.load(), 2u);
    EXPECT_NE(log.str().find("sch-0101 stream 00c0ffee00c0ffee: number 6, counted lost, arrived after all"),
              std::string::npos)
        << log.str();
    // A copy of one, and a number never lost, change nothing; nor does the new stream's tracking.
    ingest.handle("kitchen/sch-0101/events", numbered_event(6).dump(), false, kT0 + 140s);
    ingest.handle("kitchen/sch-0101/events", numbered_event(4).dump(), false, kT0 + 140s);
    ingest.handle("kitchen/sch-0101/events", numbered_event(2, kOther).dump(), false, kT0 + 140s);
    EXPECT_EQ(store.sites()[0]["lost_messages"], 4);
    EXPECT_EQ(store.sites()[0]["stream"], kOther);
    EXPECT_EQ(ingest.counters().found_numbers.load(), 2u);
}

TEST(MonitorSequenceIngest, AMessageCountedLostThatArrivesAfterAllIsNoLongerCounted) {
    // The gateway had moved messages aside (refused by the broker) and answered "moved aside"; an
    // operator then requeued them (POST /api/outbox/requeue): they arrive with their own numbers.
    TempDir tmp;
    const auto db = tmp.path("monitor.db");
    {
        Store store(db);
        CapturedLog log;
        Ingest ingest(store, "kitchen", log.logger, [](const Change&) {});
        for (int n : {1, 2, 9})
            ingest.handle("kitchen/sch-0101/events", numbered_event(n).dump(), false, kT0);
        ingest.handle("kitchen/sch-0101/lost", lost(3, 6).dump(), false, kT0 + 61s);  // 7-8 still missing
        EXPECT_EQ(store.sites()[0]["lost_messages"], 4);
        EXPECT_EQ(store.sites()[0]["missing_messages"], 2);
        ingest.handle("kitchen/sch-0101/events", numbered_event(5).dump(), false, kT0 + 120s);
        EXPECT_EQ(store.sites()[0]["lost_messages"], 3);
        EXPECT_EQ(ingest.counters().found_numbers.load(), 1u);
        EXPECT_NE(
            log.str().find("sch-0101 stream 00c0ffee00c0ffee: number 5, counted lost, arrived after all"),
            std::string::npos)
            << log.str();
        EXPECT_EQ(ingest.counters().created.load(), 4u);  // its alert is stored like any other
        // A second copy of it, or of a number that was never lost, changes nothing.
        ingest.handle("kitchen/sch-0101/events", numbered_event(5).dump(), false, kT0 + 121s);
        ingest.handle("kitchen/sch-0101/events", numbered_event(2).dump(), false, kT0 + 121s);
        EXPECT_EQ(store.sites()[0]["lost_messages"], 3);
        EXPECT_EQ(ingest.counters().found_numbers.load(), 1u);
    }
    // After a restart the room still knows which numbers it counted lost.
    Store store(db);
    CapturedLog log;
    Ingest ingest(store, "kitchen", log.logger, [](const Change&) {});
    for (int n : {3, 6})
        ingest.handle("kitchen/sch-0101/events", numbered_event(n).dump(), false, kT0 + 200s);
    EXPECT_EQ(store.sites()[0]["lost_messages"], 1);  // only 4 is still lost
    EXPECT_EQ(store.sites()[0]["missing_messages"], 2);
    // Numbers the room gave up on (no answer) are found the same way.
    store.give_up_missed_before(kT0 + 1h);
    EXPECT_EQ(store.sites()[0]["lost_messages"], 3);
    ingest.handle("kitchen/sch-0101/events", numbered_event(8).dump(), false, kT0 + 2h);
    EXPECT_EQ(store.sites()[0]["lost_messages"], 2);
    EXPECT_EQ(ingest.counters().found_numbers.load(), 3u);
}

TEST(MonitorSequenceIngest, FoundNumbersAreLoggedAtMostOnceAMinutePerSite) {
    // An operator requeues thousands of dead messages: a line a minute, not one each.
    Store store(":memory:");
    CapturedLog log;
    Ingest ingest(store, "kitchen", log.logger, [](const Change&) {});
    for (int n : {1, 10}) ingest.handle("kitchen/sch-0101/events", numbered_event(n).dump(), false, kT0);
    ingest.handle("kitchen/sch-0101/lost", lost(2, 9).dump(), false, kT0);
    const auto found = [&](int n, kg::Duration at) {
        ingest.handle("kitchen/sch-0101/events", numbered_event(n).dump(), false, kT0 + at);
    };
    found(2, 1s);
    found(3, 10s);
    found(4, 20s);
    EXPECT_NE(log.str().find("number 2, counted lost, arrived after all: no longer counted as lost\n"),
              std::string::npos)
        << log.str();
    EXPECT_EQ(log.str().find("number 3,"), std::string::npos) << log.str();
    EXPECT_EQ(log.str().find("number 4,"), std::string::npos) << log.str();
    found(5, 62s);
    EXPECT_NE(log.str().find(
                  "number 5, counted lost, arrived after all: no longer counted as lost (and 2 more since "
                  "the last such line)"),
              std::string::npos)
        << log.str();
    EXPECT_EQ(ingest.counters().found_numbers.load(), 4u);
    EXPECT_EQ(store.sites()[0]["lost_messages"], 4);  // 6-9
}

TEST(MonitorSequenceStore, TheLostRangesKeptPerStreamAreBounded) {
    // A site that loses every other number: one lost range each. Only the newest kMaxLostRanges are
    // kept to be recognised; the counts stay whole.
    Store store(":memory:");
    const std::int64_t n = Store::kMaxLostRanges + 1;
    for (std::int64_t seq = 1; seq <= 2 * n + 1; seq += 2)
        store.track_received("sch-0101", {kStream, seq}, kT0);
    for (std::int64_t seq = 2; seq <= 2 * n; seq += 2) store.track_lost("sch-0101", kStream, seq, seq, kT0);
    EXPECT_EQ(store.stream_track("sch-0101")->lost(), n);
    EXPECT_FALSE(store.track_received("sch-0101", {kStream, 2}, kT0).found);  // the oldest, forgotten
    EXPECT_EQ(store.track_received("sch-0101", {kStream, 4}, kT0).found, 4);
    EXPECT_EQ(store.track_received("sch-0101", {kStream, 2 * n}, kT0).found, 2 * n);
    EXPECT_EQ(store.stream_track("sch-0101")->lost(), n - 2);
}

TEST(MonitorReplay, AsksForWhatIsDueOncePerEveryAndOnlyWhenTheBrokerTookIt) {
    Store store(":memory:");
    std::vector<std::pair<std::string, json>> sent;
    bool broker_up = true;
    ReplayRequester replay(
        store,
        [&](const std::string& topic, const std::string& payload) {
            if (!broker_up) return false;
            sent.emplace_back(topic, json::parse(payload));
            return true;
        },
        "kitchen", "monitor-1", ReplaySettings{true, 60s, 5min}, kg::Logging::null_logger());
    store.track_received("sch-0101", {kStream, 1}, kT0);
    store.track_received("sch-0101", {kStream, 5}, kT0);       // 2-4
    store.track_received("sch-0101", {kStream, 9}, kT0);       // 6-8
    store.track_received("sch-0101", {kStream, 5000}, kT0);    // 10-4999
    store.track_received("sch-0202", {kOther, 1}, kT0 + 30s);  // in order: nothing to ask
    store.track_received("sch-0202", {kOther, 3}, kT0 + 30s);  // 2, missing only since +30s

    EXPECT_EQ(replay.ask_due(kT0 + 59s), 0);
    broker_up = false;
    EXPECT_EQ(replay.ask_due(kT0 + 60s), 0);  // not taken: not marked, asked at the next pass
    broker_up = true;
    EXPECT_EQ(replay.ask_due(kT0 + 61s), 1);  // 2-8 in one request; 10-4999 is 4990 numbers...
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(sent[0].first, "kitchen/sch-0101/replay");
    const json req = sent[0].second;
    EXPECT_EQ(req["site"], "sch-0101");
    EXPECT_EQ(req["stream"], kStream);
    EXPECT_EQ(req["from"], 2);
    EXPECT_EQ(req["to"], 4999);  // ...within 100 of 8 and 10000 in all, so the same request
    EXPECT_EQ(req["monitor"], "monitor-1");
    EXPECT_EQ(req["time"], "2026-12-01T08:01:01.000Z");
    EXPECT_TRUE(req["request_id"].get<std::string>().rfind("monitor-1-", 0) == 0);
    EXPECT_EQ(replay.ask_due(kT0 + 62s), 0);
    EXPECT_EQ(replay.ask_due(kT0 + 90s), 1);  // sch-0202's 2, missing for 60 s now
    EXPECT_EQ(sent[1].first, "kitchen/sch-0202/replay");
    EXPECT_NE(sent[1].second["request_id"], req["request_id"]);
    store.track_lost("sch-0101", kStream, 2, 4999, kT0 + 100s);
    EXPECT_EQ(replay.ask_due(kT0 + 61s + 5min), 0);  // lost: no longer asked for
    EXPECT_EQ(replay.ask_due(kT0 + 90s + 5min), 1);  // still missing: asked again
    EXPECT_EQ(replay.requests(), 3u);
}

TEST(MonitorReplay, ARangeWithNoAnswerIsGivenUpAfterGiveUpAndCountedAsLost) {
    Store store(":memory:");
    CapturedLog log;
    std::vector<std::string> changed;
    int sent = 0;
    ReplayRequester replay(
        store, [&](const std::string&, const std::string&) { return ++sent > 0; }, "kitchen", "monitor-1",
        ReplaySettings{true, 60s, 5min, 24h}, log.logger,
        [&](const std::string& site) { changed.push_back(site); });
    store.track_received("sch-0101", {kStream, 1}, kT0);
    store.track_received("sch-0101", {kStream, 5}, kT0);       // 2-4, first missed at kT0
    store.track_received("sch-0101", {kStream, 9}, kT0 + 1h);  // 6-8, an hour later
    store.track_received("sch-0101", {kStream, 3}, kT0 + 2h);  // 3 arrives: 2 and 4 still missed since kT0
    EXPECT_EQ(replay.ask_due(kT0 + 61s), 1);
    EXPECT_EQ(replay.ask_due(kT0 + 24h - 5min), 1);  // asked again, nothing given up yet
    EXPECT_EQ(replay.given_up(), 0u);
    EXPECT_TRUE(changed.empty());

    // A day without an answer (the gateway offline for good, its ACL, a message refused unread).
    EXPECT_EQ(replay.ask_due(kT0 + 24h), 1);  // 6-8 is still asked for
    EXPECT_EQ(replay.given_up(), 2u);
    EXPECT_EQ(changed, std::vector<std::string>{"sch-0101"});
    auto t = store.stream_track("sch-0101");
    EXPECT_EQ(ranges(*t), (Ranges{{6, 8}}));
    EXPECT_EQ(t->lost(), 2);
    EXPECT_EQ(t->mark(), 5);
    EXPECT_NE(log.str().find("sch-0101 stream 00c0ffee00c0ffee: 2-2 (1 numbers) missing for 24 h with no "
                             "answer: no longer asked for, counted as lost"),
              std::string::npos)
        << log.str();
    EXPECT_NE(log.str().find(": 4-4 (1 numbers) missing for 24 h"), std::string::npos);
    EXPECT_EQ(store.sites()[0]["lost_messages"], 2);

    EXPECT_EQ(replay.ask_due(kT0 + 25h), 0);  // 6-8 given up too
    EXPECT_EQ(replay.given_up(), 5u);
    EXPECT_EQ(store.stream_track("sch-0101")->missing_count(), 0);
    EXPECT_EQ(store.stream_track("sch-0101")->mark(), 9);
    // A given-up number that still arrives is stored as usual and no longer counted as lost.
    const auto late = store.track_received("sch-0101", {kStream, 7}, kT0 + 26h);
    EXPECT_TRUE(late.changed);
    EXPECT_EQ(late.found, 7);
    EXPECT_EQ(store.stream_track("sch-0101")->lost(), 4);
    EXPECT_FALSE(store.track_received("sch-0101", {kStream, 7}, kT0 + 26h).found);  // once
}

TEST(MonitorReplay, ConfigDefaultsAndErrors) {
    const std::string base = R"(mqtt:
  url: tcp://127.0.0.1:1883
  client_id: monitor-1
db:
  path: monitor.db
http:
  operators:
    - name: wang
      password: correct-horse
)";
    const auto load = [](const std::string& yaml) {
        return load_monitor_config_string(yaml, "/etc/kitchen-monitor/monitor.yaml");
    };
    const auto error = [&](const std::string& yaml) {
        try {
            load(yaml);
        } catch (const kg::config::ConfigInvalid& e) {
            return e.errors.front().to_string();
        }
        return std::string();
    };
    auto cfg = load(base);
    EXPECT_TRUE(cfg.replay.enabled);
    EXPECT_TRUE(cfg.track_sequences());
    EXPECT_EQ(cfg.replay.after, 60s);
    EXPECT_EQ(cfg.replay.every, 5min);
    EXPECT_EQ(cfg.replay.give_up, 24h);
    std::string grouped = base;
    grouped.insert(grouped.find("db:"), "  share_group: room\n");
    cfg = load(grouped);
    EXPECT_FALSE(cfg.replay.enabled);  // each instance sees part of every stream
    EXPECT_FALSE(cfg.track_sequences());
    cfg = load(grouped + "replay: {enabled: true}\n");  // instances sharing one database
    EXPECT_TRUE(cfg.replay.enabled);
    cfg = load(base + "replay: {enabled: false, after: 2s, every: 10m, give_up: 7d}\n");
    EXPECT_FALSE(cfg.replay.enabled);
    EXPECT_TRUE(cfg.track_sequences());  // still counted, just not asked for
    EXPECT_EQ(cfg.replay.after, 2s);
    EXPECT_EQ(cfg.replay.every, 10min);
    EXPECT_EQ(cfg.replay.give_up, 24h * 7);
    EXPECT_EQ(error(base + "replay: {give_up: 30s}\n"),
              "/etc/kitchen-monitor/monitor.yaml:10:19: replay.give_up: not longer than replay.after (60 s): "
              "nothing would be asked for");
    // `after` alone, past the default give_up (24 h): every gap would be given up unasked.
    EXPECT_EQ(
        error(base + "replay: {after: 48h}\n"),
        "/etc/kitchen-monitor/monitor.yaml:10:17: replay.after: not shorter than replay.give_up (86400 s, "
        "the default): nothing would be asked for; set give_up longer too");
    EXPECT_EQ(load(base + "replay: {after: 48h, give_up: 7d}\n").replay.after, 48h);
    EXPECT_EQ(
        error(base + "replay: {give_up: 0s}\n"),
        "/etc/kitchen-monitor/monitor.yaml:10:19: replay.give_up: expected a positive duration like 30s, "
        "15m, 2h, not '0s'");
    EXPECT_EQ(
        error(base + "replay: {after: 500ms}\n"),
        "/etc/kitchen-monitor/monitor.yaml:10:17: replay.after: shorter than 1s: the gateway needs time to "
        "answer");
    EXPECT_EQ(
        error(base + "replay: {every: soon}\n"),
        "/etc/kitchen-monitor/monitor.yaml:10:17: replay.every: expected a positive duration like 30s, 15m, "
        "2h, not 'soon'");
    EXPECT_EQ(error(base + "replay: {enabled: maybe}\n"),
              "/etc/kitchen-monitor/monitor.yaml:10:19: replay.enabled: expected true or false, not 'maybe'");
    EXPECT_NE(error(base + "replay: {afer: 2s}\n").find("replay.afer: unknown key"), std::string::npos);
}

// A gateway whose site.id changed (sch-0101 to sch-0102) keeps its outbox and stream. The room
// followed the new id from the stream's first number: every 5 minutes for a day it asked for
// 1..40, each answer came under the old id (the outbox keeps each message's topic) as a duplicate
// there, and at last 40 numbers were declared lost that had all arrived (the months review).
TEST(MonitorSequenceIngest, ARenamedSiteFollowsItsStreamFromTheNumberFirstHeard) {
    Store store(":memory:");
    ASSERT_EQ(store.note_watching(kT0), kT0);
    CapturedLog log;
    Ingest ingest(store, "kitchen", log.logger, [](const Change&) {});
    auto before = gateway_info(0);
    before["stream_started"] = "2026-12-01T09:00:00.000Z";  // begun while the room watched
    ingest.handle("kitchen/sch-0101/gateway", before.dump(), true, kT0 + 25h);
    for (int n = 1; n <= 40; ++n)
        ingest.handle("kitchen/sch-0101/events", numbered_event(n).dump(), false, kT0 + 25h + 1s);
    EXPECT_EQ(store.stream_track("sch-0101")->mark(), 40);

    auto renamed = gateway_info(40);
    renamed["site"] = "sch-0102";
    renamed["stream_started"] = "2026-12-01T09:00:00.000Z";
    ingest.handle("kitchen/sch-0102/gateway", renamed.dump(), true, kT0 + 26h);
    const auto t = store.stream_track("sch-0102");
    ASSERT_TRUE(t);
    EXPECT_EQ(t->mark(), 40);
    EXPECT_EQ(t->missing_count(), 0);
    EXPECT_TRUE(store.due_replays(kT0 + 27h, 60s, 5min).empty());
    EXPECT_NE(
        log.str().find("sch-0102: following stream 00c0ffee00c0ffee from the number first heard: the room "
                       "follows it as site sch-0101 too"),
        std::string::npos)
        << log.str();
    // Its alerts from here on are its own, numbered on.
    ingest.handle("kitchen/sch-0102/events", numbered_event(41, kStream, "sch-0102").dump(), false,
                  kT0 + 26h + 1s);
    EXPECT_EQ(store.stream_track("sch-0102")->mark(), 41);
    EXPECT_EQ(store.stream_track("sch-0101")->mark(), 40);  // the old id keeps what it had
    EXPECT_EQ(store.count_alerts(), 41);

    // A site new to the room whose stream no other site follows is followed as before.
    auto fresh = gateway_info(7, kOther);
    fresh["site"] = "sch-0303";
    fresh["stream_started"] = "2026-12-01T09:00:00.000Z";
    ingest.handle("kitchen/sch-0303/gateway", fresh.dump(), true, kT0 + 26h);
    EXPECT_EQ(store.stream_track("sch-0303")->missing_count(), 7);
}
