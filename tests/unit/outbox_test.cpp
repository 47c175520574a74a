// The outbox when its store fails: a real SQLite file that cannot grow (the disk is full, here
// RLIMIT_FSIZE in a child process), then can again.
#include "outbox/outbox.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/logging.hpp"
#include "outbox/open_record.hpp"
#include "outbox/replay.hpp"
#include "publish/payloads.hpp"
#include "test_broker.hpp"

namespace fs = std::filesystem;
using kg::outbox::Message;
using kg::outbox::Priority;

namespace {

using kg::events::Event;
using kg::events::EventState;

// A store, a broker link that is never started (nothing is sent) and the outbox between them.
struct Rig {
    explicit Rig(const std::string& path, kg::outbox::SqliteStore::Limits limits = {})
        : store(path, limits),
          link(mqtt(), "kitchen/s/availability", kg::Logging::null_logger()),
          outbox(store, link, kg::publish::Topics("kitchen", "s"), "s", kg::Logging::null_logger()) {}
    static kg::config::Mqtt mqtt() {
        kg::config::Mqtt m;
        m.url = "tcp://127.0.0.1:1";
        m.client_id = "outbox-test";
        return m;
    }
    kg::outbox::SqliteStore store;
    kg::publish::MqttLink link;
    kg::outbox::Outbox outbox;
};

kg::TimePoint at_ms(std::int64_t ms) { return kg::TimePoint(std::chrono::milliseconds(ms)); }

Event camera_event(const std::string& id, EventState state, float score = 0.8f) {
    Event e;
    e.id = id;
    e.source = "cooking";
    e.check = "bin_lid";
    e.label = "open";
    e.zone = "prep";
    e.severity = 2;
    e.state = state;
    e.start_time = at_ms(1'790'000'000'123);
    e.time = at_ms(1'790'000'005'000);
    e.score = score;
    e.top_score = score;
    if (state == EventState::end) e.end_time = e.time;
    return e;
}

Event sensor_event(const std::string& id, EventState state) {
    Event e;
    e.id = id;
    e.source = "sample-fridge";
    e.from_sensor = true;
    e.value = 9.5;
    e.unit = "degC";
    e.check = "sensor";
    e.label = "too_warm";
    e.severity = 1;
    e.state = state;
    e.start_time = at_ms(1'790'000'001'000);
    e.time = at_ms(1'790'000'002'000);
    e.score = 1;
    e.top_score = 1;
    return e;
}

// A full disk, in this (child) process: no file may grow past the size of the largest file in `dir`
// now, and write() fails with EFBIG instead of SIGXFSZ killing the process. free() gives the space back.
class DiskFull {
public:
    explicit DiskFull(const fs::path& dir) {
        std::signal(SIGXFSZ, SIG_IGN);
        getrlimit(RLIMIT_FSIZE, &limit_);
        hard_ = limit_.rlim_max;
        std::uintmax_t largest = 0;
        for (const auto& f : fs::directory_iterator(dir)) largest = std::max(largest, f.file_size());
        limit_.rlim_cur = largest;
        setrlimit(RLIMIT_FSIZE, &limit_);
    }
    void free() {
        limit_.rlim_cur = hard_;
        setrlimit(RLIMIT_FSIZE, &limit_);
    }

private:
    rlimit limit_{};
    rlim_t hard_ = 0;
};

Message alert(const std::string& payload) {
    return {0, "kitchen/s/events", payload, 1, false, Priority::alert};
}

// Each check of the child is one bit of its exit code, so a failure says which one.
int run_disk_full(const fs::path& dir) {
    int failed = 0;
    auto check = [&failed](int bit, bool ok) { failed |= ok ? 0 : 1 << bit; };
    const auto path = (dir / "outbox.db").string();
    kg::outbox::SqliteStore store(path, {});
    kg::config::Mqtt mqtt;
    mqtt.url = "tcp://127.0.0.1:1";  // never started: nothing is sent in this test
    mqtt.client_id = "outbox-test";
    kg::publish::MqttLink link(mqtt, "kitchen/s/availability", kg::Logging::null_logger());
    kg::outbox::Outbox outbox(store, link, kg::publish::Topics("kitchen", "s"), "s",
                              kg::Logging::null_logger());
    for (int i = 0; i < 3; ++i) check(0, outbox.enqueue(alert("m" + std::to_string(i))));

    DiskFull disk(dir);  // no file of the folder may grow past its present size
    for (int i = 3; i < 8; ++i)
        check(0, outbox.enqueue(alert("m" + std::to_string(i) + std::string(5000, 'x'))));
    check(1, store.size() == 3);
    check(3, outbox.in_memory() == 5 && outbox.depth() == 8);
    check(4, outbox.store_errors() >= 1);
    const auto problem = outbox.store_problem();
    check(5, problem && problem->find("outbox store failing") != std::string::npos);

    // Space again: the next message first moves what was kept in memory into the store, in order.
    disk.free();
    check(6, outbox.enqueue(alert("m8")));
    check(7, outbox.in_memory() == 0 && store.size() == 9 && !outbox.store_problem());
    std::string order;
    while (auto m = store.front()) {
        order += m->payload.substr(0, 2);
        store.remove(m->seq);
    }
    check(2, order == "m0m1m2m3m4m5m6m7m8");
    return failed;
}

// A full disk mended: what waits in memory goes into the store in chunks of one transaction each
// (a commit a message held every producer for 10 000 syncs, 1.8 s here and minutes on an SD
// card), all of it and in order across the chunks.
int run_disk_full_chunks(const fs::path& dir) {
    int failed = 0;
    auto check = [&failed](int bit, bool ok) { failed |= ok ? 0 : 1 << bit; };
    Rig rig((dir / "outbox.db").string());
    check(0, rig.outbox.enqueue(alert("first")));
    DiskFull disk(dir);
    for (int i = 0; i < 1234; ++i)
        rig.outbox.enqueue(alert(fmt::format("m{:04}{}", i, std::string(200, 'x'))));
    check(1, rig.outbox.in_memory() == 1234);
    disk.free();
    check(2, rig.outbox.enqueue(alert("last")));
    check(3, rig.outbox.in_memory() == 0 && rig.store.size() == 1236);
    std::vector<std::string> order;
    while (auto m = rig.store.front()) {
        order.push_back(m->payload.substr(0, 5));
        rig.store.remove(m->seq);
    }
    bool in_order = order.size() == 1236 && order.front() == "first" && order.back() == "last";
    for (int i = 0; in_order && i < 1234; ++i)
        in_order = order[1 + static_cast<std::size_t>(i)] == fmt::format("m{:04}", i);
    check(4, in_order);
    return failed;
}

// The record of open events follows its messages through the memory overflow: a start kept in
// memory while the disk is full is recorded when the store takes it.
int run_disk_full_marks(const fs::path& dir) {
    int failed = 0;
    auto check = [&failed](int bit, bool ok) { failed |= ok ? 0 : 1 << bit; };
    Rig rig((dir / "outbox.db").string());
    rig.outbox.submit(camera_event("before", EventState::start));
    DiskFull disk(dir);  // no file of the folder may grow past its present size
    // Padded so that the WAL cannot take it in the space its last frames left.
    auto full = camera_event("full", EventState::start);
    full.label = std::string(5000, 'x');
    rig.outbox.submit(full);
    rig.outbox.submit(camera_event("before", EventState::end));
    check(0, rig.outbox.in_memory() == 2);
    auto open = rig.store.open_events();
    check(1, open.size() == 1 && open[0].id == "before");  // neither change recorded yet
    disk.free();
    check(2, rig.outbox.enqueue(alert("next")));
    open = rig.store.open_events();
    check(3, rig.outbox.in_memory() == 0 && open.size() == 1 && open[0].id == "full");
    return failed;
}

// Runs `body` in a child process (its file size limit must not outlive it) on a fresh folder.
void expect_child_passes(int (*body)(const fs::path&)) {
    const fs::path dir =
        fs::temp_directory_path() / ("kg-outbox-" + std::to_string(getpid()) + "-" +
                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) _exit(body(dir));
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), 0) << "failed checks (bits): " << WEXITSTATUS(status);
    fs::remove_all(dir);
}

}  // namespace

TEST(Outbox, KeepsInMemoryWhatAFullDiskRefusesAndStoresItInOrderOnceThereIsSpace) {
    expect_child_passes(run_disk_full);
}

TEST(Outbox, MovesWhatWaitedInMemoryIntoTheStoreInChunksAndInOrder) {
    expect_child_passes(run_disk_full_chunks);
}

TEST(Outbox, KeepsTheRecordOfOpenEventsWithTheMessagesItHoldsInMemory) {
    expect_child_passes(run_disk_full_marks);
}

TEST(Outbox, EndsAtTheNextStartTheEventsACrashLeftOpenOnceEach) {
    const fs::path dir = fs::temp_directory_path() / ("kg-outbox-left-open-" + std::to_string(getpid()));
    fs::create_directories(dir);
    const auto path = (dir / "outbox.db").string();
    {
        Rig first(path);
        first.outbox.submit(camera_event("cam", EventState::start, 0.6f));
        first.outbox.submit(sensor_event("fridge", EventState::start));
        first.outbox.submit(camera_event("gone", EventState::start));
        first.outbox.submit(camera_event("gone", EventState::end));
        auto update = camera_event("cam", EventState::update, 0.9f);
        update.update_number = 1;
        first.outbox.submit(update);
    }  // no stop and no end: as SIGKILL leaves it
    const auto now = at_ms(1'790'000'100'000);
    {
        Rig second(path);
        const auto ends = second.outbox.left_open(now, kg::events::kEndRestarted);
        ASSERT_EQ(ends.size(), 2u);
        const auto& cam = ends[0];
        EXPECT_EQ(cam.id, "cam");
        EXPECT_EQ(cam.state, EventState::end);
        EXPECT_EQ(cam.source, "cooking");
        EXPECT_FALSE(cam.from_sensor);
        EXPECT_EQ(cam.check, "bin_lid");
        EXPECT_EQ(cam.label, "open");
        EXPECT_EQ(cam.zone, "prep");
        EXPECT_EQ(cam.severity, 2);
        EXPECT_EQ(cam.start_time, at_ms(1'790'000'000'123));  // to the millisecond
        EXPECT_EQ(cam.time, now);
        EXPECT_EQ(cam.end_time, now);
        EXPECT_FLOAT_EQ(cam.top_score, 0.9f);  // as its last update said
        EXPECT_EQ(cam.end_reason, "gateway restarted");
        EXPECT_EQ(cam.message_id(), "cam:end");
        const auto& fridge = ends[1];
        EXPECT_EQ(fridge.id, "fridge");
        EXPECT_TRUE(fridge.from_sensor);
        EXPECT_EQ(fridge.source, "sample-fridge");
        EXPECT_EQ(fridge.unit, "degC");
        EXPECT_EQ(fridge.severity, 1);
        EXPECT_EQ(fridge.start_time, at_ms(1'790'000'001'000));
        for (const auto& end : ends) second.outbox.submit(end);
        EXPECT_TRUE(second.outbox.left_open(now, kg::events::kEndRestarted).empty());
        // Queued behind the first run's messages, in the payload the room reads.
        std::vector<std::string> queued;
        while (auto m = second.store.front()) {
            queued.push_back(m->payload);
            second.store.remove(m->seq);
        }
        ASSERT_EQ(queued.size(), 7u);
        EXPECT_NE(queued[5].find(R"("message_id":"cam:end")"), std::string::npos) << queued[5];
        EXPECT_NE(queued[5].find(R"("end_reason":"gateway restarted")"), std::string::npos) << queued[5];
        EXPECT_NE(queued[6].find(R"("sensor":"sample-fridge")"), std::string::npos) << queued[6];
    }
    // Ended once: a third start finds nothing left open.
    Rig third(path);
    EXPECT_TRUE(third.outbox.left_open(now, kg::events::kEndRestarted).empty());
    fs::remove_all(dir);
}

TEST(Outbox, AnOpenEventRecordThatCannotBeReadIsForgottenNotEndedForEver) {
    const fs::path dir = fs::temp_directory_path() / ("kg-outbox-bad-record-" + std::to_string(getpid()));
    fs::create_directories(dir);
    Rig rig((dir / "outbox.db").string());
    auto m = alert("x");
    m.open_event = {kg::outbox::OpenEventMark::Kind::open, "odd", R"({"source":"cooking"})"};
    rig.store.append(m);
    rig.outbox.submit(camera_event("good", EventState::start));
    const auto ends = rig.outbox.left_open(at_ms(1'790'000'100'000), kg::events::kEndRestarted);
    ASSERT_EQ(ends.size(), 1u);
    EXPECT_EQ(ends[0].id, "good");
    ASSERT_EQ(rig.store.open_events().size(), 1u);  // "odd" forgotten, "good" until its end is queued
    EXPECT_THROW(kg::outbox::end_from_record("odd", "{", at_ms(0), "r"), std::runtime_error);
    fs::remove_all(dir);
}

namespace {

Event clip_start(const std::string& id) {
    auto e = camera_event(id, EventState::start);
    e.evidence.clip = "cooking/2026-09-22/" + id + ".mp4";
    return e;
}

std::vector<std::string> drain(kg::outbox::SqliteStore& store) {
    std::vector<std::string> out;
    while (auto m = store.front()) {
        out.push_back(m->topic + " " + m->payload);
        store.remove(m->seq);
    }
    return out;
}

}  // namespace

TEST(Outbox, ReportsAtTheNextStartTheClipsACrashLeftPendingOnceEach) {
    const fs::path dir = fs::temp_directory_path() / ("kg-outbox-clips-" + std::to_string(getpid()));
    fs::create_directories(dir);
    const auto path = (dir / "outbox.db").string();
    {
        Rig first(path);
        first.outbox.submit(clip_start("cut"));
        first.outbox.submit(clip_start("pending"));
        first.outbox.submit(camera_event("no-clip", EventState::start));  // evidence off
        first.outbox.submit(sensor_event("fridge", EventState::start));
        auto update = clip_start("pending");  // an update does not promise the clip again
        update.state = EventState::update;
        update.update_number = 1;
        first.outbox.submit(update);
        kg::events::ClipReport cut;
        cut.event_id = "cut";
        cut.camera = "cooking";
        cut.path = "cooking/2026-09-22/cut.mp4";
        cut.seconds = 7;
        cut.bytes = 1000;
        first.outbox.submit_clip(cut);
        first.outbox.submit(camera_event("pending", EventState::end));  // the clip still waits
    }  // no stop, no flush: as SIGKILL leaves it
    {
        Rig second(path);
        auto clips = second.outbox.clips_left_pending(kg::events::kClipRestarted);
        ASSERT_EQ(clips.size(), 1u);
        const auto& c = clips[0];
        EXPECT_EQ(c.event_id, "pending");
        EXPECT_EQ(c.camera, "cooking");
        EXPECT_EQ(c.path, "cooking/2026-09-22/pending.mp4");  // for the caller to look at
        EXPECT_EQ(c.start_time, at_ms(1'790'000'000'123));    // to the millisecond
        EXPECT_EQ(c.error, "gateway restarted before the clip was recorded");
        drain(second.store);
        second.outbox.submit_clip(c);
        EXPECT_TRUE(second.outbox.clips_left_pending(kg::events::kClipRestarted).empty());
        const auto queued = drain(second.store);
        ASSERT_EQ(queued.size(), 1u);
        EXPECT_EQ(queued[0].rfind("kitchen/s/events/pending/clip ", 0), 0u) << queued[0];
        EXPECT_NE(queued[0].find(R"("error":"gateway restarted before the clip was recorded")"),
                  std::string::npos)
            << queued[0];
        EXPECT_EQ(queued[0].find(R"("path")"), std::string::npos) << queued[0];
        EXPECT_NE(queued[0].find(R"("start_time":"2026-09-21T14:13:20.123Z")"), std::string::npos)
            << queued[0];
    }
    // Reported once: a third start finds nothing pending.
    Rig third(path);
    EXPECT_TRUE(third.outbox.clips_left_pending(kg::events::kClipRestarted).empty());
    fs::remove_all(dir);
}

TEST(Outbox, APendingClipRecordThatCannotBeReadOrPointsOutsideTheEvidenceIsForgotten) {
    const fs::path dir = fs::temp_directory_path() / ("kg-outbox-bad-clip-" + std::to_string(getpid()));
    fs::create_directories(dir);
    Rig rig((dir / "outbox.db").string());
    auto odd = [&rig](const std::string& id, const std::string& record) {
        auto m = alert(id);
        m.clip = {kg::outbox::ClipMark::Kind::pending, id, record};
        rig.store.append(m);
    };
    odd("not-json", "{");
    odd("no-path", R"({"camera":"cooking","start_ms":1})");
    odd("up", R"({"camera":"cooking","path":"../../etc/passwd.mp4","start_ms":1})");
    odd("absolute", R"({"camera":"cooking","path":"/etc/cron.d/x.mp4","start_ms":1})");
    odd("not-a-clip", R"({"camera":"cooking","path":"cooking/2026-09-22/x-start.jpg","start_ms":1})");
    rig.outbox.submit(clip_start("good"));
    const auto clips = rig.outbox.clips_left_pending(kg::events::kClipRestarted);
    ASSERT_EQ(clips.size(), 1u);
    EXPECT_EQ(clips[0].event_id, "good");
    ASSERT_EQ(rig.store.pending_clips().size(), 1u);  // the odd ones forgotten, "good" until reported
    try {
        kg::outbox::clip_from_record("up", R"({"camera":"c","path":"../x.mp4","start_ms":1})", "e");
        ADD_FAILURE() << "no error";
    } catch (const std::runtime_error& e) {
        EXPECT_STREQ(e.what(),
                     "pending clip of event up: path '../x.mp4' is not an .mp4 inside the evidence folder");
    }
    fs::remove_all(dir);
}

namespace {

double process_cpu_seconds() {
    timespec t{};
    ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// Delivered from memory while the disk is full: the start that promised the clip was stored (its
// record says pending), its report was kept in memory and delivered from there. Once the store works,
// the record must say reported, or the next start sends the report again in its error form.
int run_report_delivered_from_memory(const fs::path& dir) {
    int failed = 0;
    auto check = [&failed](int bit, bool ok) { failed |= ok ? 0 : 1 << bit; };
    kg::outbox::SqliteStore store((dir / "outbox.db").string(), {});
    kg::config::Mqtt mqtt = Rig::mqtt();
    mqtt.url = std::string("tcp://127.0.0.1:") + std::getenv("KG_TEST_BROKER_PORT");
    kg::publish::MqttLink link(mqtt, "kitchen/s/availability", kg::Logging::null_logger());
    kg::outbox::Outbox outbox(store, link, kg::publish::Topics("kitchen", "s"), "s",
                              kg::Logging::null_logger());
    outbox.submit(clip_start("promised"));
    outbox.submit(camera_event("promised", EventState::end));
    check(0, store.pending_clips().size() == 1 && store.open_events().empty());

    DiskFull disk(dir);  // no file of the folder may grow past its present size
    kg::events::ClipReport report;
    report.event_id = "promised";
    report.camera = "cooking";
    report.path = "cooking/2026-09-22/promised.mp4";
    report.seconds = 7;
    report.bytes = 1000;
    report.error = std::string(5000, 'x');  // padded: the WAL cannot take it in what its last frames left
    outbox.submit_clip(report);
    check(1, outbox.in_memory() == 1);

    link.start();
    outbox.start();
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (outbox.in_memory() > 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    check(2, outbox.in_memory() == 0);  // delivered from memory
    // Each once: the start and the end, stored and acknowledged but not removable while the disk is
    // full, are skipped, not sent again and again ahead of the report.
    check(5, outbox.delivered() == 3);
    check(3, store.pending_clips().size() == 1);  // the full disk keeps the record as it was
    // Nothing left to send, two rows the store cannot remove: the sender waits for work instead of
    // reading the store again and again (it took a whole core for as long as the disk stayed full).
    const double cpu_before = process_cpu_seconds();
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    check(7, process_cpu_seconds() - cpu_before < 0.5);

    disk.free();
    const auto settled = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!store.pending_clips().empty() && std::chrono::steady_clock::now() < settled)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    check(4, store.pending_clips().empty());
    // The report sent from memory is kept for replay like the stored messages sent before it.
    while (store.sent_count() < 3 && std::chrono::steady_clock::now() < settled)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto kept = store.whereabouts(1, 3, static_cast<std::int64_t>(std::time(nullptr))).kept;
    check(6, kept.size() == 3 && kept[2].topic == "kitchen/s/events/promised/clip" &&
                 store.highest_acknowledged() == 3 && outbox.acknowledged() == 3);
    outbox.stop(std::chrono::seconds(2));
    link.stop();
    return failed;
}

}  // namespace

TEST(Outbox, WhileTheDiskIsFullEachMessageGoesOnceAndAReportFromMemoryIsNotSentAgainAtTheNextStart) {
    if (!kg::test::TestBroker::available())
        GTEST_SKIP() << "needs Mosquitto (" << kg::test::TestBroker::kMosquitto << ")";
    kg::test::TestBroker broker;
    setenv("KG_TEST_BROKER_PORT", std::to_string(broker.port()).c_str(), 1);
    expect_child_passes(run_report_delivered_from_memory);
}

// --- Sequence numbers and replay (docs/mqtt.md) ---

namespace {

using nlohmann::json;

struct Queued {
    std::string topic, payload;
    Priority priority;
    std::int64_t stream_seq;
};

std::vector<Queued> drain_all(kg::outbox::SqliteStore& store) {
    std::vector<Queued> out;
    while (auto m = store.front()) {
        out.push_back({m->topic, m->payload, m->priority, m->stream_seq});
        store.remove(m->seq);
    }
    return out;
}

kg::events::ClipReport clip_report(const std::string& id) {
    kg::events::ClipReport c;
    c.event_id = id;
    c.camera = "cooking";
    c.start_time = at_ms(1'790'000'000'123);
    c.path = "cooking/2026-09-22/" + id + ".mp4";
    c.seconds = 7;
    c.bytes = 1000;
    return c;
}

kg::outbox::ReplayRequest request(const std::string& stream, std::int64_t from, std::int64_t to) {
    return {"r-1", "s", stream, "monitor-1", "2026-12-01T10:00:00.000Z", from, to};
}

struct TempDir {
    fs::path dir =
        fs::temp_directory_path() / ("kg-outbox-" + std::to_string(getpid()) + "-" +
                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    TempDir() { fs::create_directories(dir); }
    ~TempDir() { fs::remove_all(dir); }
    std::string db() const { return (dir / "outbox.db").string(); }
};

}  // namespace

TEST(Outbox, NumbersEveryEventAndClipReportInTheOrderAcceptedAndGoesOnAfterARestart) {
    TempDir tmp;
    std::string stream;
    {
        Rig rig(tmp.db());
        stream = rig.store.stream();
        const auto start = clip_start("e1");
        rig.outbox.submit(start);
        rig.outbox.submit_snapshot(start, "JPEG");
        rig.outbox.submit_clip(clip_report("e1"));
        rig.outbox.submit(sensor_event("f1", EventState::start));
        rig.outbox.enqueue({0, "kitchen/s/sensors/f/rollup", R"({"min":1})", 1, false, Priority::telemetry});
        const auto queued = drain_all(rig.store);
        ASSERT_EQ(queued.size(), 5u);
        // The payload the room reads: the event's own fields, then stream and seq.
        auto expected = json::parse(kg::publish::event_payload(start, "s"));
        expected["stream"] = stream;
        expected["seq"] = 1;
        EXPECT_EQ(json::parse(queued[0].payload), expected);
        EXPECT_EQ(queued[0].stream_seq, 1);
        EXPECT_EQ(queued[1].payload, "JPEG");  // snapshots have no number
        EXPECT_EQ(queued[1].stream_seq, 0);
        const auto clip = json::parse(queued[2].payload);
        EXPECT_EQ(clip["seq"], 2);
        EXPECT_EQ(clip["stream"], stream);
        EXPECT_EQ(clip["id"], "e1");
        EXPECT_EQ(json::parse(queued[3].payload)["seq"], 3);
        EXPECT_EQ(queued[4].payload, R"({"min":1})");  // roll-ups neither
    }
    Rig again(tmp.db());
    EXPECT_EQ(again.store.stream(), stream);
    again.outbox.submit(camera_event("e2", EventState::start));
    const auto queued = drain_all(again.store);
    ASSERT_EQ(queued.size(), 1u);
    EXPECT_EQ(json::parse(queued[0].payload)["seq"], 4);  // never a number the first run gave
    EXPECT_EQ(again.store.highest_acknowledged(), 4);
}

// After a broker outage of days, thousands of sensor roll-ups were queued ahead of an alert raised
// meanwhile, and it went out after each one's round trip: half an hour late on a mobile uplink
// (review). Alerts and their evidence go first, in the order committed; roll-ups after them, in
// theirs; replay answers last.
TEST(Outbox, AnAlertGoesAheadOfTheRollUpsQueuedBeforeIt) {
    TempDir tmp;
    Rig rig(tmp.db());
    auto rollup = [&](int minute) {
        rig.outbox.enqueue({0, "kitchen/s/sensors/f/rollup", fmt::format(R"({{"minute":{}}})", minute), 1,
                            false, Priority::telemetry});
    };
    for (int m = 0; m < 500; ++m) rollup(m);
    const auto start = clip_start("e1");
    rig.outbox.submit(start);
    rollup(500);
    rig.outbox.submit_snapshot(start, "JPEG");
    rig.outbox.submit_clip(clip_report("e1"));
    rig.outbox.submit(sensor_event("f1", EventState::start));
    const auto queued = drain_all(rig.store);
    ASSERT_EQ(queued.size(), 505u);
    EXPECT_EQ(json::parse(queued[0].payload)["seq"], 1);
    EXPECT_EQ(queued[1].payload, "JPEG");
    EXPECT_EQ(json::parse(queued[2].payload)["seq"], 2);  // the clip report
    EXPECT_EQ(json::parse(queued[3].payload)["seq"], 3);  // the fridge's alert
    for (int m = 0; m <= 500; ++m) {
        ASSERT_EQ(queued[4 + static_cast<std::size_t>(m)].payload, fmt::format(R"({{"minute":{}}})", m)) << m;
    }
}

namespace {

// Numbers given while the store fails travel with the messages kept in memory, in order, into the
// store once it works.
int run_disk_full_numbers(const fs::path& dir) {
    int failed = 0;
    auto check = [&failed](int bit, bool ok) { failed |= ok ? 0 : 1 << bit; };
    const auto path = (dir / "outbox.db").string();
    {
        Rig rig(path);
        rig.outbox.submit(camera_event("a", EventState::start));
        DiskFull disk(dir);
        for (const char* id : {"b", "c", "d"}) {
            auto e = camera_event(id, EventState::start);
            e.label = std::string(5000, 'x');  // padded: the WAL cannot take it in what its last frames left
            rig.outbox.submit(e);
        }
        check(0, rig.outbox.in_memory() == 3);
        disk.free();
        rig.outbox.submit(camera_event("e", EventState::start));
        check(2, rig.outbox.in_memory() == 0);
        std::string seqs;
        for (const auto& q : drain_all(rig.store)) {
            if (q.topic == "kitchen/s/events") seqs += std::to_string(q.stream_seq) + ",";
        }
        check(3, seqs == "1,2,3,4,5,");
    }
    Rig again(path);
    check(4, again.store.last_stream_seq() == 5);
    return failed;
}

}  // namespace

TEST(Outbox, NumbersGivenWhileTheStoreFailsGoWithTheMessagesIntoTheStore) {
    expect_child_passes(run_disk_full_numbers);
}

TEST(Outbox, AnswersAReplayRequestWithKeptMessagesAndOneLostMessagePerRun) {
    TempDir tmp;
    // Each message the same size (ids of one length, one-digit numbers): the sent table keeps 3.
    std::size_t each = 0;
    {
        Rig probe(":memory:");
        probe.outbox.submit(camera_event("ev-1", EventState::start));
        const auto m = probe.store.front();
        each = m->payload.size() + m->topic.size();
    }
    kg::outbox::SqliteStore::Limits limits;
    limits.keep_sent_bytes = 3 * each + each / 2;
    Rig rig(tmp.db(), limits);
    for (int i = 1; i <= 8; ++i)
        rig.outbox.submit(camera_event("ev-" + std::to_string(i), EventState::start));
    std::map<std::int64_t, std::string> original;
    for (int i = 1; i <= 6; ++i) {
        auto m = rig.store.front();
        original[m->stream_seq] = m->payload;
        if (m->stream_seq == 4) {
            rig.store.bury(*m, "the broker refused it");
        } else {
            rig.store.remove(m->seq);  // acknowledged: 1 and 2 then pushed out of the sent table
        }
    }
    const auto open_before = rig.store.open_events().size();
    const auto stream = rig.store.stream();

    const auto a = rig.outbox.answer(request(stream, 1, 12), kg::Clock::now());
    EXPECT_EQ(a.replayed, 3u);  // 3, 5, 6
    EXPECT_EQ(a.queued, 2u);    // 7, 8
    EXPECT_EQ(a.lost, 3u);      // 1-2 not kept, 4 moved aside
    EXPECT_EQ(a.lost_messages, 2u);
    EXPECT_EQ(a.ignored, 4u);                                // 9..12: never given
    EXPECT_EQ(rig.store.open_events().size(), open_before);  // a replay opens and closes nothing
    EXPECT_EQ(rig.store.last_stream_seq(), 8);               // and takes no number

    const auto queued = drain_all(rig.store);
    ASSERT_EQ(queued.size(), 2u + 5u);
    EXPECT_EQ(queued[0].stream_seq, 7);  // behind what was queued
    EXPECT_EQ(queued[1].stream_seq, 8);
    const auto lost = [&](const Queued& q, int from, int to, const char* reason) {
        EXPECT_EQ(q.topic, "kitchen/s/lost");
        const auto j = json::parse(q.payload);
        EXPECT_EQ(j["site"], "s");
        EXPECT_EQ(j["stream"], stream);
        EXPECT_EQ(j["from"], from);
        EXPECT_EQ(j["to"], to);
        EXPECT_EQ(j["reason"], reason);
        EXPECT_EQ(j["request_id"], "r-1");
        EXPECT_TRUE(j["time"].is_string());
    };
    lost(queued[2], 1, 2, "not kept");
    const auto replayed = [&](const Queued& q, std::int64_t n) {
        EXPECT_EQ(q.topic, "kitchen/s/events");
        EXPECT_EQ(q.payload, original[n]);  // unchanged, byte for byte
        EXPECT_EQ(q.stream_seq, n);         // its own number, not a new one
    };
    replayed(queued[3], 3);
    lost(queued[4], 4, 4, "moved aside");
    replayed(queued[5], 5);
    replayed(queued[6], 6);
    for (std::size_t i = 2; i < queued.size(); ++i) EXPECT_EQ(queued[i].priority, Priority::replay) << i;

    // A replayed message acknowledged again is not a new sent message.
    EXPECT_EQ(rig.store.highest_acknowledged(), 8);
    rig.outbox.submit(camera_event("ev-9", EventState::start));
    EXPECT_EQ(rig.store.front()->stream_seq, 9);
}

// Three events acknowledged (kept in the sent table), then the queue filled with undelivered alerts up
// to max_messages: an answer gets no room, and no alert is dropped for it.
// The broker is away: the first answer is still queued when the room asks again.
TEST(Outbox, ASecondRequestWhileTheAnswerIsQueuedQueuesNothingAgain) {
    TempDir tmp;
    Rig rig(tmp.db());
    for (int i = 1; i <= 3; ++i)
        rig.outbox.submit(camera_event("ev-" + std::to_string(i), EventState::start));
    drain_all(rig.store);
    const auto first = rig.outbox.answer(request(rig.store.stream(), 1, 3), kg::Clock::now());
    EXPECT_EQ(first.replayed, 3u);
    const auto second = rig.outbox.answer(request(rig.store.stream(), 1, 3), kg::Clock::now());
    EXPECT_EQ(second.replayed, 0u);
    EXPECT_EQ(second.queued, 3u);  // on their way
    EXPECT_EQ(rig.store.size(), 3u);
    // Acknowledged, a copy is no new sent message, even after the original's keep_sent ran out.
    rig.store.prune_sent(std::time(nullptr) + 8 * 24 * 3600);
    ASSERT_EQ(rig.store.sent_count(), 0u);
    std::string seqs;
    for (const auto& q : drain_all(rig.store)) seqs += std::to_string(q.stream_seq) + ",";
    EXPECT_EQ(seqs, "1,2,3,");
    EXPECT_EQ(rig.store.sent_count(), 0u);
    EXPECT_EQ(rig.store.highest_acknowledged(), 3);
    EXPECT_EQ(rig.store.last_stream_seq(), 3);
}

TEST(Outbox, AReplayAnswerNeverDropsAnUndeliveredAlert) {
    TempDir tmp;
    kg::outbox::SqliteStore::Limits limits;
    limits.max_messages = 5;
    Rig rig(tmp.db(), limits);
    for (int i = 1; i <= 3; ++i)
        rig.outbox.submit(camera_event("ev-" + std::to_string(i), EventState::start));
    drain_all(rig.store);
    for (int i = 4; i <= 8; ++i)
        rig.outbox.submit(camera_event("ev-" + std::to_string(i), EventState::start));
    ASSERT_EQ(rig.store.size(), 5u);
    rig.outbox.answer(request(rig.store.stream(), 1, 3), kg::Clock::now());
    EXPECT_EQ(rig.store.dropped_total(), 0u);
    std::string seqs;
    for (const auto& q : drain_all(rig.store)) seqs += std::to_string(q.stream_seq) + ",";
    EXPECT_EQ(seqs, "4,5,6,7,8,");  // the live alerts, every one
}

namespace {

// While the store fails the room is not answered (it asks again): nothing of an answer goes into the
// memory overflow, where it could push out the live messages waiting there.
int run_no_answer_while_the_store_fails(const fs::path& dir) {
    int failed = 0;
    auto check = [&failed](int bit, bool ok) { failed |= ok ? 0 : 1 << bit; };
    Rig rig((dir / "outbox.db").string());
    for (int i = 1; i <= 3; ++i) {
        auto e = camera_event("ev-" + std::to_string(i), EventState::start);
        e.label =
            std::string(5000, 'x');  // padded: the WAL cannot take an answer in what its last frames left
        rig.outbox.submit(e);
    }
    drain_all(rig.store);
    {
        DiskFull disk(dir);
        const auto answer_throws = [&] {
            try {
                rig.outbox.answer(request(rig.store.stream(), 1, 3), kg::Clock::now());
            } catch (const kg::outbox::StoreError&) {
                return true;
            }
            return false;
        };
        // The store fails at the answer itself: nothing waits in memory yet.
        check(0, answer_throws());
        check(1, rig.outbox.in_memory() == 0);
        // Live messages wait in memory: not answered either.
        auto e = camera_event("ev-4", EventState::start);
        e.label = std::string(5000, 'x');
        rig.outbox.submit(e);
        check(2, rig.outbox.in_memory() == 1);
        check(3, answer_throws());
        check(4, rig.outbox.in_memory() == 1);
        disk.free();
    }
    rig.outbox.submit(camera_event("ev-5", EventState::start));
    std::string seqs;
    for (const auto& q : drain_all(rig.store)) seqs += std::to_string(q.stream_seq) + ",";
    check(5, seqs == "4,5,");
    return failed;
}

}  // namespace

TEST(Outbox, ARequestIsNotAnsweredWhileTheStoreFails) {
    expect_child_passes(run_no_answer_while_the_store_fails);
}

TEST(Outbox, AReplayRequestForAnotherStreamIsAnsweredLostAsAWhole) {
    TempDir tmp;
    Rig rig(tmp.db());
    rig.outbox.submit(camera_event("ev-1", EventState::start));
    drain_all(rig.store);
    const std::string other =
        rig.store.stream() == "0123456789abcdef" ? "fedcba9876543210" : "0123456789abcdef";
    const auto a = rig.outbox.answer(request(other, 1, 50), kg::Clock::now());
    EXPECT_EQ(a.lost, 50u);
    EXPECT_EQ(a.lost_messages, 1u);
    EXPECT_EQ(a.replayed, 0u);
    const auto queued = drain_all(rig.store);
    ASSERT_EQ(queued.size(), 1u);
    const auto j = json::parse(queued[0].payload);
    EXPECT_EQ(j["stream"], other);  // the stream asked about
    EXPECT_EQ(j["from"], 1);
    EXPECT_EQ(j["to"], 50);  // past the highest number: that stream's numbers are not ours to know
    EXPECT_EQ(j["reason"], "unknown stream");
}

// Snapshots go unnumbered: a broker that lost a start and its snapshot got the start back from a
// replay, never the picture, though it was still on the gateway's disk (review: 3 of 11 alerts
// without theirs). A replayed start is followed by its snapshot, read again; one no longer there
// is left out.
TEST(Outbox, AReplayedStartIsFollowedByItsSnapshotIfStillThere) {
    TempDir tmp;
    Rig rig(tmp.db());
    std::vector<std::string> asked;
    rig.outbox.set_snapshot_reader([&](const std::string& relative) -> std::optional<std::string> {
        asked.push_back(relative);
        if (relative == "cooking/ev-1-start.jpg") return std::string("\xff\xd8 the picture");
        return std::nullopt;
    });
    for (const char* id : {"ev-1", "ev-2"}) {
        auto e = camera_event(id, EventState::start);
        e.evidence.snapshot = std::string("cooking/") + id + "-start.jpg";
        rig.outbox.submit(e);
    }
    rig.outbox.submit(camera_event("ev-1", EventState::end));
    auto outside = camera_event("ev-3", EventState::start);  // a damaged row: never read
    outside.evidence.snapshot = "../../ev-3-start.jpg";
    rig.outbox.submit(outside);
    for (auto& q : drain_all(rig.store)) (void)q;  // all acknowledged
    const auto a = rig.outbox.answer(request(rig.store.stream(), 1, 4), kg::Clock::now());
    EXPECT_EQ(a.replayed, 4u);
    EXPECT_EQ(a.snapshots, 1u);
    EXPECT_EQ(asked, (std::vector<std::string>{"cooking/ev-1-start.jpg", "cooking/ev-2-start.jpg"}));
    const auto queued = drain_all(rig.store);
    ASSERT_EQ(queued.size(), 5u);
    EXPECT_EQ(queued[4].topic, "kitchen/s/events/ev-1/snapshot");  // after the whole answer
    EXPECT_EQ(queued[4].payload, "\xff\xd8 the picture");
    EXPECT_EQ(queued[4].priority, Priority::replay);
}

// A picture goes only into room the queue has to spare: queued at Priority::replay into a full
// queue, it pushed out the replayed alerts it came with (review of the replayed snapshots).
TEST(Outbox, AReplayedSnapshotNeverPushesOutAMessage) {
    TempDir tmp;
    kg::outbox::SqliteStore::Limits limits;
    limits.max_bytes = 64u << 10;
    Rig rig(tmp.db(), limits);
    rig.outbox.set_snapshot_reader(
        [](const std::string&) -> std::optional<std::string> { return std::string(40u << 10, 'j'); });
    auto e = camera_event("ev-1", EventState::start);
    e.evidence.snapshot = "cooking/ev-1-start.jpg";
    rig.outbox.submit(e);
    for (auto& q : drain_all(rig.store)) (void)q;
    const auto a = rig.outbox.answer(request(rig.store.stream(), 1, 1), kg::Clock::now());
    EXPECT_EQ(a.replayed, 1u);
    EXPECT_EQ(a.snapshots, 0u);
    const auto queued = drain_all(rig.store);
    ASSERT_EQ(queued.size(), 1u);
    EXPECT_EQ(queued[0].topic, "kitchen/s/events");
    EXPECT_EQ(rig.store.dropped_total(), 0u);
}

namespace {

struct BadRequest {
    const char* name;
    std::string payload;
    const char* error;  // a fragment of the message
};

void PrintTo(const BadRequest& c, std::ostream* os) { *os << c.name; }

class ReplayRequests : public ::testing::TestWithParam<BadRequest> {};

std::string request_json(const std::string& change) {
    auto j = json::parse(
        R"({"request_id":"r-7","site":"s","stream":"00000000000000ff","from":41,"to":57,"monitor":"m-1",)"
        R"("time":"2026-12-01T10:00:00.000Z"})");
    if (!change.empty()) j.merge_patch(json::parse(change));
    return j.dump();
}

}  // namespace

TEST(ReplayRequest, AValidRequestIsRead) {
    const auto r = kg::outbox::parse_replay_request(request_json(""), "s");
    EXPECT_EQ(r.request_id, "r-7");
    EXPECT_EQ(r.stream, "00000000000000ff");
    EXPECT_EQ(r.from, 41);
    EXPECT_EQ(r.to, 57);
    EXPECT_EQ(r.monitor, "m-1");
    EXPECT_EQ(kg::outbox::parse_replay_request(request_json(R"({"from":1,"to":10000})"), "s").to, 10000);
}

TEST_P(ReplayRequests, AreRefusedSayingWhatIsWrong) {
    try {
        kg::outbox::parse_replay_request(GetParam().payload, "s");
        ADD_FAILURE() << "accepted: " << GetParam().payload;
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find(GetParam().error), std::string::npos) << e.what();
    }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ReplayRequests,
    ::testing::Values(
        BadRequest{"not_json", "give me 41 to 57", "not JSON"},
        BadRequest{"not_an_object", "[41, 57]", "a JSON array, not an object"},
        BadRequest{"no_request_id", request_json(R"({"request_id":null})"), "no 'request_id'"},
        BadRequest{"from_as_text", request_json(R"({"from":"41"})"), "'from' is string, not an integer"},
        BadRequest{"to_as_float", request_json(R"({"to":57.5})"), "'to' is number, not an integer"},
        BadRequest{"zero", request_json(R"({"from":0})"), "'from' is 0: numbers start at 1"},
        BadRequest{"negative", request_json(R"({"to":-3})"), "'to' is -3"},
        BadRequest{"reversed", request_json(R"({"from":58})"), "'from' 58 is after 'to' 57"},
        BadRequest{"too_many", request_json(R"({"from":1,"to":10001})"), "10001 numbers, more than 10000"},
        BadRequest{"other_site", request_json(R"({"site":"t"})"), "it is for site 't', this is 's'"},
        BadRequest{"bad_stream", request_json(R"({"stream":"ABC"})"), "not 16 lowercase hex digits"},
        BadRequest{"no_monitor", request_json(R"({"monitor":null})"), "no 'monitor'"},
        BadRequest{"time_as_number", request_json(R"({"time":5})"), "'time' is number, not a string"}));

// A queue full for days of an outage dropped or refused a message at every new one, each a line:
// thousands a day pushing the rest out of the journal (the review of the 53rd session). Said once
// a minute at most; the counters have each.
TEST(Outbox, AFullQueueSaysSoOnceAMinuteAndCountsEveryDrop) {
    TempDir tmp;
    std::ostringstream log_text;
    auto log = std::make_shared<spdlog::logger>("outbox",
                                                std::make_shared<spdlog::sinks::ostream_sink_mt>(log_text));
    kg::outbox::SqliteStore store(tmp.db(), {3, 1u << 20});
    kg::config::Mqtt mqtt;
    mqtt.url = "tcp://127.0.0.1:1";  // never started: nothing is sent in this test
    mqtt.client_id = "outbox-test";
    kg::publish::MqttLink link(mqtt, "kitchen/s/availability", kg::Logging::null_logger());
    kg::outbox::Outbox outbox(store, link, kg::publish::Topics("kitchen", "s"), "s", log);
    for (int i = 0; i < 30; ++i) EXPECT_TRUE(outbox.enqueue(alert("a" + std::to_string(i))));
    for (int i = 0; i < 30; ++i)
        outbox.enqueue(Message{0, "kitchen/s/sensors/f/rollup", "r", 1, false, Priority::telemetry});
    EXPECT_EQ(store.dropped_total(), 27u);
    EXPECT_EQ(store.refused_total(), 30u);
    log->flush();
    const auto text = log_text.str();
    const auto count = [&](const std::string& what) {
        std::size_t n = 0;
        for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
        return n;
    };
    EXPECT_EQ(count("outbox full: dropped"), 1u) << text;
    EXPECT_EQ(count("outbox full: refused"), 1u) << text;
}

TEST(ReplayDesk, LogsABadRequestAndAnswersTheNextOneOffTheCallersThread) {
    TempDir tmp;
    Rig rig(tmp.db());
    std::ostringstream log_text;
    auto log = std::make_shared<spdlog::logger>("replay",
                                                std::make_shared<spdlog::sinks::ostream_sink_mt>(log_text));
    kg::outbox::ReplayDesk desk(rig.outbox, "s", log);
    desk.start();
    desk.submit("{\"from\": 41\nerror [outbox] FORGED");                  // cut short, with a line of its own
    desk.submit(request_json(R"({"site":"x\nerror [outbox] FORGED"})"));  // quoted in the reason
    desk.submit(request_json(R"({"stream":")" + rig.store.stream() + R"(","from":1,"to":3})"));
    desk.submit(request_json(R"({"from":1,"to":3})"));  // another stream
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (rig.store.size() < 1 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    desk.stop();
    log->flush();
    EXPECT_NE(log_text.str().find("replay request ignored: not JSON: {\"from\": 41 error [outbox] FORGED"),
              std::string::npos)
        << log_text.str();
    // A line feed in what came was written as is, and made a log line that the gateway never wrote.
    EXPECT_EQ(log_text.str().find("\nerror [outbox] FORGED"), std::string::npos) << log_text.str();
    // Nothing was ever numbered: 1..3 are above the highest, ignored; the other stream is lost.
    EXPECT_NE(log_text.str().find("0 sent again, 0 still queued, 0 lost in 0 lost message(s), 3 above"),
              std::string::npos)
        << log_text.str();
    const auto queued = drain_all(rig.store);
    ASSERT_EQ(queued.size(), 1u);
    EXPECT_EQ(json::parse(queued[0].payload)["reason"], "unknown stream");
}

TEST(Outbox, ARunOfLostNumbersLongerThanAChunkIsOneLostMessageAndTheRestComeInOrder) {
    TempDir tmp;
    std::size_t each = 0;
    {
        Rig probe(":memory:");
        probe.outbox.submit(camera_event("ev-1000", EventState::start));
        const auto m = probe.store.front();
        each = m->payload.size() + m->topic.size() + 1;  // numbers up to 1200: one digit more at most
    }
    kg::outbox::SqliteStore::Limits limits;
    limits.keep_sent_bytes = 150 * each;  // the newest ~150 of 1200 are kept
    Rig rig(tmp.db(), limits);
    for (int i = 1000; i < 2200; ++i)
        rig.outbox.submit(camera_event("ev-" + std::to_string(i), EventState::start));
    std::map<std::int64_t, std::string> original;
    while (auto m = rig.store.front()) {
        original[m->stream_seq] = m->payload;
        rig.store.remove(m->seq);
    }
    int asked = 0;
    const auto cut = rig.outbox.answer(request(rig.store.stream(), 1, 1200), kg::Clock::now(),
                                       [&asked] { return ++asked > 1; });  // a stop during the second chunk
    EXPECT_EQ(cut.stopped_at, 1001);
    EXPECT_EQ(cut.lost_messages, 0u);  // the run was not ended: the room asks again
    EXPECT_EQ(rig.store.size(), 0u);
    const auto a = rig.outbox.answer(request(rig.store.stream(), 1, 1200), kg::Clock::now());
    EXPECT_EQ(a.stopped_at, 0);
    EXPECT_EQ(a.lost_messages, 1u);
    EXPECT_EQ(a.lost + a.replayed, 1200u);
    EXPECT_GE(a.replayed, 140u);
    const auto queued = drain_all(rig.store);
    ASSERT_EQ(queued.size(), 1 + a.replayed);
    const auto lost = json::parse(queued[0].payload);
    EXPECT_EQ(lost["from"], 1);
    EXPECT_EQ(lost["to"], static_cast<std::int64_t>(a.lost));  // across the chunks of 500
    for (std::size_t i = 1; i < queued.size(); ++i) {
        const auto n = static_cast<std::int64_t>(a.lost + i);
        EXPECT_EQ(queued[i].payload, original[n]) << n;  // in order, unchanged
    }
}
