// Evidence: the packet ring, MP4 clips cut from it without re-encoding, the budgeted store, and
// annotated snapshots.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <opencv2/imgcodecs.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "common/durable_file.hpp"
#include "common/logging.hpp"
#include "evidence/clip_writer.hpp"
#include "evidence/event_evidence.hpp"
#include "evidence/evidence_store.hpp"
#include "evidence/packet_ring.hpp"
#include "evidence/snapshot.hpp"
#include "evidence/training_frames.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
    auto d = fs::temp_directory_path() / ("kg-evidence-" + std::to_string(getpid()) + "-" +
                                          ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

// The clip made once per test process, removed when the process ends (CTest runs each test in a process
// of its own: a file left behind per test filled /tmp with a megabyte a test, every run).
struct MadeClip {
    fs::path path;
    ~MadeClip() {
        std::error_code ignored;  // nothing to do about a file already gone at exit
        fs::remove(path, ignored);
    }
};

// 12 s of H.264 at 25 fps with a key frame every second.
std::string clip_source() {
    static const MadeClip clip = [] {
        const auto p = fs::temp_directory_path() / ("kg-evidence-src-" + std::to_string(getpid()) + ".mp4");
        const std::string cmd =
            "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x180:rate=25 -t 12 -c:v libx264 -preset "
            "ultrafast -g 25 -keyint_min 25 -sc_threshold 0 -pix_fmt yuv420p " +
            p.string();
        if (std::system(cmd.c_str()) != 0) throw std::runtime_error("ffmpeg failed");
        return MadeClip{p};
    }();
    return clip.path.string();
}

double probe_duration(const std::string& path, bool* starts_with_key) {
    AVFormatContext* ctx = nullptr;
    if (avformat_open_input(&ctx, path.c_str(), nullptr, nullptr) < 0) return -1;
    avformat_find_stream_info(ctx, nullptr);
    const double d = ctx->duration > 0 ? ctx->duration / static_cast<double>(AV_TIME_BASE) : -1;
    AVPacket* pkt = av_packet_alloc();
    if (av_read_frame(ctx, pkt) >= 0) *starts_with_key = (pkt->flags & AV_PKT_FLAG_KEY) != 0;
    av_packet_free(&pkt);
    avformat_close_input(&ctx);
    return d;
}

}  // namespace

// Passes each packet to the ring, noting the time just before and just after: the ring stamps it
// with its arrival in between.
struct Timed final : kg::ingest::PacketObserver {
    explicit Timed(kg::evidence::PacketRing& r, std::chrono::milliseconds p = {}) : ring(r), pace(p) {}
    void on_stream_opened(const AVStream& stream) override {
        opened.emplace_back(stream.codecpar->width, stream.codecpar->height);
        ring.on_stream_opened(stream);
    }
    void on_packet(const AVPacket& packet, const AVStream& stream) override {
        if (pace.count() > 0) std::this_thread::sleep_for(pace);
        before.push_back(kg::Clock::now());
        ring.on_packet(packet, stream);
        after.push_back(kg::Clock::now());
        steady_after.push_back(std::chrono::steady_clock::now());
    }
    void on_stream_closed() override { ring.on_stream_closed(); }
    kg::evidence::PacketRing& ring;
    std::chrono::milliseconds pace;  // a camera's packets come at a rate; a file's, at once
    std::vector<kg::TimePoint> before, after;
    std::vector<kg::SteadyPoint> steady_after;
    std::vector<std::pair<int, int>> opened;  // the picture size of each stream told
};

TEST(PacketRing, CutsAClipStartingOnAKeyFrameWithoutReencoding) {
    // Read the real file through the ingest, with the ring as its packet observer.
    kg::evidence::PacketRing ring(30s);
    Timed timed(ring);
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({clip_source()}, stop);
    input.set_packet_observer(&timed);
    input.open();
    while (input.next_frame()) {
    }
    ASSERT_EQ(ring.packets(), 300u);

    // Its middle 3 s (packets 125 to 200 at 25 fps) by arrival time, from the times of those
    // packets themselves: a share of the whole read's time was 1.4 s of video on a busy machine,
    // where the reading stalls and then catches up.
    const auto span = ring.span(timed.before[125], timed.after[200]);
    ASSERT_FALSE(span.packets.empty());
    EXPECT_TRUE(span.packets.front().key);

    const auto dir = temp_dir();
    const auto path = (dir / "clip.mp4").string();
    const auto r = kg::evidence::write_mp4(span, path);
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_FALSE(fs::exists(path + ".part"));
    bool key = false;
    const double d = probe_duration(path, &key);
    EXPECT_TRUE(key);
    EXPECT_GT(d, 2.5);  // 3 s asked, from the key frame before: within a GOP (1 s)
    EXPECT_LT(d, 4.5);
    EXPECT_NEAR(r.seconds, d, 0.2);
    fs::remove_all(dir);
}

// What an RTSP camera with B-frames looks like to the ring: the first packets of the connection
// (its first key frame included) have no timestamps.
class DropFirstTimestamps final : public kg::ingest::PacketObserver {
public:
    DropFirstTimestamps(kg::ingest::PacketObserver& next, int count) : next_(next), left_(count) {}
    void on_stream_opened(const AVStream& s) override { next_.on_stream_opened(s); }
    void on_packet(const AVPacket& p, const AVStream& s) override {
        AVPacket* copy = av_packet_clone(&p);
        if (left_-- > 0) copy->pts = copy->dts = AV_NOPTS_VALUE;
        next_.on_packet(*copy, s);
        av_packet_free(&copy);
    }
    void on_stream_closed() override { next_.on_stream_closed(); }

private:
    kg::ingest::PacketObserver& next_;
    int left_;
};

TEST(PacketRing, AClipSkipsPacketsWithoutTimestampsAndStartsAtTheNextKeyFrame) {
    kg::evidence::PacketRing ring(30s);
    DropFirstTimestamps camera(ring, 30);  // the first GOP (25 packets) and the start of the second
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({clip_source()}, stop);
    input.set_packet_observer(&camera);
    input.open();
    while (input.next_frame()) {
    }
    const auto span = ring.span(kg::Clock::now() - 1h, kg::Clock::now());
    ASSERT_FALSE(span.packets.empty());
    const auto dir = temp_dir();
    const auto path = (dir / "clip.mp4").string();
    const auto r = kg::evidence::write_mp4(span, path);
    ASSERT_TRUE(r.ok) << r.error;
    bool key = false;
    const double d = probe_duration(path, &key);
    EXPECT_TRUE(key);
    // 12 s less two GOPs: packets 0-29 lost their timestamps, the key frames at 0 and 25 among them.
    EXPECT_NEAR(d, 10.0, 0.3) << "duration " << d;
    fs::remove_all(dir);
}

TEST(PacketRing, KeepsOnlyTheConfiguredSecondsFromAKeyFrame) {
    kg::evidence::PacketRing ring(0ms);  // keep as little as possible: one GOP
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({clip_source()}, stop);
    input.set_packet_observer(&ring);
    input.open();
    while (input.next_frame()) {
    }
    EXPECT_LE(ring.packets(), 26u);
    const auto span = ring.span(kg::Clock::now() - 1h, kg::Clock::now());
    ASSERT_FALSE(span.packets.empty());
    EXPECT_TRUE(span.packets.front().key);
}

TEST(PacketRing, NothingBufferedIsAClearError) {
    kg::evidence::PacketRing ring(10s);
    const auto r =
        kg::evidence::write_mp4(ring.span(kg::Clock::now() - 5s, kg::Clock::now()), "/tmp/never.mp4");
    EXPECT_FALSE(r.ok);
    EXPECT_FALSE(r.error.empty());
}

// A USB camera left to its own choice sends raw YUYV pictures, which no MP4 file can hold: the ring
// held 96 MiB of them for clips that all failed with "cannot write the MP4 header: Invalid
// argument" (a review). It keeps none, says why once, and a clip asked of it says why.
TEST(PacketRing, RawPicturesNoClipCanHoldAreNotKeptAndTheClipSaysWhy) {
    const auto dir = temp_dir();
    const auto raw = dir / "usb-camera.nut";
    const std::string cmd =
        "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x180:rate=25 -t 2 -c:v rawvideo "
        "-pix_fmt yuyv422 " +
        raw.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::ostringstream said;
    auto log =
        std::make_shared<spdlog::logger>("evidence", std::make_shared<spdlog::sinks::ostream_sink_mt>(said));
    kg::evidence::PacketRing ring(10s, 30s, kg::evidence::PacketRing::kDefaultMaxBytes, log);
    std::atomic<bool> stop{false};
    for (int connection = 0; connection < 2; ++connection) {
        kg::ingest::FfmpegInput input({raw.string()}, stop);
        input.set_packet_observer(&ring);
        input.open();
        int frames = 0;
        while (input.next_frame()) ++frames;
        EXPECT_EQ(frames, 50) << "the camera's pictures are analysed all the same";
    }
    EXPECT_EQ(ring.packets(), 0u);
    EXPECT_EQ(ring.bytes(), 0u);
    const auto r = kg::evidence::write_mp4(ring.span(kg::Clock::now() - 5s, kg::Clock::now()),
                                           (dir / "clip.mp4").string());
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("the camera sends rawvideo video, which an MP4 file cannot hold"),
              std::string::npos)
        << r.error;
    EXPECT_NE(r.error.find("input.format"), std::string::npos) << r.error;
    const auto text = said.str();
    EXPECT_NE(text.find("no clips: the camera sends rawvideo video"), std::string::npos) << text;
    EXPECT_EQ(text.find("no clips", text.find("no clips") + 1), std::string::npos) << "said once: " << text;
    fs::remove_all(dir);
}

TEST(EvidenceStore, TheBudgetIsNeverExceededAndTheOldestGoFirst) {
    const auto dir = temp_dir();
    kg::evidence::EvidenceStore store(dir, 1000, 24h);
    for (int i = 0; i < 20; ++i) {
        const auto r = store.write("cam/" + std::to_string(i) + ".jpg", std::string(150, 'x'));
        ASSERT_TRUE(r.ok) << r.error;
        EXPECT_LE(store.bytes(), 1000u);
        std::this_thread::sleep_for(2ms);
    }
    EXPECT_EQ(store.files(), 6u);
    EXPECT_FALSE(fs::exists(dir / "cam/13.jpg"));
    EXPECT_TRUE(fs::exists(dir / "cam/14.jpg"));
    EXPECT_TRUE(fs::exists(dir / "cam/19.jpg"));
    const auto big = store.write("cam/big.jpg", std::string(2000, 'x'));
    EXPECT_FALSE(big.ok);
    EXPECT_NE(big.error.find("budget"), std::string::npos);
    fs::remove_all(dir);
}

// A small disk holding the folder: its free space is its capacity less what the folder really
// holds and what the rest of the system has written there.
struct SmallDisk {
    fs::path dir;
    std::uint64_t capacity;
    std::uint64_t others = 0;
    std::optional<std::uint64_t> operator()(const fs::path&) const {
        std::uint64_t used = others;
        for (const auto& e : fs::recursive_directory_iterator(dir)) {
            if (e.is_regular_file()) used += e.file_size();
        }
        return used >= capacity ? 0 : capacity - used;
    }
};

// Each camera's events go to a folder a day: the files aged out or pushed out by the budget, and
// the folders stayed, one a camera a day, outside the budget (a review). A folder the store
// emptied goes, unless a write it reserved is under way in it; the camera's own folder stays.
TEST(EvidenceStore, AFolderItEmptiedGoesUnlessAWriteIsUnderWayInIt) {
    const auto dir = temp_dir();
    using Store = kg::evidence::EvidenceStore;
    Store store(dir, 1000, 24h, Store::Manages{}, 0, Store::disk_free, /*prune_folders=*/true);
    ASSERT_TRUE(store.write("cam/2026-01-01/a-start.jpg", std::string(100, 'x')).ok);
    ASSERT_TRUE(store.write("cam/2026-01-02/b-start.jpg", std::string(100, 'x')).ok);
    ASSERT_TRUE(store.write("cam/2026-01-03/c-start.jpg", std::string(100, 'x')).ok);
    // A clip reserved in the last day's folder, its file not written yet.
    ASSERT_TRUE(store.reserve("cam/2026-01-03/c.mp4", 300).ok);
    store.expire(kg::Clock::now() + 48h);
    EXPECT_EQ(store.files(), 0u);
    EXPECT_FALSE(fs::exists(dir / "cam/2026-01-01"));
    EXPECT_FALSE(fs::exists(dir / "cam/2026-01-02"));
    EXPECT_TRUE(fs::is_directory(dir / "cam/2026-01-03")) << "a write is under way in it";
    EXPECT_TRUE(fs::is_directory(dir / "cam"));
    { std::ofstream(dir / "cam/2026-01-03/c.mp4") << std::string(300, 'v'); }
    store.adopt("cam/2026-01-03/c.mp4");
    // The budget makes room: the oldest go, and their folders with them.
    ASSERT_TRUE(store.write("cam/2026-01-04/d-start.jpg", std::string(800, 'x')).ok);
    EXPECT_FALSE(fs::exists(dir / "cam/2026-01-03"));
    // A folder that holds something else (a person's note) is left.
    ASSERT_TRUE(store.write("cam/2026-01-05/e-start.jpg", std::string(100, 'x')).ok);
    { std::ofstream(dir / "cam/2026-01-05/note.txt") << "seen"; }
    EXPECT_EQ(store.remove("cam/2026-01-05/e-start.jpg").size(), 1u);
    EXPECT_TRUE(fs::exists(dir / "cam/2026-01-05/note.txt"));
    // A reserved write that failed lets its folder go with the next deletion.
    ASSERT_TRUE(store.reserve("cam/2026-01-04/f.mp4", 10).ok);
    store.release("cam/2026-01-04/f.mp4");
    store.expire(kg::Clock::now() + 48h);
    EXPECT_FALSE(fs::exists(dir / "cam/2026-01-04"));
    // The training frames' store keeps its folders: a labelling tool expects <camera>/images/.
    Store frames(dir / "frames", 1000, 24h);
    ASSERT_TRUE(frames.write("cam/images/x.jpg", "x").ok);
    frames.expire(kg::Clock::now() + 48h);
    EXPECT_TRUE(fs::is_directory(dir / "frames/cam/images"));
    fs::remove_all(dir);
}

TEST(EvidenceStore, ABudgetLargerThanTheDiskLeavesMinFreeOnIt) {
    const auto dir = temp_dir();
    fs::create_directories(dir);
    auto disk = std::make_shared<SmallDisk>(SmallDisk{dir, 2000});
    // The budget (10 000) is more than the disk (2 000): the floor (500) is what stops the folder.
    kg::evidence::EvidenceStore store(dir, 10000, 24h, {}, 500,
                                      [disk](const fs::path& p) { return (*disk)(p); });
    for (int i = 0; i < 20; ++i) {
        const auto r = store.write("cam/" + std::to_string(i) + ".jpg", std::string(200, 'x'));
        ASSERT_TRUE(r.ok) << r.error;
        EXPECT_GE(*(*disk)(dir), 500u) << "after file " << i;
        std::this_thread::sleep_for(2ms);
    }
    EXPECT_EQ(store.files(), 7u);  // 1 500 bytes usable: 7 files of 200
    EXPECT_FALSE(fs::exists(dir / "cam/12.jpg"));
    EXPECT_TRUE(fs::exists(dir / "cam/13.jpg"));
    EXPECT_TRUE(fs::exists(dir / "cam/19.jpg"));

    // Something else fills the disk: the folder gives way, and when it has nothing left to give the
    // write is refused with the reason, the disk's last 500 bytes untouched.
    disk->others = 1100;  // 900 bytes left for the folder: 200 for the new file, 500 free, 1 old file
    const auto squeezed = store.write("cam/20.jpg", std::string(200, 'x'));
    ASSERT_TRUE(squeezed.ok) << squeezed.error;
    EXPECT_EQ(store.files(), 2u);
    EXPECT_TRUE(fs::exists(dir / "cam/19.jpg"));
    disk->others = 1500;
    const auto refused = store.write("cam/21.jpg", std::string(200, 'x'));
    EXPECT_FALSE(refused.ok);
    EXPECT_NE(refused.error.find(dir.string()), std::string::npos) << refused.error;
    EXPECT_NE(refused.error.find("min_free"), std::string::npos) << refused.error;
    EXPECT_EQ(store.files(), 0u);
    EXPECT_FALSE(fs::exists(dir / "cam/21.jpg"));
    fs::remove_all(dir);
}

TEST(EvidenceStore, DiskFreeIsWhatTheFilesystemSays) {
    const auto dir = temp_dir();
    fs::create_directories(dir);
    const auto free = kg::evidence::EvidenceStore::disk_free(dir);
    ASSERT_TRUE(free.has_value());
    const auto space = fs::space(dir);
    // Both read the same statvfs; other writers on the disk may move it a little in between.
    EXPECT_NEAR(static_cast<double>(*free), static_cast<double>(space.available), 64.0 * (1 << 20));
    EXPECT_FALSE(kg::evidence::EvidenceStore::disk_free(dir / "no-such-folder").has_value());
    fs::remove_all(dir);
}

TEST(EvidenceStore, CountsWhatAnEarlierRunLeftAndExpiresOldFiles) {
    const auto dir = temp_dir();
    {
        kg::evidence::EvidenceStore store(dir, 1000, 24h);
        store.write("a.jpg", std::string(400, 'x'));
    }
    kg::evidence::EvidenceStore again(dir, 1000, 1h);
    EXPECT_EQ(again.bytes(), 400u);
    again.expire(kg::Clock::now() + 2h);
    EXPECT_EQ(again.files(), 0u);
    EXPECT_FALSE(fs::exists(dir / "a.jpg"));
    fs::remove_all(dir);
}

TEST(EvidenceStore, FindsAnEventsFileByNameAlsoFromAnEarlierRun) {
    const auto dir = temp_dir();
    {
        kg::evidence::EvidenceStore store(dir, 1 << 20, 24h);
        store.write("cam1/2026-11-24/0193abcd-start.jpg", "jpeg");
        store.write("cam1/2026-11-24/0193abcd.mp4", "mp4");
    }
    kg::evidence::EvidenceStore again(dir, 1 << 20, 24h);
    again.write("cam2/2026-11-25/0193ffff-start.jpg", "jpeg");
    EXPECT_EQ(again.find_named("0193abcd.mp4"), "cam1/2026-11-24/0193abcd.mp4");
    EXPECT_EQ(again.find_named("0193abcd-start.jpg"), "cam1/2026-11-24/0193abcd-start.jpg");
    EXPECT_EQ(again.find_named("0193ffff-start.jpg"), "cam2/2026-11-25/0193ffff-start.jpg");
    // Only a whole last component: not a longer name that ends the same, nor a folder.
    EXPECT_FALSE(again.find_named("abcd.mp4").has_value());
    EXPECT_FALSE(again.find_named("0193abcd-best.jpg").has_value());
    EXPECT_FALSE(again.find_named("2026-11-24").has_value());
    EXPECT_FALSE(again.find_named("").has_value());
    // Gone with the budget, gone here.
    again.remove("cam1/2026-11-24/0193abcd.mp4");
    EXPECT_FALSE(again.find_named("0193abcd.mp4").has_value());
    fs::remove_all(dir);
}

TEST(EvidenceStore, AnUnwritableFolderIsReportedNotThrown) {
    kg::evidence::EvidenceStore store("/proc/kg-evidence", 1 << 20, 24h);
    const auto r = store.write("cam/x.jpg", "data");
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("/proc/kg-evidence"), std::string::npos) << r.error;
}

TEST(EvidenceStore, AWriteCutShortIsReportedAndLeavesNothing) {
    const auto dir = temp_dir();
    // A full disk, as far as this process can tell: files may not grow past 1000 bytes. In a
    // child, so that the limit does not outlive the test.
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        std::signal(SIGXFSZ, SIG_IGN);  // write() then fails with EFBIG instead of killing
        const rlimit limit{1000, 1000};
        setrlimit(RLIMIT_FSIZE, &limit);
        kg::evidence::EvidenceStore store(dir, 1 << 20, 24h);
        const bool small_ok = store.write("cam/a.jpg", std::string(500, 'x')).ok;
        const auto big = store.write("cam/b.jpg", std::string(5000, 'x'));
        const bool reported = !big.ok && big.error.find("cam/b.jpg") != std::string::npos &&
                              big.error.find("too large") != std::string::npos;
        const bool nothing_left =
            !fs::exists(dir / "cam" / "b.jpg") && !fs::exists(dir / "cam" / "b.jpg.part");
        _exit(small_ok && reported && nothing_left && store.files() == 1 ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "the cut write was not reported, or left a file";
    fs::remove_all(dir);
}

TEST(Snapshot, IsAJpegOfTheFrameWithTheBoxDrawn) {
    cv::Mat frame(360, 640, CV_8UC3, cv::Scalar(40, 40, 40));
    kg::events::Event e;
    e.check = "mask";
    e.label = "no_mask";
    e.boxes.push_back({0.5f, 0.5f, 0.25f, 0.25f, "no_mask", 0.9f});
    cv::Mat canvas;
    const auto jpeg = kg::evidence::annotated_jpeg(frame, e, {{{0.1f, 0.1f}, {0.9f, 0.1f}, {0.9f, 0.9f}}},
                                                   {"cooking", "2026-11-24 14:30:00"}, canvas);
    ASSERT_GT(jpeg.size(), 100u);
    const cv::Mat decoded = cv::imdecode(std::vector<uchar>(jpeg.begin(), jpeg.end()), cv::IMREAD_COLOR);
    ASSERT_EQ(decoded.cols, 640);
    const auto px = decoded.at<cv::Vec3b>(180 + 45, 320);  // on the box's left edge
    EXPECT_GT(px[2], 150);                                 // red
    EXPECT_LT(px[0], 100);
    const auto inside = decoded.at<cv::Vec3b>(200, 400);
    EXPECT_LT(inside[2], 80);  // the frame itself is left as it was
}

namespace {

kg::TimePoint utc(int hour, int minute, int second) {
    // 2026-11-24 (a Tuesday) in UTC.
    return kg::TimePoint(std::chrono::seconds(1795478400 + hour * 3600 + minute * 60 + second));
}

kg::evidence::EvidenceStore training_store(const fs::path& dir, std::uint64_t max_bytes = 1 << 30,
                                           kg::Duration max_age = 24h) {
    return kg::evidence::EvidenceStore(dir, max_bytes, max_age, kg::evidence::is_training_frame);
}

kg::evidence::TrainingFrameOptions every(const std::string& camera, kg::Duration interval) {
    return {camera, interval, 95};
}

std::vector<std::string> names_in(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

void touch(const fs::path& p, const std::string& text = "x") {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
}

}  // namespace

TEST(TrainingFrames, OnlyTheGatewaysOwnFileNamesAreFrames) {
    using kg::evidence::is_training_frame;
    EXPECT_TRUE(is_training_frame("cam1/images/cam1_2026-11-24_090000.jpg"));
    EXPECT_TRUE(is_training_frame("cam-2.a/images/cam-2.a_2026-11-24_090000-3.jpg"));
    EXPECT_FALSE(is_training_frame("cam1/images/cam1_2026-11-24_090000.txt"));  // LabelImg's labels
    EXPECT_FALSE(is_training_frame("cam1/images/classes.txt"));
    EXPECT_FALSE(is_training_frame("cam1/images/IMG_0042.jpg"));
    EXPECT_FALSE(is_training_frame("cam1/images/cam2_2026-11-24_090000.jpg"));  // not this camera's
    EXPECT_FALSE(is_training_frame("cam1/labels/cam1_2026-11-24_090000.jpg"));
    EXPECT_FALSE(is_training_frame("cam1/images/x/cam1_2026-11-24_090000.jpg"));
}

TEST(TrainingFrames, SavesTheFirstFrameAndThenOneAnInterval) {
    const auto dir = temp_dir();
    const kg::rules::Calendar calendar("UTC", {});
    auto store = training_store(dir);
    kg::evidence::TrainingFrames frames(every("cam1", 10min), store, calendar, nullptr);
    cv::Mat image(180, 320, CV_8UC3, cv::Scalar(20, 120, 220));

    const auto first = frames.offer(image, utc(9, 0, 0));
    ASSERT_TRUE(first && first->ok) << (first ? first->error : "not due");
    EXPECT_EQ(first->path, "cam1/images/cam1_2026-11-24_090000.jpg");
    EXPECT_FALSE(frames.offer(image, utc(9, 5, 0)));  // within the interval
    EXPECT_FALSE(frames.offer(image, utc(9, 9, 59)));
    const auto second = frames.offer(image, utc(9, 10, 0));
    ASSERT_TRUE(second && second->ok);

    // The layout kitchen-eval --data reads: <folder>/images/*.jpg, the frame as it came.
    EXPECT_EQ(names_in(dir / "cam1" / "images"),
              (std::vector<std::string>{"cam1_2026-11-24_090000.jpg", "cam1_2026-11-24_091000.jpg"}));
    const cv::Mat back = cv::imread((dir / first->path).string(), cv::IMREAD_COLOR);
    ASSERT_EQ(back.size(), image.size());
    EXPECT_NEAR(back.at<cv::Vec3b>(90, 160)[2], 220, 4);  // unannotated: the colour is the frame's
    EXPECT_NEAR(back.at<cv::Vec3b>(90, 160)[0], 20, 4);
    fs::remove_all(dir);
}

TEST(TrainingFrames, OnlyWhileTheScheduleIsActive) {
    const auto dir = temp_dir();
    const kg::rules::Calendar calendar("UTC", {});
    kg::rules::Schedule service{"service", 0x7f, {kg::rules::parse_window("10:00-13:00")}};
    auto store = training_store(dir);
    kg::evidence::TrainingFrames frames(every("cam1", 10min), store, calendar, &service);
    cv::Mat image(90, 160, CV_8UC3, cv::Scalar(0, 0, 0));
    EXPECT_FALSE(frames.offer(image, utc(9, 30, 0)));
    EXPECT_FALSE(frames.offer(image, utc(9, 59, 59)));
    const auto in = frames.offer(image, utc(10, 0, 1));
    ASSERT_TRUE(in && in->ok);
    EXPECT_EQ(in->path, "cam1/images/cam1_2026-11-24_100001.jpg");
    EXPECT_FALSE(frames.offer(image, utc(13, 30, 0)));  // after the window, however long since
    fs::remove_all(dir);
}

TEST(TrainingFrames, OneBudgetForEveryCameraThatNeverTouchesAPersonsFiles) {
    const auto dir = temp_dir();
    const kg::rules::Calendar calendar("UTC", {});
    // What a person and a labelling tool leave beside the frames: LabelImg saves its labels and
    // classes.txt in images/ itself.
    const std::vector<fs::path> theirs{dir / "cam1" / "labels" / "cam1_2026-11-24_090000.txt",
                                       dir / "cam1" / "images" / "cam1_2026-11-24_090000.txt",
                                       dir / "cam1" / "images" / "classes.txt",
                                       dir / "cam1" / "images" / "IMG_0042.jpg", dir / "README.txt"};
    for (const auto& p : theirs) touch(p, std::string(5000, 'x'));
    cv::Mat noise(120, 160, CV_8UC3);
    cv::randu(noise, 0, 255);  // incompressible, so each file is about the same size
    std::vector<uchar> probe;
    cv::imencode(".jpg", noise, probe, {cv::IMWRITE_JPEG_QUALITY, 95});
    auto store = training_store(dir, probe.size() * 5 / 2);  // room for two frames, whoever's
    EXPECT_EQ(store.files(), 0u);                            // none of theirs is counted
    kg::evidence::TrainingFrames cam1(every("cam1", 10min), store, calendar, nullptr);
    kg::evidence::TrainingFrames cam2(every("cam2", 10min), store, calendar, nullptr);
    for (int i = 0; i < 2; ++i) {
        for (auto* frames : {&cam1, &cam2}) {
            const auto r = frames->offer(noise, utc(9, 10 * i, 0));
            ASSERT_TRUE(r && r->ok) << i << ": " << (r ? r->error : "not due");
        }
    }
    EXPECT_EQ(store.files(), 2u);  // the two newest of four, across both cameras
    EXPECT_EQ(names_in(dir / "cam2" / "images"), std::vector<std::string>{"cam2_2026-11-24_091000.jpg"});
    store.expire(kg::Clock::now() + 48h);
    EXPECT_EQ(store.files(), 0u);
    for (const auto& p : theirs) EXPECT_TRUE(fs::exists(p)) << p;
    fs::remove_all(dir);
}

TEST(TrainingFrames, ARestartCountsWhatWasKeptAndWaitsOutTheInterval) {
    const auto dir = temp_dir();
    const kg::rules::Calendar calendar("UTC", {});
    cv::Mat image(90, 160, CV_8UC3, cv::Scalar(1, 2, 3));
    const auto now = kg::Clock::now();
    {
        auto store = training_store(dir);
        kg::evidence::TrainingFrames frames(every("cam1", 10min), store, calendar, nullptr);
        ASSERT_TRUE(frames.offer(image, now));
    }
    touch(dir / "cam1" / "images" / "cam1_2026-11-24_120000.jpg.part");  // a write cut short
    auto store = training_store(dir);
    EXPECT_EQ(store.files(), 1u);
    EXPECT_FALSE(fs::exists(dir / "cam1" / "images" / "cam1_2026-11-24_120000.jpg.part"));
    kg::evidence::TrainingFrames frames(every("cam1", 10min), store, calendar, nullptr);
    EXPECT_FALSE(frames.offer(image, now + 1min));  // a crash loop does not add a frame a start
    EXPECT_TRUE(frames.offer(image, now + 11min));
    kg::evidence::TrainingFrames other(every("cam2", 10min), store, calendar, nullptr);
    EXPECT_TRUE(other.offer(image, now + 1min));  // another camera's frames are not this one's
    fs::remove_all(dir);
}

TEST(TrainingFrames, AClockSetBackNeitherStopsSavingNorReusesAName) {
    const auto dir = temp_dir();
    const kg::rules::Calendar calendar("UTC", {});
    touch(dir / "cam1" / "labels" / "cam1_2026-11-24_102000.txt");  // labelled, its frame since expired
    auto store = training_store(dir);
    kg::evidence::TrainingFrames frames(every("cam1", 10min), store, calendar, nullptr);
    cv::Mat image(90, 160, CV_8UC3, cv::Scalar(1, 2, 3));
    ASSERT_TRUE(frames.offer(image, utc(11, 0, 0)));
    // Set back an hour: saving goes on at once instead of waiting for 11:10.
    const auto back = frames.offer(image, utc(10, 0, 0));
    ASSERT_TRUE(back && back->ok);
    EXPECT_EQ(back->path, "cam1/images/cam1_2026-11-24_100000.jpg");
    ASSERT_TRUE(frames.offer(image, utc(10, 10, 0)));
    const auto labelled = frames.offer(image, utc(10, 20, 0));
    ASSERT_TRUE(labelled && labelled->ok);
    EXPECT_EQ(labelled->path, "cam1/images/cam1_2026-11-24_102000-2.jpg");  // not the labelled name
    const auto again = frames.offer(image, utc(11, 0, 0));                  // a second already seen
    ASSERT_TRUE(again && again->ok);
    EXPECT_EQ(again->path, "cam1/images/cam1_2026-11-24_110000-2.jpg");
    EXPECT_EQ(names_in(dir / "cam1" / "images").size(), 5u);
    fs::remove_all(dir);
}

TEST(EvidenceStore, FilesFromBeforeAClockWasSetBackAreNotKeptOverNewerOnes) {
    const auto dir = temp_dir();
    // Written when the clock ran an hour fast, then corrected.
    touch(dir / "old.jpg", std::string(400, 'x'));
    fs::last_write_time(dir / "old.jpg", fs::file_time_type::clock::now() + 1h);
    kg::evidence::EvidenceStore store(dir, 1000, 24h);
    ASSERT_TRUE(store.write("a.jpg", std::string(400, 'x')).ok);
    ASSERT_TRUE(store.write("b.jpg", std::string(400, 'x')).ok);
    EXPECT_EQ(names_in(dir), (std::vector<std::string>{"a.jpg", "b.jpg"}));
    fs::remove_all(dir);
}

// A file written while the clock ran a year fast dated every later file after it, and none
// expired by age until the clock caught up: staff photos kept a year past max_age. Ages are each
// file's own: the later ones go on time (the one dated ahead keeps its date: nothing tells it
// apart from a file the clock, booted behind, now sees ahead).
TEST(EvidenceStore, AFileDatedAheadOfTheClockHoldsNoLaterFilePastItsAge) {
    const auto dir = temp_dir();
    touch(dir / "ahead.jpg", std::string(400, 'x'));
    fs::last_write_time(dir / "ahead.jpg", fs::file_time_type::clock::now() + 24h * 365);
    kg::evidence::EvidenceStore store(dir, 1u << 20, 24h * 15);
    ASSERT_TRUE(store.write("today.jpg", std::string(400, 'x')).ok);
    store.expire(kg::Clock::now() + 24h * 30);
    EXPECT_EQ(names_in(dir), std::vector<std::string>{"ahead.jpg"}) << "kept a month with max_age 15 days";
    fs::remove_all(dir);
}

// Written while the clock ran a year fast, then the clock was set right in this run: the files
// from before the step go max_age after it (on disk too, for a later run), not a year later when
// the clock caught up (the review of the 53rd session; a box booted behind only steps forward).
TEST(EvidenceStore, FilesWrittenBeforeTheClockWasSetBackGoMaxAgeAfterIt) {
    const auto dir = temp_dir();
    const auto fast = kg::Clock::now() + 24h * 365;
    touch(dir / "ahead.jpg", std::string(400, 'x'));
    fs::last_write_time(dir / "ahead.jpg", fs::file_time_type::clock::now() + 24h * 365);
    kg::evidence::EvidenceStore fast_store(dir, 1u << 20, 24h * 15);
    fast_store.expire(fast);              // the clock a year fast
    fast_store.expire(kg::Clock::now());  // set right
    EXPECT_EQ(names_in(dir), std::vector<std::string>{"ahead.jpg"});
    EXPECT_LT(fs::last_write_time(dir / "ahead.jpg"), fs::file_time_type::clock::now() + 1h);
    fast_store.expire(kg::Clock::now() + 24h * 16);
    EXPECT_TRUE(names_in(dir).empty()) << "kept past max_age after the clock was set back";
    fs::remove_all(dir);
}

// A box without a clock battery boots a year behind: its files from before are ahead of the clock.
// When NTP sets it, they are a day old, and stay (taking them as written at boot deleted them all).
TEST(EvidenceStore, FilesAheadOfAClockBootedBehindKeepTheirAgeWhenItIsSet) {
    const auto dir = temp_dir();
    const auto real_now = fs::file_time_type::clock::now() + 24h * 365;  // the clock is a year behind
    for (const auto* name : {"a.jpg", "b.jpg", "c.jpg"}) {
        touch(dir / name, std::string(400, 'x'));
        fs::last_write_time(dir / name, real_now - 24h);  // written yesterday
    }
    kg::evidence::EvidenceStore store(dir, 1u << 20, 24h * 15);
    store.expire(kg::Clock::now() + 24h * 365);  // NTP sets the clock
    EXPECT_EQ(names_in(dir).size(), 3u);
    store.expire(kg::Clock::now() + 24h * 365 + 24h * 15);
    EXPECT_TRUE(names_in(dir).empty());
    fs::remove_all(dir);
}

TEST(TrainingFrames, AnUnwritableFolderIsReportedAndRetriedAnIntervalLater) {
    const kg::rules::Calendar calendar("UTC", {});
    auto store = training_store("/proc/kg-training");
    kg::evidence::TrainingFrames frames(every("cam1", 1min), store, calendar, nullptr);
    cv::Mat image(90, 160, CV_8UC3, cv::Scalar(0, 0, 0));
    const auto r = frames.offer(image, utc(9, 0, 0));
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->ok);
    EXPECT_NE(r->error.find("/proc/kg-training"), std::string::npos) << r->error;
    EXPECT_FALSE(frames.offer(image, utc(9, 0, 30)));  // not an encode on every frame
    EXPECT_TRUE(frames.offer(image, utc(9, 1, 0)));
}

TEST(PacketRing, AGopLongerThanItHoldsWholeIsLetGoSoMemoryStaysBounded) {
    // A camera that sends one key frame and then only P-frames: the ring used to keep every packet.
    const auto source =
        fs::temp_directory_path() / ("kg-evidence-onekey-" + std::to_string(getpid()) + ".mp4");
    const std::string cmd =
        "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x180:rate=25 -t 12 -c:v libx264 -preset "
        "ultrafast -g 1000 -keyint_min 1000 -sc_threshold 0 -pix_fmt yuv420p " +
        source.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::atomic<bool> stop{false};
    auto read_into = [&](kg::evidence::PacketRing& ring) {
        kg::ingest::FfmpegInput input({source.string()}, stop);
        input.set_packet_observer(&ring);
        input.open();
        std::size_t frames = 0;
        while (input.next_frame()) ++frames;
        return frames;
    };
    kg::evidence::PacketRing whole(1h);
    const auto frames = read_into(whole);
    EXPECT_EQ(whole.packets(), frames);  // under the limit, the one GOP is kept whole
    // Decoding 300 frames takes far longer than 1 ms: the GOP outgrows the limit and is let go,
    // and with no key frame after it nothing is held again.
    kg::evidence::PacketRing bounded(0ms, 1ms);
    read_into(bounded);
    EXPECT_EQ(bounded.packets(), 0u);
    EXPECT_EQ(bounded.bytes(), 0u);
    fs::remove(source);
}

// However long `keep` is (a long health.frozen_after lengthens it) and whatever the bitrate, the
// ring holds at most its byte bound, dropping whole GOPs from the front: it still starts on a key
// frame and still gives the newest seconds.
TEST(PacketRing, HoldsNoMoreThanItsByteBound) {
    std::atomic<bool> stop{false};
    auto read_into = [&](kg::evidence::PacketRing& ring) {
        kg::ingest::FfmpegInput input({clip_source()}, stop);
        input.set_packet_observer(&ring);
        input.open();
        while (input.next_frame()) {
        }
    };
    kg::evidence::PacketRing whole(1h);
    read_into(whole);
    const std::size_t bound = whole.bytes() / 3;  // twelve GOPs of 25 frames: about four fit
    kg::evidence::PacketRing bounded(1h, 30s, bound);
    read_into(bounded);
    EXPECT_LE(bounded.bytes(), bound);
    EXPECT_GT(bounded.packets(), 50u);
    EXPECT_LT(bounded.packets(), 150u);
    const auto now = kg::Clock::now();
    const auto span = bounded.span(now - 1h, now);
    ASSERT_FALSE(span.packets.empty());
    EXPECT_TRUE(span.packets.front().key);
    EXPECT_EQ(span.packets.back().packet->pts, whole.span(now - 1h, now).packets.back().packet->pts);
}

// Packets are timed on the steady clock; a clip's wall-clock span is read as ages before `now`. A
// wall clock set back 8 h (an RTC in local time read as UTC, then NTP) used to keep the ring from
// trimming for 8 h, gigabytes per camera, and clips asked for at the new time found nothing.
// A camera that reconnects during an event's post-roll: the new connection started the ring again,
// and the clip, cut from its packets alone, held none of the event's seconds yet was reported kept.
// The connection before stays beside the new one while a clip may start in it.
// Which connection holds more of a span is a matter of time, so the packets come at a camera's
// pace: read at once, on a busy machine the new connection's 50 packets once took longer than the
// first's 175 (CI, stop 59).
TEST(PacketRing, AClipAskedFromBeforeAReconnectIsCutFromTheConnectionItStartedIn) {
    kg::evidence::PacketRing ring(1h);
    constexpr auto pace = 5ms;
    Timed first(ring, pace);
    std::atomic<bool> stop{false};
    {
        kg::ingest::FfmpegInput input({clip_source()}, stop);
        input.set_packet_observer(&first);
        input.open();
        while (input.next_frame()) {
        }
    }
    ASSERT_EQ(first.after.size(), 300u);
    const auto first_ended = first.steady_after.back();
    Timed second(ring, pace);
    {
        kg::ingest::FfmpegInput input({clip_source()}, stop);  // the camera again, a new connection
        input.set_packet_observer(&second);
        input.open();
        for (int i = 0; i < 50 && input.next_frame(); ++i) {
        }
    }
    ASSERT_FALSE(second.after.empty());
    // From the key frame at or before `from` (packet 125, a key frame), to where that connection
    // ended; none of the next.
    const auto span = ring.span(first.steady_after[125], second.steady_after.back());
    ASSERT_FALSE(span.packets.empty());
    EXPECT_TRUE(span.packets.front().key);
    EXPECT_EQ(span.packets.size(), 175u);
    EXPECT_GT(span.packets.back().arrival, first.steady_after[298]);
    EXPECT_LE(span.packets.back().arrival, first_ended);

    const auto dir = temp_dir();
    const auto r = kg::evidence::write_mp4(span, (dir / "clip.mp4").string());
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_NEAR(r.seconds, 7.0, 0.1);  // packets 125-299 of the first connection
    // An event just after the reconnect, its pre-roll reaching back into the last two packets of
    // the first connection: the new one holds more of it, and its clip comes from there.
    const auto just_after = ring.span(first.steady_after[297], second.steady_after.back());
    ASSERT_FALSE(just_after.packets.empty());
    EXPECT_GT(just_after.packets.front().arrival, first_ended);
    EXPECT_GE(just_after.packets.size(), 25u);
    // An event that began a moment before the reconnect, its post-roll reaching far into the new
    // connection (which holds more of the span): cut from the connection it began in, so that the
    // clip shows its start; without its moment, from the new one (the evidence review).
    const auto began_before =
        ring.span(first.steady_after[280], second.steady_after.back(), first.steady_after[290]);
    ASSERT_FALSE(began_before.packets.empty());
    EXPECT_LE(began_before.packets.back().arrival, first_ended);
    EXPECT_LE(began_before.packets.front().arrival, first.steady_after[280]);
    EXPECT_GT(ring.span(first.steady_after[280], second.steady_after.back()).packets.front().arrival,
              first_ended);
    // A clip asked from after the reconnect comes from the new connection, as before.
    const auto later = ring.span(second.steady_after[25], second.steady_after.back());
    ASSERT_FALSE(later.packets.empty());
    EXPECT_GT(later.packets.front().arrival, first_ended);
    fs::remove_all(dir);
}

// A camera whose picture size is changed in its web page while the gateway watches it keeps its
// RTSP session (many do), and sends the new size in band, with its next key frame. The outputs'
// headers describe one picture: a clip cut after the change said the old size (160x90 in its avcC
// and its track), and players showed garbage. The change is told to every output as a new stream.
TEST(PacketRing, AClipAfterTheCameraChangedItsPictureWithinAConnectionHasTheNewPicture) {
    const auto dir = temp_dir();
    // 4 s at 160x90, then 4 s at 320x180: one MPEG-TS stream, parameter sets in band at each key
    // frame, as a camera sends them.
    for (const char* size : {"160x90", "320x180"}) {
        // The second part's clock goes on from the first's, as a camera's does.
        const std::string cmd =
            std::string("ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=") + size +
            ":rate=25 -t 4 -c:v libx264 -preset ultrafast -g 25 -pix_fmt yuv420p -f mpegts " +
            (std::string(size) == "320x180" ? "-output_ts_offset 4 " : "") +
            (dir / (std::string(size) + ".ts")).string();
        ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
    const std::string camera = (dir / "camera.ts").string();
    ASSERT_EQ(std::system(("cat " + (dir / "160x90.ts").string() + " " + (dir / "320x180.ts").string() +
                           " > " + camera)
                              .c_str()),
              0);
    kg::evidence::PacketRing ring(1h);
    Timed timed(ring, 2ms);
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({camera}, stop);
    input.set_packet_observer(&timed);
    input.open();
    std::set<std::string> decoded;
    cv::Mat image(36, 64, CV_8UC3);
    while (input.next_frame()) {
        input.scale_into(image);  // the decoder follows the change itself
        decoded.insert(input.describe());
    }
    ASSERT_EQ(timed.after.size(), 200u);
    EXPECT_EQ(timed.opened, (std::vector<std::pair<int, int>>{{160, 90}, {320, 180}}));
    EXPECT_EQ(input.picture_changes(), 1u);
    EXPECT_EQ(input.last_picture_change(), "160x90 to 320x180");
    EXPECT_EQ(decoded, (std::set<std::string>{"h264 160x90 25.0fps", "h264 320x180 25.0fps"}));

    // A clip of the last two seconds, and one of the first: each with its own picture.
    const auto probe = [](const std::string& path) {
        std::atomic<bool> no{false};
        kg::ingest::FfmpegInput clip({path}, no);
        clip.open();
        return clip.describe();
    };
    const auto after = ring.span(timed.steady_after[150], timed.steady_after.back());
    ASSERT_FALSE(after.packets.empty());
    const auto written_after = kg::evidence::write_mp4(after, (dir / "after.mp4").string());
    ASSERT_TRUE(written_after.ok) << written_after.error;
    EXPECT_EQ(probe((dir / "after.mp4").string()).rfind("h264 320x180", 0), 0u)
        << probe((dir / "after.mp4").string());
    const auto before = ring.span(timed.steady_after[25], timed.steady_after[75]);
    ASSERT_FALSE(before.packets.empty());
    const auto written_before = kg::evidence::write_mp4(before, (dir / "before.mp4").string());
    ASSERT_TRUE(written_before.ok) << written_before.error;
    EXPECT_EQ(probe((dir / "before.mp4").string()).rfind("h264 160x90", 0), 0u)
        << probe((dir / "before.mp4").string());
    fs::remove_all(dir);
}

// An MJPEG camera's packets are stamped by their arrival and have no duration (ingest): the MP4
// muxer takes a sample's duration from the next one's time, but the last's from its own, and such
// a clip lasted a frame less, its last picture shown for no time.
TEST(ClipWriter, TheLastPacketWithoutADurationLastsAsLongAsTheOneBefore) {
    // The 12 s source's packets, their durations taken away.
    struct NoDurations final : kg::ingest::PacketObserver {
        explicit NoDurations(kg::evidence::PacketRing& r) : ring(r) {}
        void on_stream_opened(const AVStream& stream) override { ring.on_stream_opened(stream); }
        void on_packet(const AVPacket& packet, const AVStream& stream) override {
            AVPacket* copy = av_packet_clone(&packet);
            ASSERT_NE(copy, nullptr);
            copy->duration = 0;
            ring.on_packet(*copy, stream);
            av_packet_free(&copy);
        }
        void on_stream_closed() override { ring.on_stream_closed(); }
        kg::evidence::PacketRing& ring;
    };
    kg::evidence::PacketRing ring(1h);
    NoDurations camera(ring);
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({clip_source()}, stop);
    input.set_packet_observer(&camera);
    input.open();
    while (input.next_frame()) {
    }
    auto span = ring.span(kg::Clock::now() - 1h, kg::Clock::now());
    ASSERT_EQ(span.packets.size(), 300u);
    ASSERT_EQ(span.packets.back().packet->duration, 0);
    const auto dir = temp_dir();
    const auto r = kg::evidence::write_mp4(span, (dir / "clip.mp4").string());
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_NEAR(r.seconds, 12.0, 0.005);  // 300 frames at 25 a second; 11.96 without the last one's
    // A camera that paused 5 s before its last picture (packets 150-274 gone; 275 is a key frame):
    // the last lasts a frame, not the pause (the step before it), which made the clip 5 s longer
    // than what it shows (review).
    span.packets.erase(span.packets.begin() + 150, span.packets.begin() + 275);
    span.packets.erase(span.packets.begin() + 151, span.packets.end());
    ASSERT_TRUE(span.packets.back().key);
    const auto paused = kg::evidence::write_mp4(span, (dir / "paused.mp4").string());
    ASSERT_TRUE(paused.ok) << paused.error;
    EXPECT_NEAR(paused.seconds, 11.04, 0.005);  // frame 275 shown at 11.0 s, for one frame
    // Three packets, 0, 1 and 275: of two steps, one a pause, the lower median (it was the pause,
    // capped at a second: 12.0 s said).
    span.packets.erase(span.packets.begin() + 2, span.packets.end() - 1);
    ASSERT_EQ(span.packets.size(), 3u);
    const auto three = kg::evidence::write_mp4(span, (dir / "three.mp4").string());
    ASSERT_TRUE(three.ok) << three.error;
    EXPECT_NEAR(three.seconds, 11.04, 0.005);
    fs::remove_all(dir);
}

// A camera whose settings change often drops its session soon after: the stream before the change
// (a new stream to the ring) was pushed out by the short one between the change and the reconnect,
// and an event from before the change had no clip (review).
TEST(PacketRing, TheStreamBeforeAPictureChangeOutlivesAReconnectSoonAfter) {
    kg::evidence::PacketRing ring(1h);
    std::atomic<bool> stop{false};
    const auto read = [&](Timed& observer, int frames) {
        kg::ingest::FfmpegInput input({clip_source()}, stop);
        input.set_packet_observer(&observer);
        input.open();
        for (int i = 0; i < frames && input.next_frame(); ++i) {
        }
    };
    Timed before(ring, 2ms), changed(ring, 2ms), reconnected(ring, 2ms);
    read(before, 100);
    read(changed, 25);
    read(reconnected, 25);
    const auto span = ring.span(before.steady_after[10], before.steady_after[90]);
    ASSERT_FALSE(span.packets.empty());
    EXPECT_GE(span.packets.size(), 80u);
    EXPECT_LE(span.packets.back().arrival, before.steady_after.back());
    // The latest stream is still the one a clip of now comes from.
    const auto now = ring.span(reconnected.steady_after.front(), reconnected.steady_after.back());
    ASSERT_FALSE(now.packets.empty());
    EXPECT_GE(now.packets.front().arrival, reconnected.steady_after.front() - 1s);
    EXPECT_GT(now.packets.front().arrival, changed.steady_after.back());
}

TEST(PacketRing, AClipAfterTheWallClockWasSetBackIsTheSameClip) {
    kg::evidence::PacketRing ring(30s);
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({clip_source()}, stop);
    input.set_packet_observer(&ring);
    input.open();
    while (input.next_frame()) {
    }
    const auto now = kg::Clock::now(), stepped = now - 8h;
    const auto before = ring.span(now - 2s, now, now), after = ring.span(stepped - 2s, stepped, stepped);
    ASSERT_FALSE(before.packets.empty());
    ASSERT_EQ(after.packets.size(), before.packets.size());
    EXPECT_EQ(after.packets.front().packet->pts, before.packets.front().packet->pts);
}

namespace {

// Where EventEvidence sends its clip reports.
struct ClipSink final : kg::events::EventSink {
    void submit(const kg::events::Event&) override {}
    void submit_snapshot(const kg::events::Event&, std::string) override {}
    void submit_clip(const kg::events::ClipReport& clip) override { clips.push_back(clip); }
    std::vector<kg::events::ClipReport> clips;
};

// A camera whose 12 s were read into the ring, and an event that started on its last frame with a
// post-roll far ahead: a stop now leaves its clip pending.
struct PendingClipRig {
    kg::config::Camera camera = [] {
        kg::config::Camera c;
        c.id = "cam";
        return c;
    }();
    kg::config::Evidence cfg = [] {
        kg::config::Evidence e;
        e.clip_pre = 3s;
        e.clip_post = 1h;
        return e;
    }();
    fs::path dir = temp_dir();
    kg::evidence::EvidenceStore store{dir, 1u << 30, 24h};
    kg::evidence::PacketRing ring{1h};
    ClipSink sink;
    kg::rules::Calendar calendar{"UTC", {}};
    kg::evidence::EventEvidence evidence{
        camera, cfg, &store, ring, sink, calendar, kg::Logging::null_logger()};
    kg::events::Event start;

    // `tweak`: changes the event and its frame before they are submitted.
    explicit PendingClipRig(const std::function<void(kg::events::Event&, kg::ingest::Frame&)>& tweak = {}) {
        std::atomic<bool> stop{false};
        kg::ingest::FfmpegInput input({clip_source()}, stop);
        input.set_packet_observer(&ring);
        input.open();
        while (input.next_frame()) {
        }
        start.id = "ev1";
        start.source = "cam";
        start.state = kg::events::EventState::start;
        start.start_time = start.time = kg::Clock::now();
        kg::ingest::Frame frame;
        frame.image = cv::Mat(180, 320, CV_8UC3, cv::Scalar(40, 40, 40));
        frame.time = start.time;
        frame.steady = std::chrono::steady_clock::now();
        if (tweak) tweak(start, frame);
        evidence.submit(start, frame);
    }
    ~PendingClipRig() { fs::remove_all(dir); }
};

}  // namespace

TEST(EventEvidence, AStopCutsAPendingClipFromWhatTheRingHoldsAndReportsItsLength) {
    PendingClipRig rig;
    ASSERT_FALSE(rig.start.evidence.clip.empty());
    rig.evidence.poll(std::chrono::steady_clock::now());
    EXPECT_TRUE(rig.sink.clips.empty());  // an hour of post-roll to go
    rig.evidence.flush(std::chrono::steady_clock::now(), std::chrono::steady_clock::now() + 5s);
    ASSERT_EQ(rig.sink.clips.size(), 1u);
    const auto& report = rig.sink.clips[0];
    ASSERT_TRUE(report.error.empty()) << report.error;
    EXPECT_EQ(report.path, rig.start.evidence.clip);
    const auto file = rig.store.absolute(report.path).string();
    bool key = false;
    const double d = probe_duration(file, &key);
    EXPECT_TRUE(key);
    // The ring was read faster than real time: 3 s of pre-roll by arrival hold most of the 12 s.
    EXPECT_GT(report.seconds, 0.5);
    EXPECT_LT(report.seconds, 12.5);
    EXPECT_NEAR(report.seconds, d, 0.2);
    EXPECT_EQ(report.bytes, fs::file_size(file));
    rig.evidence.flush(std::chrono::steady_clock::now(), std::chrono::steady_clock::now() + 5s);
    EXPECT_EQ(rig.sink.clips.size(), 1u);  // flushed once: nothing left pending
}

TEST(EventEvidence, AClipIsTheEventsSecondsWhateverTheWallClockReadsAfterIt) {
    // The event's frame was stamped on both clocks; its clip is cut by the steady one. Here the
    // wall clock reads 8 hours later at the cut than at the event (NTP set it during the post-roll):
    // the span was taken as 8 hours before the cut, and the clip was empty.
    PendingClipRig rig;
    PendingClipRig stepped([](kg::events::Event& event, kg::ingest::Frame& frame) {
        event.start_time -= 8h;
        event.time -= 8h;
        frame.time -= 8h;
    });
    rig.evidence.flush(std::chrono::steady_clock::now(), std::chrono::steady_clock::now() + 5s);
    stepped.evidence.flush(std::chrono::steady_clock::now(), std::chrono::steady_clock::now() + 5s);
    ASSERT_EQ(rig.sink.clips.size(), 1u);
    ASSERT_EQ(stepped.sink.clips.size(), 1u);
    ASSERT_TRUE(stepped.sink.clips[0].error.empty()) << stepped.sink.clips[0].error;
    EXPECT_NEAR(stepped.sink.clips[0].seconds, rig.sink.clips[0].seconds, 0.2);
}

TEST(EventEvidence, AClipAStopHasNoTimeLeftToCutIsReportedAsNotKept) {
    PendingClipRig rig;
    rig.evidence.flush(std::chrono::steady_clock::now(), std::chrono::steady_clock::now() - 1s);
    ASSERT_EQ(rig.sink.clips.size(), 1u);
    const auto& report = rig.sink.clips[0];
    EXPECT_EQ(report.error, "the gateway stopped before the clip could be cut");
    EXPECT_TRUE(report.path.empty());
    EXPECT_FALSE(fs::exists(rig.store.absolute(rig.start.evidence.clip)));
}

namespace {

// The report the outbox's record gives for a clip the previous run never reported.
kg::events::ClipReport left_pending(const std::string& path) {
    kg::events::ClipReport r;
    r.event_id = "ev1";
    r.camera = "cam";
    r.path = path;
    r.error = kg::events::kClipRestarted;
    return r;
}

}  // namespace

TEST(EventEvidence, AClipLeftPendingByACrashIsReportedAsNotRecordedWhenNothingIsThere) {
    const auto dir = temp_dir();
    kg::evidence::EvidenceStore store(dir, 1u << 30, 24h);
    const auto report = kg::evidence::settle_left_clip(store, left_pending("cam/2026-11-24/ev1.mp4"),
                                                       *kg::Logging::null_logger());
    EXPECT_EQ(report.error, "gateway restarted before the clip was recorded");
    EXPECT_TRUE(report.path.empty());  // the error form: no path
    fs::remove_all(dir);
}

TEST(EventEvidence, WhatACrashLeftOfAClipIsDeletedAndNoLongerCounted) {
    PendingClipRig rig;
    rig.evidence.flush(std::chrono::steady_clock::now(), std::chrono::steady_clock::now() + 5s);
    ASSERT_EQ(rig.sink.clips.size(), 1u);
    const auto whole = rig.store.absolute(rig.start.evidence.clip);
    std::string bytes;
    {
        std::ifstream in(whole, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    ASSERT_GT(bytes.size(), 1000u);
    // The same clip cut short, as a power cut after the rename of an unflushed file may leave it.
    const auto dir = temp_dir();
    const std::string relative = "cam/2026-11-24/ev1.mp4";
    fs::create_directories((dir / relative).parent_path());
    std::ofstream(dir / relative, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    kg::evidence::EvidenceStore store(dir, 1u << 30, 24h);
    ASSERT_EQ(store.files(), 1u);
    ASSERT_EQ(store.bytes(), bytes.size() / 2);
    EXPECT_FALSE(kg::evidence::probe_mp4((dir / relative).string()).ok);
    std::ofstream(dir / (relative + ".part")) << "half a write";  // SIGKILL inside write_mp4
    const auto report =
        kg::evidence::settle_left_clip(store, left_pending(relative), *kg::Logging::null_logger());
    EXPECT_EQ(report.error, "gateway restarted before the clip was recorded");
    EXPECT_TRUE(report.path.empty());
    EXPECT_FALSE(fs::exists(dir / relative));
    EXPECT_FALSE(fs::exists(dir / (relative + ".part")));
    EXPECT_EQ(store.files(), 0u);
    EXPECT_EQ(store.bytes(), 0u);
    fs::remove_all(dir);
}

TEST(EventEvidence, AWholeClipWhoseReportACrashLostIsReportedAsKept) {
    PendingClipRig rig;
    rig.evidence.flush(std::chrono::steady_clock::now(), std::chrono::steady_clock::now() + 5s);
    ASSERT_EQ(rig.sink.clips.size(), 1u);
    const auto& written = rig.sink.clips[0];
    ASSERT_TRUE(written.error.empty()) << written.error;
    // Cut and renamed, and the process died before the report was committed.
    const auto report =
        kg::evidence::settle_left_clip(rig.store, left_pending(written.path), *kg::Logging::null_logger());
    EXPECT_TRUE(report.error.empty()) << report.error;
    EXPECT_EQ(report.path, written.path);
    EXPECT_EQ(report.bytes, written.bytes);
    EXPECT_NEAR(report.seconds, written.seconds, 0.2);
    EXPECT_TRUE(fs::exists(rig.store.absolute(written.path)));
}

namespace {

// Records the order in which the room would get an event and its clip report; while it takes the
// event, the supervisor thread's poll() runs (the worst moment it can pick).
struct OrderSink final : kg::events::EventSink {
    void submit(const kg::events::Event& e) override {
        if (evidence != nullptr) evidence->poll(std::chrono::steady_clock::now() + 1h);
        order.push_back("start " + e.id);
    }
    void submit_snapshot(const kg::events::Event&, std::string) override {}
    void submit_clip(const kg::events::ClipReport& clip) override {
        order.push_back("clip " + clip.event_id);
    }
    kg::evidence::EventEvidence* evidence = nullptr;
    std::vector<std::string> order;
};

}  // namespace

TEST(EventEvidence, AClipIsReportedOnlyAfterTheStartThatNamesItWasSubmitted) {
    const auto dir = temp_dir();
    kg::config::Camera camera;
    camera.id = "cam";
    kg::config::Evidence cfg;
    cfg.clip_pre = 3s;
    cfg.clip_post = 0s;  // due at once
    kg::evidence::EvidenceStore store(dir, 1u << 30, 24h);
    kg::evidence::PacketRing ring(1h);
    OrderSink sink;
    kg::rules::Calendar calendar("UTC", {});
    kg::evidence::EventEvidence evidence(camera, cfg, &store, ring, sink, calendar,
                                         kg::Logging::null_logger());
    sink.evidence = &evidence;
    kg::events::Event start;
    start.id = "ev1";
    start.source = "cam";
    start.start_time = start.time = kg::Clock::now();
    kg::ingest::Frame frame;
    frame.image = cv::Mat(180, 320, CV_8UC3, cv::Scalar(40, 40, 40));
    frame.time = start.time;
    frame.steady = std::chrono::steady_clock::now();
    evidence.submit(start, frame);
    ASSERT_FALSE(start.evidence.clip.empty());
    evidence.poll(std::chrono::steady_clock::now() + 1h);
    EXPECT_EQ(sink.order, (std::vector<std::string>{"start ev1", "clip ev1"}));
    fs::remove_all(dir);
}

TEST(DurableFile, RenamesAndNamesWhatWentWrong) {
    const auto dir = std::filesystem::temp_directory_path() / ("kg-durable-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const auto part = dir / "a.jpg.part";
    ASSERT_EQ(kg::write_file_durably(part, "jpeg bytes"), std::nullopt);
    ASSERT_EQ(kg::rename_file(part, dir / "a.jpg"), std::nullopt);
    ASSERT_EQ(kg::sync_parent_folder(dir / "a.jpg"), std::nullopt);
    EXPECT_FALSE(std::filesystem::exists(part));
    std::ifstream in(dir / "a.jpg");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text, "jpeg bytes");

    const auto missing = kg::rename_file(dir / "a.jpg", dir / "no-such-folder" / "a.jpg");
    ASSERT_TRUE(missing.has_value());
    EXPECT_NE(missing->find("No such file"), std::string::npos) << *missing;
    EXPECT_TRUE(std::filesystem::exists(dir / "a.jpg"));  // a failed rename leaves the file where it was
    const auto no_folder = kg::sync_parent_folder(dir / "no-such-folder" / "a.jpg");
    ASSERT_TRUE(no_folder.has_value());
    EXPECT_NE(no_folder->find("no-such-folder"), std::string::npos) << *no_folder;
    const auto unwritable = kg::write_file_durably(dir / "no-such-folder" / "b.jpg", "x");
    ASSERT_TRUE(unwritable.has_value());
    EXPECT_NE(unwritable->find("No such file"), std::string::npos) << *unwritable;
    std::filesystem::remove_all(dir);
}
