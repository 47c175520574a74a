// The outbox when its store fails: a real SQLite file that cannot grow (the disk is full, here
// RLIMIT_FSIZE in a child process), then can again.
#include "outbox/outbox.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>

#include "common/logging.hpp"
#include "outbox/open_record.hpp"

namespace fs = std::filesystem;
using kg::outbox::Message;
using kg::outbox::Priority;

namespace {

using kg::events::Event;
using kg::events::EventState;

// A store, a broker link that is never started (nothing is sent) and the outbox between them.
struct Rig {
    explicit Rig(const std::string& path)
        : store(path, {}),
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

// A port nobody listens on now.
int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
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

    disk.free();
    const auto settled = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!store.pending_clips().empty() && std::chrono::steady_clock::now() < settled)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    check(4, store.pending_clips().empty());
    outbox.stop(std::chrono::seconds(2));
    link.stop();
    return failed;
}

}  // namespace

TEST(Outbox, WhileTheDiskIsFullEachMessageGoesOnceAndAReportFromMemoryIsNotSentAgainAtTheNextStart) {
    const char* mosquitto = "/usr/sbin/mosquitto";
    if (!fs::exists(mosquitto)) GTEST_SKIP() << "needs Mosquitto (" << mosquitto << ")";
    const std::string port = std::to_string(free_port());
    char* argv[] = {const_cast<char*>(mosquitto), const_cast<char*>("-p"), const_cast<char*>(port.c_str()),
                    nullptr};
    posix_spawn_file_actions_t quiet;  // its log would fill the test's output
    posix_spawn_file_actions_init(&quiet);
    posix_spawn_file_actions_addopen(&quiet, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&quiet, 2, "/dev/null", O_WRONLY, 0);
    pid_t broker = 0;
    ASSERT_EQ(posix_spawn(&broker, mosquitto, &quiet, nullptr, argv, environ), 0);
    posix_spawn_file_actions_destroy(&quiet);
    setenv("KG_TEST_BROKER_PORT", port.c_str(), 1);
    expect_child_passes(run_report_delivered_from_memory);
    ::kill(broker, SIGTERM);
    ::waitpid(broker, nullptr, 0);
}
