// The public side's building blocks, driven without a camera or a server: signed viewer tokens,
// the viewer caps, and the bounded live stream that keeps a slow client from growing memory.
#include <gtest/gtest.h>
#include <sched.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/log_throttle.hpp"
#include "common/logging.hpp"
#include "ingest/ffmpeg_input.hpp"
#include "ingest/packet_fanout.hpp"
#include "ingest/parameter_sets.hpp"
#include "ingest/picture_converter.hpp"
#include "stream/flv_hub.hpp"
#include "stream/hls_writer.hpp"
#include "stream/mp4_tag.hpp"
#include "stream/privacy_masker.hpp"
#include "stream/rtmp_pusher.hpp"
#include "web/live_stream.hpp"
#include "web/trusted_proxies.hpp"
#include "web/viewer_counter.hpp"
#include "web/viewer_token.hpp"

namespace {

// Encodes FFmpeg's test pattern as an H.264 MP4 at `path`: `size`, `rate` frames a second, `seconds`
// long, a key frame every `gop` frames exactly. False when ffmpeg failed.
bool encode_test_clip(const std::string& path, const std::string& size, int rate, int seconds, int gop) {
    const std::string cmd = fmt::format(
        "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size={}:rate={} -t {} -c:v libx264 -preset ultrafast "
        "-g {} -keyint_min {} -sc_threshold 0 -pix_fmt yuv420p {}",
        size, rate, seconds, gop, gop, path);
    return std::system(cmd.c_str()) == 0;
}

// A logger whose lines land in `text`, for tests that read what was said.
std::shared_ptr<spdlog::logger> logger_into(std::ostringstream& text) {
    return std::make_shared<spdlog::logger>("hls", std::make_shared<spdlog::sinks::ostream_sink_mt>(text));
}

// A camera's video stream made by hand, with no picture size unless the test gives one, and a key
// frame of 64 zero bytes at time 0 for it: what an output sees of a camera, without one.
struct HandMadeStream {
    explicit HandMadeStream(AVCodecID codec) {
        stream = avformat_new_stream(source.get(), nullptr);
        if (stream == nullptr || av_new_packet(key.get(), 64) != 0)
            throw std::runtime_error("cannot make a stream by hand");
        stream->codecpar->codec_type = AVMEDIA_TYPE_VIDEO;
        stream->codecpar->codec_id = codec;
        stream->time_base = AVRational{1, 90000};
        std::fill_n(key->data, 64, std::uint8_t{0});
        key->flags = AV_PKT_FLAG_KEY;
        key->pts = key->dts = 0;
    }
    std::unique_ptr<AVFormatContext, void (*)(AVFormatContext*)> source{avformat_alloc_context(),
                                                                        avformat_free_context};
    AVStream* stream = nullptr;
    std::unique_ptr<AVPacket, void (*)(AVPacket*)> key{av_packet_alloc(),
                                                       [](AVPacket* p) { av_packet_free(&p); }};
};

// Plays `clip` through `observer` as one connection of a camera, as fast as it decodes, calling
// `on_frame` with each frame's number after it.
void play(const std::string& clip, kg::ingest::PacketObserver& observer,
          const std::function<void(int)>& on_frame = {}) {
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({clip}, stop);
    input.set_packet_observer(&observer);
    input.open();
    for (int frame = 0; input.next_frame(); ++frame) {
        if (on_frame) on_frame(frame);
    }
}

// A camera connection that has run for `age` when the test starts: every packet's times are moved
// on by it on their way to `next`.
class Aged final : public kg::ingest::PacketObserver {
public:
    Aged(kg::ingest::PacketObserver& next, std::chrono::milliseconds age) : next_(next), age_(age) {}
    ~Aged() override { av_packet_free(&copy_); }
    void on_stream_opened(const AVStream& stream) override { next_.on_stream_opened(stream); }
    void on_packet(const AVPacket& packet, const AVStream& stream) override {
        if (av_packet_ref(copy_, &packet) < 0) return;
        const std::int64_t shift = av_rescale_q(age_.count(), AVRational{1, 1000}, stream.time_base);
        if (copy_->dts != AV_NOPTS_VALUE) copy_->dts += shift;
        if (copy_->pts != AV_NOPTS_VALUE) copy_->pts += shift;
        next_.on_packet(*copy_, stream);
        av_packet_unref(copy_);
    }
    void on_stream_closed() override { next_.on_stream_closed(); }

private:
    kg::ingest::PacketObserver& next_;
    std::chrono::milliseconds age_;
    AVPacket* copy_ = av_packet_alloc();
};

// The times (ms) of the video frames in an FLV byte stream, as a player reads them: 24 bits and
// the extended byte above them. The sequence header is not a frame.
std::vector<std::int64_t> flv_frame_times(const std::string& flv) {
    std::vector<std::int64_t> out;
    std::size_t at = 0;
    if (flv.compare(0, 3, "FLV") == 0) at = 9 + 4;
    const auto byte = [&](std::size_t i) {
        return static_cast<std::int64_t>(static_cast<unsigned char>(flv[i]));
    };
    while (at + 11 <= flv.size()) {
        const std::int64_t size = byte(at + 1) << 16 | byte(at + 2) << 8 | byte(at + 3);
        const std::int64_t time = byte(at + 7) << 24 | byte(at + 4) << 16 | byte(at + 5) << 8 | byte(at + 6);
        if (at + 11 + static_cast<std::size_t>(size) > flv.size()) break;
        if (byte(at) == 9 && size > 2 && byte(at + 12) == 1) out.push_back(time);  // AVC NALU
        at += 11 + static_cast<std::size_t>(size) + 4;
    }
    return out;
}

std::string joined(const std::vector<kg::web::Chunk>& chunks) {
    std::string all;
    for (const auto& c : chunks) all += *c;
    return all;
}

constexpr std::chrono::milliseconds kNearTheWrap{(std::int64_t{1} << 31) - 1500};  // 1.5 s before 2^31 ms

}  // namespace

namespace kg::web {
namespace {

const std::string kSecret = "0123456789abcdef0123456789abcdef";

TEST(ViewerToken, SignedTokenOpensItsCameraUntilItExpires) {
    const auto token = sign_viewer_token(kSecret, "kitchen", 1000);
    EXPECT_EQ(check_viewer_token(kSecret, "kitchen", token, 999), TokenCheck::ok);
    EXPECT_EQ(check_viewer_token(kSecret, "kitchen", token, 1000), TokenCheck::ok);
    EXPECT_EQ(check_viewer_token(kSecret, "kitchen", token, 1001), TokenCheck::expired);
    EXPECT_EQ(check_viewer_token(kSecret, "hall", token, 999), TokenCheck::bad_signature);
    EXPECT_EQ(check_viewer_token("another-secret-of-length", "kitchen", token, 999),
              TokenCheck::bad_signature);
}

TEST(ViewerToken, KnownVector) {
    // printf 'kitchen:1000' | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
    EXPECT_EQ(sign_viewer_token(kSecret, "kitchen", 1000),
              "1000.e33c33b33b17c7a789fec5307fd10a48ece4c3669ccd86ab46843c5146dfe9a8");
}

// .NET's Convert.ToHexString and Java's printHexBinary write the signature in capitals: every viewer
// of an app signing with them was refused (a review).
TEST(ViewerToken, ASignatureInCapitalsIsTheSameSignature) {
    auto token = sign_viewer_token(kSecret, "kitchen", 1000);
    for (auto& c : token) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(token, "1000.E33C33B33B17C7A789FEC5307FD10A48ECE4C3669CCD86AB46843C5146DFE9A8");
    EXPECT_EQ(check_viewer_token(kSecret, "kitchen", token, 999), TokenCheck::ok);
    EXPECT_EQ(check_viewer_token(kSecret, "hall", token, 999), TokenCheck::bad_signature);
}

TEST(ViewerToken, SiteTokenOpensEveryCamera) {
    const auto token = sign_viewer_token(kSecret, "*", 1000);
    EXPECT_EQ(check_viewer_token(kSecret, "kitchen", token, 10), TokenCheck::ok);
    EXPECT_EQ(check_viewer_token(kSecret, "hall", token, 10), TokenCheck::ok);
}

TEST(ViewerToken, ExpiryCannotBeExtendedByEditingIt) {
    auto token = sign_viewer_token(kSecret, "kitchen", 1000);
    token.replace(0, 4, "9999");
    EXPECT_EQ(check_viewer_token(kSecret, "kitchen", token, 10), TokenCheck::bad_signature);
}

TEST(ViewerToken, MalformedAndMissing) {
    EXPECT_EQ(check_viewer_token(kSecret, "kitchen", "", 10), TokenCheck::missing);
    for (const char* bad : {"abc", ".", "1000.", "x1000.00", "1000.zz", "-.aa"})
        EXPECT_EQ(check_viewer_token(kSecret, "kitchen", bad, 10), TokenCheck::malformed) << bad;
    const auto token = sign_viewer_token(kSecret, "kitchen", 1000);
    EXPECT_EQ(check_viewer_token(kSecret, "kitchen", token + "0", 10), TokenCheck::malformed);
}

using Clock = ViewerCounter::Clock;

TEST(ViewerCounter, CameraCapKeepsExistingViewers) {
    ViewerCounter viewers({2, 10}, std::chrono::seconds(10));
    const auto t = Clock::now();
    EXPECT_EQ(viewers.hls("cam", "10.0.0.1", "a", t), ViewerCounter::Admit::ok);
    EXPECT_EQ(viewers.hls("cam", "10.0.0.2", "b", t), ViewerCounter::Admit::ok);
    EXPECT_EQ(viewers.hls("cam", "10.0.0.3", "c", t), ViewerCounter::Admit::camera_full);
    EXPECT_EQ(viewers.hls("cam", "10.0.0.1", "a", t + std::chrono::seconds(5)), ViewerCounter::Admit::ok);
    EXPECT_EQ(viewers.hls("other", "10.0.0.3", "c", t), ViewerCounter::Admit::ok);
    EXPECT_EQ(viewers.viewers("cam", t).hls, 2u);
}

TEST(ViewerCounter, ViewersWhoLeftExpire) {
    ViewerCounter viewers({1, 10}, std::chrono::seconds(10));
    const auto t = Clock::now();
    EXPECT_EQ(viewers.hls("cam", "10.0.0.1", "a", t), ViewerCounter::Admit::ok);
    EXPECT_EQ(viewers.hls("cam", "10.0.0.2", "b", t + std::chrono::seconds(5)),
              ViewerCounter::Admit::camera_full);
    EXPECT_EQ(viewers.hls("cam", "10.0.0.2", "b", t + std::chrono::seconds(11)), ViewerCounter::Admit::ok);
    EXPECT_EQ(viewers.viewers("cam", t + std::chrono::seconds(11)).hls, 1u);
}

TEST(ViewerCounter, AddressCapCountsHlsAndFlv) {
    ViewerCounter viewers({10, 2}, std::chrono::seconds(10));
    const auto t = Clock::now();
    EXPECT_EQ(viewers.hls("a", "10.0.0.1", "s1", t), ViewerCounter::Admit::ok);
    ASSERT_EQ(viewers.admit_flv("b", "10.0.0.1", t), ViewerCounter::Admit::ok);
    auto stream = std::make_shared<LiveStream>(1024);
    viewers.add_flv("b", "10.0.0.1", stream);
    EXPECT_EQ(viewers.hls("c", "10.0.0.1", "s2", t), ViewerCounter::Admit::address_full);
    EXPECT_EQ(viewers.admit_flv("c", "10.0.0.1", t), ViewerCounter::Admit::address_full);
    EXPECT_EQ(viewers.viewers("b", t).flv, 1u);
    stream->finish();  // the FLV viewer leaves: its place is free again
    EXPECT_EQ(viewers.viewers("b", t).flv, 0u);
    EXPECT_EQ(viewers.admit_flv("c", "10.0.0.1", t), ViewerCounter::Admit::ok);
}

// One parents' page is one viewer of its address, however many cameras it shows: its players share
// a session id. Counted per camera, a page of 9 cameras could not show the ninth under the default
// cap of 8 (the 55th session's review). Per camera, each session still counts.
TEST(ViewerCounter, APageOfManyCamerasIsOneViewerOfItsAddress) {
    ViewerCounter viewers({10, 2}, std::chrono::seconds(10));
    const auto t = Clock::now();
    for (int c = 0; c < 9; ++c)
        EXPECT_EQ(viewers.hls("cam" + std::to_string(c), "10.0.0.1", "page", t), ViewerCounter::Admit::ok)
            << c;
    EXPECT_EQ(viewers.hls("cam0", "10.0.0.1", "second-page", t), ViewerCounter::Admit::ok);
    EXPECT_EQ(viewers.hls("cam0", "10.0.0.1", "third-page", t), ViewerCounter::Admit::address_full);
    EXPECT_EQ(viewers.hls("cam9", "10.0.0.1", "page", t), ViewerCounter::Admit::ok)
        << "a page already counted";
    EXPECT_EQ(viewers.admit_flv("cam0", "10.0.0.1", t), ViewerCounter::Admit::address_full);
    EXPECT_EQ(viewers.viewers("cam0", t).hls, 2u);
}

// An IPv6 host picks any address of its /64: its viewers are counted together, not one each.
TEST(ViewerCounter, AnIPv6ClientIsCountedByItsSlash64) {
    ViewerCounter viewers({10, 2}, std::chrono::seconds(10));
    const auto t = Clock::now();
    EXPECT_EQ(viewers.hls("a", "2001:db8:1:2::a", "s1", t), ViewerCounter::Admit::ok);
    auto stream = std::make_shared<LiveStream>(1024);
    ASSERT_EQ(viewers.admit_flv("b", "2001:db8:1:2:ffff::1", t), ViewerCounter::Admit::ok);
    viewers.add_flv("b", "2001:db8:1:2:ffff::1", stream);
    EXPECT_EQ(viewers.hls("c", "2001:db8:1:2::c", "s3", t), ViewerCounter::Admit::address_full);
    EXPECT_EQ(viewers.admit_flv("c", "2001:db8:1:2::d", t), ViewerCounter::Admit::address_full);
    EXPECT_EQ(viewers.hls("c", "2001:db8:1:3::c", "s3", t), ViewerCounter::Admit::ok) << "another /64";
    // The same session from another address of its /64 (privacy addresses rotate) is the same viewer.
    EXPECT_EQ(viewers.hls("a", "2001:db8:1:2::99", "s1", t), ViewerCounter::Admit::ok);
    EXPECT_EQ(kg::web::address_block("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
    EXPECT_EQ(kg::web::address_block("::ffff:192.0.2.7"), "192.0.2.7");
    EXPECT_EQ(kg::web::address_block("unknown"), "unknown");
}

// A HEAD is answered as a GET would be, without taking a viewer's place.
TEST(ViewerCounter, PeekingAnswersLikeACountDoesWithoutCounting) {
    ViewerCounter viewers({1, 10}, std::chrono::seconds(10));
    const auto t = Clock::now();
    EXPECT_EQ(viewers.peek_hls("cam", "10.0.0.1", "a", t), ViewerCounter::Admit::ok);
    EXPECT_EQ(viewers.viewers("cam", t).hls, 0u);
    EXPECT_EQ(viewers.hls("cam", "10.0.0.2", "b", t), ViewerCounter::Admit::ok);  // the place is still free
    EXPECT_EQ(viewers.peek_hls("cam", "10.0.0.2", "b", t), ViewerCounter::Admit::ok);  // already watching
    EXPECT_EQ(viewers.peek_hls("cam", "10.0.0.1", "a", t), ViewerCounter::Admit::camera_full);
    // Peeking does not keep a session alive either.
    EXPECT_EQ(viewers.peek_hls("cam", "10.0.0.2", "b", t + std::chrono::seconds(9)),
              ViewerCounter::Admit::ok);
    EXPECT_EQ(viewers.peek_hls("cam", "10.0.0.1", "a", t + std::chrono::seconds(11)),
              ViewerCounter::Admit::ok);
}

TEST(ViewerCounter, APlaylistRequestKeepsAViewerButCountsNobodyNew) {
    ViewerCounter viewers({1, 10}, std::chrono::seconds(10));
    const auto t = Clock::now();
    EXPECT_EQ(viewers.playlist("cam", "10.0.0.1", "a", t), ViewerCounter::Admit::ok);
    EXPECT_EQ(viewers.viewers("cam", t).hls, 0u);  // the playlist alone makes no viewer
    EXPECT_EQ(viewers.hls("cam", "10.0.0.2", "b", t), ViewerCounter::Admit::ok);
    // b polls its playlist between two long segments: still watching 15 s later, a refused.
    EXPECT_EQ(viewers.playlist("cam", "10.0.0.2", "b", t + std::chrono::seconds(8)),
              ViewerCounter::Admit::ok);
    EXPECT_EQ(viewers.hls("cam", "10.0.0.1", "a", t + std::chrono::seconds(15)),
              ViewerCounter::Admit::camera_full);
    EXPECT_EQ(viewers.viewers("cam", t + std::chrono::seconds(15)).hls, 1u);
    // Once b stops asking, its place frees after the window.
    EXPECT_EQ(viewers.hls("cam", "10.0.0.1", "a", t + std::chrono::seconds(19)), ViewerCounter::Admit::ok);
}

Chunk chunk(std::size_t n) { return std::make_shared<const std::string>(n, 'x'); }

TEST(LiveStream, DeliversInOrderAndWakesTheConsumer) {
    LiveStream s(1000);
    int wakes = 0;
    s.set_waker([&] { ++wakes; });
    EXPECT_TRUE(s.push(chunk(10)));
    EXPECT_TRUE(s.push(chunk(20)));
    EXPECT_EQ(wakes, 2);
    std::vector<Chunk> out;
    EXPECT_TRUE(s.take(out));
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0]->size(), 10u);
    EXPECT_EQ(out[1]->size(), 20u);
    s.finish();
    out.clear();
    EXPECT_FALSE(s.take(out));  // ended and drained
}

TEST(LiveStream, SlowClientOverflowsAndIsDropped) {
    LiveStream s(100);
    EXPECT_TRUE(s.push(chunk(60)));
    EXPECT_FALSE(s.push(chunk(60)));  // over the budget: the producer drops this viewer
    EXPECT_TRUE(s.overflowed());
    EXPECT_FALSE(s.push(chunk(1)));
    std::vector<Chunk> out;
    EXPECT_FALSE(s.take(out));  // nothing queued is kept
    EXPECT_TRUE(out.empty());
}

TEST(LiveStream, EndsAtItsDeadlineAfterWhatWasQueued) {
    LiveStream s(1000);
    int wakes = 0;
    s.set_waker([&] { ++wakes; });
    s.end_at(std::chrono::system_clock::now() + std::chrono::hours(1));
    EXPECT_TRUE(s.push(chunk(10)));
    s.end_at(std::chrono::system_clock::now() - std::chrono::seconds(1));  // the token expired
    EXPECT_FALSE(s.push(chunk(20)));
    EXPECT_TRUE(s.expired());
    EXPECT_FALSE(s.overflowed());
    EXPECT_EQ(wakes, 2) << "the consumer is woken to send the end";
    std::vector<Chunk> out;
    EXPECT_TRUE(s.take(out));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0]->size(), 10u);
    out.clear();
    EXPECT_FALSE(s.take(out));
}

TEST(LiveStream, FinishedStreamStillDrainsWhatWasQueued) {
    LiveStream s(100);
    s.push(chunk(5));
    s.finish();
    std::vector<Chunk> out;
    EXPECT_TRUE(s.take(out));
    EXPECT_EQ(out.size(), 1u);
    out.clear();
    EXPECT_FALSE(s.take(out));
}

TEST(LiveStream, CancelledByTheClientRefusesTheProducer) {
    LiveStream s(100);
    s.cancel();
    EXPECT_FALSE(s.push(chunk(1)));
}

}  // namespace
}  // namespace kg::web

// HTTP-FLV: a viewer joining in the middle of a GOP larger than its queue. It used to be handed the
// whole GOP at once, which overflowed its queue: refused at once, and logged as a slow client.
TEST(FlvHub, AViewerJoiningALargeGopWaitsForTheNextKeyFrameInsteadOfBeingRefused) {
    namespace fs = std::filesystem;
    const auto clip = fs::temp_directory_path() / ("kg-flv-gop-" + std::to_string(::getpid()) + ".mp4");
    const std::string cmd =
        "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x180:rate=25 -t 8 -c:v libx264 "
        "-preset ultrafast -g 100 -keyint_min 100 -sc_threshold 0 -pix_fmt yuv420p " +
        clip.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    kg::stream::FlvHub hub("kitchen", spdlog::default_logger());
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({clip.string()}, stop);
    input.set_packet_observer(&hub);
    input.open();
    constexpr std::size_t kQueue = 32 << 10;  // well under one 4 s GOP of this clip
    std::shared_ptr<kg::web::LiveStream> early, late;
    std::vector<kg::web::Chunk> early_got, late_got;
    for (int frame = 0; input.next_frame(); ++frame) {
        if (frame == 1) early = hub.subscribe(1 << 20);  // a queue the GOP so far fits: it starts at once
        if (frame == 50) late = hub.subscribe(kQueue);   // mid-GOP, the GOP so far larger than half the queue
        if (early) early->take(early_got);
        if (late) late->take(late_got);
    }
    ASSERT_TRUE(early && late);
    EXPECT_FALSE(late->overflowed());
    const auto is_key_tag = [](const kg::web::Chunk& c) {
        return c->size() > 12 && (*c)[0] == 9 && static_cast<unsigned char>((*c)[11]) == 0x17;
    };
    // The late viewer: the header, then the next key frame's tag, then what follows it.
    ASSERT_GT(late_got.size(), 30u);
    EXPECT_TRUE(is_key_tag(late_got[1]));
    // The early one got the GOP so far, from its key frame, without waiting.
    ASSERT_GT(early_got.size(), late_got.size());
    EXPECT_TRUE(is_key_tag(early_got[1]));
    fs::remove(clip);
}

// One packet FLV cannot carry (16 MiB or more) stopped HTTP-FLV until the camera's next connection,
// weeks on a camera that stays up, and WeChat's viewers (FLV only) got 503 meanwhile (review). The
// viewers of that moment end, and the stream starts again at the next key frame.
TEST(FlvHub, AMuxErrorStartsTheStreamAgainAtTheNextKeyFrame) {
    namespace fs = std::filesystem;
    const auto clip = fs::temp_directory_path() / ("kg-flv-error-" + std::to_string(::getpid()) + ".mp4");
    const std::string cmd =
        "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x180:rate=25 -t 6 -c:v libx264 "
        "-preset ultrafast -g 25 -keyint_min 25 -sc_threshold 0 -pix_fmt yuv420p " +
        clip.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::ostringstream text;
    auto log =
        std::make_shared<spdlog::logger>("flv", std::make_shared<spdlog::sinks::ostream_sink_mt>(text));
    kg::stream::FlvHub hub("kitchen", log);
    // Between the input and the hub: packet 40 (mid-GOP) is replaced by one of 17 MiB, same times.
    struct Spoiler : kg::ingest::PacketObserver {
        kg::stream::FlvHub& hub;
        int n = 0;
        explicit Spoiler(kg::stream::FlvHub& h) : hub(h) {}
        void on_stream_opened(const AVStream& s) override { hub.on_stream_opened(s); }
        void on_packet(const AVPacket& p, const AVStream& s) override {
            if (++n != 40) return hub.on_packet(p, s);
            AVPacket* big = av_packet_alloc();
            ASSERT_EQ(av_new_packet(big, 17 << 20), 0);
            av_packet_copy_props(big, &p);
            hub.on_packet(*big, s);
            av_packet_free(&big);
        }
        void on_stream_closed() override { hub.on_stream_closed(); }
    } spoiler(hub);
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({clip.string()}, stop);
    input.set_packet_observer(&spoiler);
    input.open();
    std::shared_ptr<kg::web::LiveStream> before, after;
    bool live_after = false;
    for (int frame = 0; input.next_frame(); ++frame) {
        if (frame == 30) before = hub.subscribe(1 << 20);
        if (frame == 80 && (after = hub.subscribe(1 << 20))) live_after = true;
    }
    fs::remove(clip);
    ASSERT_TRUE(before);
    EXPECT_TRUE(before->finished()) << "the viewers of the failed stream end";
    EXPECT_TRUE(live_after) << "HTTP-FLV stayed off after the mux error: " << text.str();
    EXPECT_NE(text.str().find("mux error; starting again at the next key frame"), std::string::npos)
        << text.str();
}

// Viewers joining on the HTTP threads while the ingest thread muxes. A viewer subscribing between
// the GOP's update and the broadcast got that tag twice (a corrupt picture until the next key
// frame); one subscribing as the stream ended got its header and then nothing, holding its
// connection until the camera's next one. Each window is a few instructions wide: this runs
// thousands of joins across them.
TEST(FlvHub, ViewersJoiningWhileItMuxesGetEachTagOnceAndEndWithTheStream) {
    namespace fs = std::filesystem;
    const auto clip = fs::temp_directory_path() / ("kg-flv-race-" + std::to_string(::getpid()) + ".mp4");
    ASSERT_TRUE(encode_test_clip(clip.string(), "160x90", 25, 20, 5));
    kg::stream::FlvHub hub("kitchen", spdlog::default_logger());
    std::atomic<bool> done{false};
    std::atomic<int> joins{0}, twice{0};
    std::vector<std::shared_ptr<kg::web::LiveStream>> kept;  // the subscriber thread's, read after join()
    std::thread viewers([&] {
        while (!done) {
            auto s = hub.subscribe(1 << 20);
            if (!s) continue;
            ++joins;
            std::vector<kg::web::Chunk> got;
            for (int i = 0; i < 3; ++i) s->take(got);
            std::set<const std::string*> seen;
            for (const auto& c : got) twice += seen.insert(c.get()).second ? 0 : 1;
            kept.push_back(s);
            if (kept.size() > 64) kept.erase(kept.begin(), kept.begin() + 32);
            for (std::size_t i = 0; i + 8 < kept.size(); ++i) kept[i]->finish();  // viewers who left
        }
    });
    for (int connection = 0; connection < 3; ++connection) {
        play(clip.string(), hub);
        hub.on_stream_closed();
    }
    done = true;
    viewers.join();
    EXPECT_GT(joins.load(), 100);
    EXPECT_EQ(twice.load(), 0);
    for (const auto& s : kept) EXPECT_TRUE(s->finished()) << "a viewer left holding a stream that ended";
    fs::remove(clip);
}

// FLV writes a time in 31 bits of milliseconds: 24.8 days of one camera connection, and every
// viewer's time went back to 0 (the player froze). The hub counts from its own first key frame.
TEST(FlvHub, AViewersTimesCountFromTheStreamsStartNotTheConnections) {
    namespace fs = std::filesystem;
    const auto clip = fs::temp_directory_path() / ("kg-flv-aged-" + std::to_string(::getpid()) + ".mp4");
    ASSERT_TRUE(encode_test_clip(clip.string(), "160x90", 25, 4, 25));
    kg::stream::FlvHub hub("kitchen", spdlog::default_logger());
    Aged aged(hub, kNearTheWrap);
    std::shared_ptr<kg::web::LiveStream> viewer;
    std::vector<kg::web::Chunk> got;
    play(clip.string(), aged, [&](int) {
        if (!viewer) viewer = hub.subscribe(8 << 20);
        if (viewer) viewer->take(got);
    });
    ASSERT_TRUE(viewer);
    const auto times = flv_frame_times(joined(got));
    ASSERT_GT(times.size(), 90u);
    EXPECT_EQ(times.front(), 0);
    EXPECT_TRUE(std::is_sorted(times.begin(), times.end())) << "a time went back";
    EXPECT_LT(times.back(), 4000);
    fs::remove(clip);
}

// Past `restart_after` the hub starts over at a key frame: its viewers' streams end (the page
// reconnects), and the next viewer's times count from 0 again, long before the wrap.
TEST(FlvHub, StartsOverAtAKeyFrameAfterItsRestartTime) {
    namespace fs = std::filesystem;
    const auto clip = fs::temp_directory_path() / ("kg-flv-restart-" + std::to_string(::getpid()) + ".mp4");
    ASSERT_TRUE(encode_test_clip(clip.string(), "160x90", 25, 8, 25));
    kg::stream::FlvHub hub("kitchen", spdlog::default_logger(), std::chrono::seconds(5));
    Aged aged(hub, kNearTheWrap);
    std::shared_ptr<kg::web::LiveStream> first, second;
    std::vector<kg::web::Chunk> first_got, second_got;
    play(clip.string(), aged, [&](int) {
        if (!first) first = hub.subscribe(8 << 20);
        if (first) first->take(first_got);
        if (first && first->finished() && !second) second = hub.subscribe(8 << 20);
        if (second) second->take(second_got);
    });
    ASSERT_TRUE(first && second);
    const auto before = flv_frame_times(joined(first_got));
    const auto after = flv_frame_times(joined(second_got));
    ASSERT_FALSE(before.empty());
    EXPECT_EQ(before.front(), 0);
    EXPECT_EQ(before.back(), 4960);  // the last frame before the key frame at 5 s (25 a second)
    ASSERT_EQ(after.size(), 75u);    // the clip's last 3 s
    EXPECT_EQ(after.front(), 0);
    EXPECT_TRUE(std::is_sorted(after.begin(), after.end()));
    EXPECT_EQ(after.back(), 2960);
    fs::remove(clip);
}

// The RTMP push writes FLV too: its times count from its own first key frame, and past
// `restart_after` it ends the push and starts a new one at once from the key frame (here into a
// file, which a new push starts afresh).
TEST(RtmpPusher, ItsTimesCountFromThePushsStartAndItStartsOverBeforeTheyWrap) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-rtmp-aged-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const auto clip = dir / "clip.mp4";
    ASSERT_TRUE(encode_test_clip(clip.string(), "160x90", 25, 8, 25));
    for (const bool restarts : {false, true}) {
        const auto out = dir / (restarts ? "restarts.flv" : "plain.flv");
        std::uint64_t connects = 0;
        {
            kg::stream::RtmpPusher pusher(
                out.string(), spdlog::default_logger(),
                restarts ? std::chrono::milliseconds(5000) : kg::stream::FlvClock::kRestartAfter);
            Aged aged(pusher, kNearTheWrap);
            int frames = 0;
            play(clip.string(), aged, [&](int) { ++frames; });
            for (int i = 0; i < 500 && pusher.packets_sent() + pusher.packets_dropped() <
                                           static_cast<std::uint64_t>(frames);
                 ++i)
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            EXPECT_EQ(pusher.packets_dropped(), 0u);
            // The connection ends (not the pusher, whose stop interrupts its writes): the push writes
            // what it buffered and its trailer.
            pusher.on_stream_closed();
            for (int i = 0; i < 500 && pusher.connected(); ++i)
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
            connects = pusher.connects();
        }
        std::ifstream in(out, std::ios::binary);
        const std::string flv((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const auto times = flv_frame_times(flv);
        ASSERT_FALSE(times.empty()) << out;
        EXPECT_EQ(times.front(), 0) << out;
        EXPECT_TRUE(std::is_sorted(times.begin(), times.end())) << out << ": a time went back";
        if (restarts) {
            EXPECT_EQ(connects, 2u);
            EXPECT_EQ(times.back(), 2960);  // the second push: the clip's last 3 s, from 0
        } else {
            EXPECT_EQ(connects, 1u);
            EXPECT_EQ(times.back(), 7960);
        }
    }
    fs::remove_all(dir);
}

// HLS: a camera that sends one key frame and then only P-frames. The open segment, on tmpfs, grew
// with the bitrate for ever; past the limit the writer lets it go and waits for the next key frame.
TEST(HlsWriter, AGopLargerThanItHoldsIsLetGoAndTheStreamWaitsForAKeyFrame) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-hls-gop-" + std::to_string(::getpid()));
    const auto clip = dir.string() + ".mp4";
    const std::string cmd =
        "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x180:rate=25 -t 8 -c:v libx264 "
        "-preset ultrafast -g 1000 -keyint_min 1000 -sc_threshold 0 -pix_fmt yuv420p " +
        clip;
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    auto bytes_in = [](const fs::path& folder) {
        std::uintmax_t n = 0;
        for (const auto& f : fs::directory_iterator(folder)) n += f.file_size();
        return n;
    };
    std::atomic<bool> stop{false};
    {
        std::ostringstream log_text;
        auto log = logger_into(log_text);
        kg::stream::HlsWriter writer(dir.string(), 1, log, 64 << 10);
        kg::ingest::FfmpegInput input({clip}, stop);
        input.set_packet_observer(&writer);
        input.open();
        bool was_live = false;
        while (input.next_frame()) was_live |= writer.live();
        // It started on the key frame and let go of the GOP once it outgrew 64 KiB.
        EXPECT_NE(log_text.str().find("no key frame for 64 KiB of video"), std::string::npos)
            << log_text.str();
        EXPECT_FALSE(was_live);  // that GOP never closed a segment: no playlist to serve
        EXPECT_FALSE(writer.live());
        EXPECT_LT(bytes_in(dir), 64u << 10);
    }
    fs::remove_all(dir);
    fs::remove(clip);
}

// HLS: a camera with long GOPs at a high bitrate, each GOP under the GOP limit. The playlist keeps
// 6 segments and FFmpeg one more, each at least a GOP: on tmpfs (memory) they took up to 8 GOP
// limits a camera. Past the folder's limit the stream starts over at a key frame.
TEST(HlsWriter, ItsFolderStaysWithinItsLimitAndTheStreamGoesOn) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-hls-folder-" + std::to_string(::getpid()));
    const auto clip = dir.string() + ".mp4";
    // 2 s GOPs of noise: large ones, as a busy kitchen at a high bitrate gives.
    const std::string cmd =
        "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x180:rate=25,noise=alls=40:allf=t -t 24 "
        "-c:v libx264 -preset ultrafast -g 50 -keyint_min 50 -sc_threshold 0 -pix_fmt yuv420p " +
        clip;
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    auto bytes_in = [](const fs::path& folder) {
        std::uintmax_t n = 0;
        std::error_code ec;
        for (const auto& f : fs::directory_iterator(folder, ec)) n += f.file_size(ec);
        return n;
    };
    std::uintmax_t unbounded = 0, bounded = 0, largest_gop = 0;
    for (const bool limited : {false, true}) {
        std::atomic<bool> stop{false};
        std::ostringstream log_text;
        auto log = logger_into(log_text);
        const std::size_t limit = 512 << 10;
        kg::stream::HlsWriter writer(dir.string(), 1, log, std::size_t{64} << 20,
                                     limited ? limit : std::size_t{1} << 40);
        kg::ingest::FfmpegInput input({clip}, stop);
        input.set_packet_observer(&writer);
        input.open();
        std::uintmax_t most = 0, live_frames = 0;
        while (input.next_frame()) {
            most = std::max(most, bytes_in(dir));
            live_frames += writer.live() ? 1 : 0;
        }
        (limited ? bounded : unbounded) = most;
        if (limited) {
            EXPECT_NE(log_text.str().find("the public stream starts over at this key frame"),
                      std::string::npos)
                << log_text.str();
            // Over the limit by at most what one GOP adds before the next key frame is checked.
            EXPECT_LE(bounded, limit + largest_gop) << bounded;
            EXPECT_GT(live_frames, 100u);  // served most of the time between the start-overs
        } else {
            // The GOPs' sizes, from the segments FFmpeg wrote (one GOP each: 2 s GOPs, 1 s segments).
            for (const auto& f : fs::directory_iterator(dir))
                if (f.path().extension() == ".m4s") largest_gop = std::max(largest_gop, f.file_size());
        }
        writer.on_stream_closed();
    }
    std::cout << "folder at most " << (unbounded >> 10) << " KiB without the limit, " << (bounded >> 10)
              << " KiB with 512 KiB (a GOP up to " << (largest_gop >> 10) << " KiB)\n";
    EXPECT_GT(unbounded, 2 * (std::uintmax_t{512} << 10)) << "the clip is too small to show the limit";
    fs::remove_all(dir);
    fs::remove(clip);
}

// A stream that reaches the writer without a picture size (neither its probe nor its first key
// frames gave one: ingest/parameter_sets.hpp) cannot be segmented: FFmpeg's HLS muxer refuses the
// header, and FFmpeg 5.1's leaks about 260 KB each time it does (AddressSanitizer, bench/soak.py).
// The writer does not try, says why once for the same camera, and segments the next connection
// that has one.
TEST(HlsWriter, AStreamWithoutAPictureSizeIsNotSegmentedAndTheReasonIsSaidOnce) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-hls-nosize-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    HandMadeStream made(AV_CODEC_ID_H264);
    AVStream* stream = made.stream;
    auto& key = made.key;
    std::ostringstream log_text;
    {
        auto log = logger_into(log_text);
        kg::stream::HlsWriter writer(dir.string(), 1, log);
        for (int connection = 0; connection < 2; ++connection) {
            writer.on_stream_opened(*stream);
            writer.on_packet(*key, *stream);
            writer.on_stream_closed();
        }
        const std::string text = log_text.str();
        const std::string why = "gave no picture size";
        ASSERT_NE(text.find(why), std::string::npos) << text;
        EXPECT_EQ(text.find(why), text.rfind(why)) << "said once for the same camera:\n" << text;
        EXPECT_EQ(text.find("cannot write"), std::string::npos) << text;  // the muxer was never tried

        // The next connection with a picture size is segmented: its header is written at the key frame.
        stream->codecpar->width = 320;
        stream->codecpar->height = 180;
        writer.on_stream_opened(*stream);
        writer.on_packet(*key, *stream);
        bool init_written = false;
        for (const auto& f : fs::directory_iterator(dir))
            init_written |= f.path().string().ends_with("-init.mp4");
        EXPECT_TRUE(init_written) << log_text.str();
        EXPECT_EQ(log_text.str().find("cannot write"), std::string::npos)
            << log_text.str();  // its header went out
    }
    fs::remove_all(dir);
}

// What ingest takes from a key frame when the probe found nothing: the cropped size (180, not the
// 192 of whole macroblocks), the pixel format, and the SPS and PPS as extradata, padded.
TEST(ParameterSets, AKeyFrameGivesTheSizeThePixelFormatAndTheParameterSets) {
    namespace fs = std::filesystem;
    const auto clip = fs::temp_directory_path() / ("kg-sps-" + std::to_string(::getpid()) + ".h264");
    const std::string cmd =
        "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x180:rate=25 -t 1 -c:v libx264 "
        "-preset ultrafast -pix_fmt yuv420p -f h264 " +
        clip.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    AVFormatContext* raw = nullptr;
    ASSERT_EQ(avformat_open_input(&raw, clip.c_str(), nullptr, nullptr), 0);
    std::unique_ptr<AVFormatContext, void (*)(AVFormatContext*)> format(
        raw, [](AVFormatContext* f) { avformat_close_input(&f); });
    std::unique_ptr<AVPacket, void (*)(AVPacket*)> key(av_packet_alloc(),
                                                       [](AVPacket* p) { av_packet_free(&p); });
    ASSERT_EQ(av_read_frame(format.get(), key.get()), 0);  // no probe: the demuxer's first packet
    ASSERT_NE(key->flags & AV_PKT_FLAG_KEY, 0);

    std::unique_ptr<AVCodecParameters, void (*)(AVCodecParameters*)> params(
        avcodec_parameters_alloc(), [](AVCodecParameters* p) { avcodec_parameters_free(&p); });
    params->codec_type = AVMEDIA_TYPE_VIDEO;
    params->codec_id = AV_CODEC_ID_H264;
    ASSERT_TRUE(kg::ingest::complete_from_key_frame(*params, *key));
    EXPECT_EQ(params->width, 320);
    EXPECT_EQ(params->height, 180);
    EXPECT_EQ(params->format, AV_PIX_FMT_YUV420P);
    ASSERT_GT(params->extradata_size, 8);
    // Annex B: the NAL units' types, each after a 00 00 01 start code.
    const std::uint8_t* x = params->extradata;
    std::vector<int> types;
    for (int i = 0; i + 3 < params->extradata_size; ++i) {
        if (x[i] == 0 && x[i + 1] == 0 && x[i + 2] == 1) types.push_back(x[i + 3] & 0x1f);
    }
    EXPECT_EQ(types, (std::vector<int>{7, 8})) << "the SPS, then the PPS";
    for (int i = 0; i < AV_INPUT_BUFFER_PADDING_SIZE; ++i) ASSERT_EQ(x[params->extradata_size + i], 0);

    // A packet without parameter sets completes nothing.
    std::unique_ptr<AVCodecParameters, void (*)(AVCodecParameters*)> empty(
        avcodec_parameters_alloc(), [](AVCodecParameters* p) { avcodec_parameters_free(&p); });
    empty->codec_type = AVMEDIA_TYPE_VIDEO;
    empty->codec_id = AV_CODEC_ID_H264;
    std::unique_ptr<AVPacket, void (*)(AVPacket*)> next(av_packet_alloc(),
                                                        [](AVPacket* p) { av_packet_free(&p); });
    ASSERT_EQ(av_read_frame(format.get(), next.get()), 0);
    EXPECT_FALSE(kg::ingest::complete_from_key_frame(*empty, *next));
    EXPECT_EQ(empty->extradata_size, 0);
    fs::remove(clip);
}

// An MP4 file holds a USB camera's MJPEG (its clips are kept), but no browser plays it as HLS: the
// writer made segments, the status called the camera live, and the parents' page tried again
// every few seconds (a review). Raw pictures no MP4 file holds at all. Neither is segmented.
TEST(HlsWriter, VideoNoBrowserPlaysAsHlsIsNotSegmentedAndSaysWhy) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-hls-mjpeg-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    HandMadeStream made(AV_CODEC_ID_MJPEG);
    AVStream* stream = made.stream;
    auto& key = made.key;
    stream->codecpar->width = 320;
    stream->codecpar->height = 180;
    for (const auto& [codec, why] :
         {std::pair{AV_CODEC_ID_MJPEG, "which browsers do not play as HLS (give it H.264)"},
          std::pair{AV_CODEC_ID_RAWVIDEO,
                    "the camera sends rawvideo video, which an MP4 file cannot hold"}}) {
        stream->codecpar->codec_id = codec;
        std::ostringstream log_text;
        auto log = logger_into(log_text);
        kg::stream::HlsWriter writer(dir.string(), 1, log);
        writer.on_stream_opened(*stream);
        for (int i = 0; i < 3; ++i) {
            key->pts = key->dts = i * 90000;
            writer.on_packet(*key, *stream);
        }
        EXPECT_FALSE(writer.live());
        EXPECT_NE(log_text.str().find(why), std::string::npos) << log_text.str();
        EXPECT_TRUE(fs::is_empty(dir)) << "nothing written for " << avcodec_get_name(codec);
        writer.on_stream_closed();
    }
    fs::remove_all(dir);
}

// A camera that sends its parameter sets only with its key frames, none in its description, with a
// GOP longer than the 2 s probe: the connection opens with no picture size. Its public streams used
// to wait for a connection that probed better (with such a camera, maybe never); they start at its
// first key frame now, which carries the size and the parameter sets.
TEST(HlsWriter, AConnectionWhoseProbeFoundNoPictureSizeIsServedFromItsFirstKeyFrame) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-hls-late-size-" + std::to_string(::getpid()));
    const auto whole = dir.string() + "-whole.ts";
    const auto clip = dir.string() + ".ts";
    const std::string cmd =
        "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x180:rate=25 -t 12 -c:v libx264 "
        "-preset ultrafast -g 100 -keyint_min 100 -sc_threshold 0 -pix_fmt yuv420p -f mpegts " +
        whole;
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    {
        // Cut 5% into the first 4 s GOP, on a 188-byte packet's boundary: the probe's 2 s hold no
        // parameter sets (ffprobe with the same limits says 0x0).
        std::ifstream in(whole, std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const std::size_t cut = bytes.size() / 188 / 20 * 188;
        std::ofstream(clip, std::ios::binary)
            .write(bytes.data() + cut, static_cast<std::streamsize>(bytes.size() - cut));
    }
    std::atomic<bool> stop{false};
    {
        std::ostringstream log_text;
        auto log = logger_into(log_text);
        kg::stream::HlsWriter writer(dir.string(), 1, log);
        kg::stream::FlvHub hub("kitchen", log);
        kg::ingest::PacketFanout outputs;
        outputs.add(&writer);
        outputs.add(&hub);
        kg::ingest::FfmpegInput input({clip}, stop);
        input.set_packet_observer(&outputs);
        input.open();
        EXPECT_NE(input.describe().find("0x0"), std::string::npos)
            << "the probe found a size: " << input.describe();
        bool live = false;
        std::shared_ptr<kg::web::LiveStream> viewer;
        std::vector<kg::web::Chunk> got;
        while (input.next_frame()) {
            if (!viewer) viewer = hub.subscribe(1 << 20);  // at the first picture: the first key frame
            ASSERT_NE(viewer, nullptr) << "no FLV stream at the first picture";
            viewer->take(got);
            live |= writer.live();
        }
        const std::string text = log_text.str();
        EXPECT_TRUE(live) << text;
        EXPECT_EQ(text.find("gave no picture size"), std::string::npos) << text;
        ASSERT_FALSE(viewer->overflowed());
        ASSERT_GT(got.size(), 30u) << text;
        EXPECT_EQ(static_cast<unsigned char>((*got[1])[11]), 0x17) << "the FLV viewer starts on a key frame";

        // The playlist's video is 320x180, as a player reads it from the init segment's avcC.
        const std::string probe =
            "ffprobe -v error -select_streams v -show_entries stream=width,height -of csv=p=0 " +
            (dir / "index.m3u8").string();
        std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(probe.c_str(), "r"), ::pclose);
        ASSERT_TRUE(pipe);
        char line[64] = {};
        ASSERT_NE(std::fgets(line, sizeof line, pipe.get()), nullptr);
        EXPECT_EQ(std::string(line), "320,180\n");
    }
    fs::remove_all(dir);
    fs::remove(clip);
    fs::remove(whole);
}

// HLS file names never come back after a restart: segments are served with max-age=60, and a player
// or a cache holding `g1-00001.m4s` from before a restart was handed the same name for other video.
TEST(HlsWriter, FileNamesDifferFromOneRunToTheNext) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-hls-names-" + std::to_string(::getpid()));
    const auto clip = dir.string() + ".mp4";
    const std::string cmd =
        "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=160x90:rate=25 -t 3 -c:v libx264 "
        "-preset ultrafast -g 25 -pix_fmt yuv420p " +
        clip;
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    // The names one writer (one run of the gateway) gives the clip, as its playlist lists them.
    auto names_of_a_run = [&] {
        std::set<std::string> names;
        kg::stream::HlsWriter writer(dir.string(), 1, spdlog::default_logger());
        std::atomic<bool> stop{false};
        kg::ingest::FfmpegInput input({clip}, stop);
        input.set_packet_observer(&writer);
        input.open();
        while (input.next_frame()) {
            for (const auto& f : fs::directory_iterator(dir)) {
                const auto name = f.path().filename().string();
                if (name.ends_with(".m4s") || name.ends_with("-init.mp4")) names.insert(name);
            }
        }
        return names;
    };
    const auto first = names_of_a_run(), second = names_of_a_run();
    ASSERT_GE(first.size(), 3u);
    ASSERT_GE(second.size(), 3u);
    const std::regex short_name(R"([0-9a-z]{6}g1-(init\.mp4|[0-9]{5,10}\.m4s))");
    const std::regex served(kg::stream::kHlsFileName);
    // What the web side admits: these names, and those of a camera that reconnected a million times.
    EXPECT_TRUE(std::regex_match("k3f9a2g1000000-00042.m4s", served));
    EXPECT_TRUE(std::regex_match("k3f9a2g2147483647-init.mp4", served));
    EXPECT_FALSE(std::regex_match("k3f9a2g1-00042.m4s.tmp", served));
    for (const auto& name : first) {
        EXPECT_TRUE(std::regex_match(name, short_name)) << name;
        EXPECT_TRUE(std::regex_match(name, served)) << name;
        EXPECT_FALSE(second.contains(name)) << name << " came back after a restart";
    }
    fs::remove_all(dir);
    fs::remove(clip);
}

// `public.segment` is the length of a segment, cut at the first key frame after it. FFmpeg 5.1's
// hls_time is a duration in microseconds: set as the integer 2 it was 2 us, and every key frame
// cut a segment (1 s segments from a camera with a 1 s GOP, whatever the configuration said).
TEST(HlsWriter, SegmentsAreAsLongAsConfiguredNotOneGopEach) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-hls-length-" + std::to_string(::getpid()));
    const auto clip = dir.string() + ".mp4";
    ASSERT_TRUE(encode_test_clip(clip, "160x90", 25, 9, 25));
    std::string playlist;
    {
        kg::stream::HlsWriter writer(dir.string(), 2, spdlog::default_logger());
        play(clip, writer);
        std::ifstream in(dir / "index.m3u8");
        playlist.assign(std::istreambuf_iterator<char>(in), {});
    }
    EXPECT_NE(playlist.find("#EXT-X-TARGETDURATION:2\n"), std::string::npos) << playlist;
    const std::regex extinf(R"(#EXTINF:([0-9.]+),)");
    int segments = 0;
    for (std::sregex_iterator it(playlist.begin(), playlist.end(), extinf), end; it != end; ++it) {
        EXPECT_NEAR(std::stod((*it)[1]), 2.0, 0.05) << playlist;
        ++segments;
    }
    EXPECT_GE(segments, 3) << playlist;  // 9 s of video: four closed 2 s segments
    fs::remove_all(dir);
    fs::remove(clip);
}

// Safari and iPhones play the playlist with their own player, which the page cannot restart. After
// a reconnect the playlist began again at media sequence 0 with no discontinuity: such a player
// waits for numbers past the last it played, and the picture froze until the parent reloaded.
TEST(HlsWriter, AReconnectKeepsTheMediaSequenceRisingAndMarksTheDiscontinuity) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-hls-seq-" + std::to_string(::getpid()));
    const auto clip = dir.string() + ".mp4";
    ASSERT_TRUE(encode_test_clip(clip, "160x90", 25, 6, 25));
    auto read_playlist = [&] {
        std::ifstream in(dir / "index.m3u8");
        return std::string(std::istreambuf_iterator<char>(in), {});
    };
    auto media_sequence = [](const std::string& playlist) {
        const auto at = playlist.find("#EXT-X-MEDIA-SEQUENCE:");
        return at == std::string::npos ? -1 : std::stoi(playlist.substr(at + 22));
    };
    kg::stream::HlsWriter writer(dir.string(), 1, spdlog::default_logger());
    std::string first, second;
    for (std::string* playlist : {&first, &second}) {
        play(clip, writer);  // a connection: opened, played, closed
        *playlist = read_playlist();
        writer.on_stream_closed();
    }
    const std::regex extinf("#EXTINF");
    const auto listed = static_cast<int>(
        std::distance(std::sregex_iterator(first.begin(), first.end(), extinf), std::sregex_iterator()));
    ASSERT_GE(listed, 3) << first;
    EXPECT_GT(media_sequence(second), media_sequence(first) + listed - 1) << first << "\n" << second;
    EXPECT_NE(second.find("#EXT-X-DISCONTINUITY\n"), std::string::npos) << second;
    fs::remove_all(dir);
    fs::remove(clip);
}

// Each muxer's first segment is a discontinuity (discont_start), and FFmpeg 5.1 never writes
// EXT-X-DISCONTINUITY-SEQUENCE: once that segment left the window, the playlist numbered the
// segments after it one discontinuity lower than the playlist before had, and a player that keeps
// its numbering across reloads (Safari's own, RFC 8216 6.2.1) took them for another timeline. A
// segment's discontinuity number (the sequence plus the discontinuity tags up to it) is now the same
// in every playlist that lists it, and never goes down from one segment to the next, across a
// reconnect too.
TEST(HlsWriter, EverySegmentKeepsItsDiscontinuityNumberAcrossPlaylistsAndReconnects) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-hls-disc-" + std::to_string(::getpid()));
    const auto clip = dir.string() + ".mp4";
    ASSERT_TRUE(encode_test_clip(clip, "160x90", 25, 12, 25));  // 12 one-second GOPs
    std::vector<std::string> playlists;
    const auto keep_playlist = [&](int) {
        std::ifstream in(dir / "index.m3u8");
        std::string text(std::istreambuf_iterator<char>(in), {});
        if (!text.empty() && (playlists.empty() || playlists.back() != text)) playlists.push_back(text);
    };
    kg::stream::HlsWriter writer(dir.string(), 1, spdlog::default_logger());
    for (int connection = 0; connection < 2; ++connection) {
        play(clip, writer, keep_playlist);
        writer.on_stream_closed();
    }
    // Each segment's media sequence number and discontinuity number, as a player counts them.
    std::map<long long, long long> numbered;  // media sequence -> discontinuity number
    int without_first = 0;                    // playlists whose first discontinuity has left the window
    for (const auto& text : playlists) {
        std::istringstream lines(text);
        std::string line;
        long long sequence = -1, discontinuity = 0;  // 0 without the tag (RFC 8216 4.3.3.3)
        bool tagged = false;
        while (std::getline(lines, line)) {
            if (line.starts_with("#EXT-X-MEDIA-SEQUENCE:")) sequence = std::stoll(line.substr(22));
            if (line.starts_with("#EXT-X-DISCONTINUITY-SEQUENCE:")) {
                ASSERT_EQ(sequence >= 0, true) << "after the media sequence, before any segment:\n" << text;
                discontinuity = std::stoll(line.substr(30));
            }
            if (line == "#EXT-X-DISCONTINUITY") {
                ++discontinuity;
                tagged = true;
            }
            if (!line.empty() && line[0] != '#') {
                const auto [at, fresh] = numbered.emplace(sequence, discontinuity);
                EXPECT_EQ(at->second, discontinuity) << "segment " << sequence << " renumbered in\n" << text;
                ++sequence;
            }
        }
        if (!tagged) ++without_first;
    }
    EXPECT_GE(without_first, 2) << "the first segment of each connection left the window";
    ASSERT_GE(numbered.size(), 16u);
    long long last = -1, rises = 0;
    for (const auto& [sequence, discontinuity] : numbered) {
        EXPECT_GE(discontinuity, last) << "segment " << sequence;
        rises += last >= 0 && discontinuity > last;
        last = discontinuity;
    }
    EXPECT_EQ(rises, 1) << "one discontinuity between the two connections' segments";
    fs::remove_all(dir);
    fs::remove(clip);
}

// A write that fails (tmpfs full, no descriptor left) turned HLS off until the camera's next
// connection, weeks on a stable camera, and left the last playlist on disk to be served frozen.
// Now its files go at once and the writer starts again at a key frame, backing off.
TEST(HlsWriter, AFailedWriteStopsTheStreamAndItStartsAgainWithoutAReconnect) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-hls-fail-" + std::to_string(::getpid()));
    const auto aside = fs::path(dir.string() + "-aside");
    const auto clip = dir.string() + ".mp4";
    ASSERT_TRUE(encode_test_clip(clip, "160x90", 25, 16, 25));
    std::ostringstream log_text;
    auto log = logger_into(log_text);
    bool live_before = false, live_while_failing = false;
    {
        kg::stream::HlsWriter writer(dir.string(), 1, log);
        play(clip, writer, [&](int frame) {
            if (frame == 100) {  // 4 s in: the folder becomes a file, so every open fails
                live_before = writer.live();
                fs::rename(dir, aside);
                std::ofstream(dir) << "not a folder";
            }
            if (frame > 130 && frame < 175) {
                live_while_failing |= writer.live();
            }
            if (frame == 175) {  // 7 s in: writable again
                fs::remove(dir);
                fs::create_directories(dir);
            }
        });
        EXPECT_TRUE(live_before);
        EXPECT_FALSE(live_while_failing);
        EXPECT_TRUE(writer.live()) << log_text.str();
        EXPECT_TRUE(fs::exists(dir / "index.m3u8"));
    }
    EXPECT_NE(log_text.str().find("the public stream starts again at a key frame in 2 s"), std::string::npos)
        << log_text.str();
    EXPECT_NE(log_text.str().find("serving again after"), std::string::npos) << log_text.str();
    fs::remove_all(dir);
    fs::remove_all(aside);
    fs::remove(clip);
}

namespace {

// A tmpfs of `size` at a new folder of its own, mounted in a mount namespace of this test process's
// own (each test runs in a process of its own): nothing reaches the host or the other tests, and it
// goes with the process. Needs root, as CI's and the installer's test runs are.
struct OwnTmpfs {
    std::filesystem::path base;
    std::string error;  // why it could not be mounted; empty when it is
    explicit OwnTmpfs(const std::string& name, const char* size)
        : base(std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()))) {
        std::filesystem::create_directories(base);
        const std::string options = std::string("size=") + size;
        if (::unshare(CLONE_NEWNS) != 0 || ::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
            ::mount("tmpfs", base.c_str(), "tmpfs", 0, options.c_str()) != 0)
            error = std::strerror(errno);
    }
    ~OwnTmpfs() {
        if (error.empty()) ::umount2(base.c_str(), MNT_DETACH);
        std::error_code ec;
        std::filesystem::remove_all(base, ec);
    }
    OwnTmpfs(const OwnTmpfs&) = delete;
    OwnTmpfs& operator=(const OwnTmpfs&) = delete;
};

std::size_t count_of(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

}  // namespace

// FFmpeg 5.1's HLS muxer keeps about 260 KB each time its header fails, and a folder it cannot
// write fails the header. Ten headers in a row gave up until the camera's next connection, weeks on
// a stable camera. Now the writer's own test write finds such a folder without a header (no leak:
// tests/sanitizer/lsan.supp has no entry for it), so it is tried for as long as it lasts, and the
// stream comes back when the folder does.
TEST(HlsWriter, AFolderUnwritableForLongCostsNoHeaderAndTheStreamComesBackWithIt) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-hls-unwritable-" + std::to_string(::getpid()));
    const auto aside = fs::path(dir.string() + "-aside");
    const auto clip = dir.string() + ".mp4";
    ASSERT_TRUE(encode_test_clip(clip, "96x64", 5, 900, 5));
    std::ostringstream log_text;
    auto log = logger_into(log_text);
    log->set_level(spdlog::level::debug);
    bool live_while_unwritable = false;
    {
        kg::stream::HlsWriter writer(dir.string(), 1, log);
        play(clip, writer, [&](int frame) {
            if (frame == 20) {  // 4 s in, for almost 12 minutes: past the ten tries that gave up before
                fs::rename(dir, aside);
                std::ofstream(dir) << "not a folder";
            }
            if (frame > 30 && frame < 3500) live_while_unwritable |= writer.live();
            if (frame == 3500) {
                fs::remove(dir);
                fs::create_directories(dir);
            }
        });
        EXPECT_FALSE(live_while_unwritable);
        EXPECT_TRUE(writer.live()) << log_text.str();
        EXPECT_TRUE(fs::exists(dir / "index.m3u8"));
    }
    const auto text = log_text.str();
    const auto count = [&](const std::string& what) { return count_of(text, what); };
    EXPECT_EQ(count("cannot write the playlist header"), 0u) << text;  // FFmpeg's header never tried
    // The write at 4 s fails; then tries at 6, 10, 18, 34, 66 s and every minute after: 15 before the
    // folder is back at 700 s, each a test write.
    EXPECT_EQ(count("a write failed"), 1u) << text;
    EXPECT_EQ(count("cannot write in the folder: Not a directory"), 15u) << text;
    EXPECT_EQ(count("the public stream waits for the camera's next connection"), 0u) << text;
    EXPECT_NE(text.find("serving again after 16 failed attempts"), std::string::npos) << text;
    fs::remove_all(dir);
    fs::remove_all(aside);
    fs::remove(clip);
}

// A full tmpfs: FFmpeg 5.1's HLS muxer truncates its segments without a word, and the playlist went
// on listing them, unplayable. The writer stops at the next segment instead, says why, and comes back
// when there is room.
TEST(HlsWriter, AFullFileSystemStopsTheStreamInsteadOfServingTruncatedSegments) {
    namespace fs = std::filesystem;
    const OwnTmpfs tmpfs("kg-hls-full", "1m");
    if (!tmpfs.error.empty()) GTEST_SKIP() << "cannot mount a tmpfs of the test's own: " << tmpfs.error;
    const auto dir = tmpfs.base / "cam";
    const auto clip = tmpfs.base.string() + ".mp4";
    ASSERT_TRUE(encode_test_clip(clip, "160x90", 25, 16, 25));
    std::ostringstream log_text;
    auto log = logger_into(log_text);
    log->set_level(spdlog::level::debug);
    const auto filler = tmpfs.base / "filler";  // beside the camera's folder: not the writer's to clear
    bool live_before = false, live_while_full = false;
    {
        kg::stream::HlsWriter writer(dir.string(), 1, log);
        play(clip, writer, [&](int frame) {
            if (frame == 100) live_before = writer.live();
            if (frame >= 100 && frame < 250) {
                // From 4 s in, something else (a log gone wild) takes every byte as it comes free,
                // the writer's own segments' too once it clears them.
                std::ofstream out(filler, std::ios::binary | std::ios::app);
                const std::string block(4096, 'x');
                while (out.write(block.data(), static_cast<std::streamsize>(block.size()))) out.flush();
            }
            if (frame > 130 && frame < 250) live_while_full |= writer.live();
            if (frame == 250) fs::remove(filler);  // 10 s in: room again
        });
        EXPECT_TRUE(live_before);
        EXPECT_FALSE(live_while_full) << log_text.str();
        EXPECT_TRUE(writer.live()) << log_text.str();
    }
    fs::remove(clip);
    const auto text = log_text.str();
    EXPECT_NE(text.find("its file system is full (0 KiB free"), std::string::npos) << text;
    // The tries while it stays full write no header (FFmpeg's leaks one each time it fails).
    EXPECT_NE(text.find("cannot write in the folder: No space left on device"), std::string::npos) << text;
    EXPECT_EQ(text.find("cannot write the playlist header"), std::string::npos) << text;
    EXPECT_NE(text.find("serving again after"), std::string::npos) << text;
}

// A tmpfs too small for the window fills with the camera's own segments: each stop frees them and
// the stream comes back. It comes back less and less often, with one warning, not every few seconds
// with a warning each time.
TEST(HlsWriter, ATmpfsTooSmallForTheWindowBacksOffWithOneWarning) {
    const OwnTmpfs tmpfs("kg-hls-small", "120k");
    if (!tmpfs.error.empty()) GTEST_SKIP() << "cannot mount a tmpfs of the test's own: " << tmpfs.error;
    const auto clip = tmpfs.base.string() + ".mp4";
    ASSERT_TRUE(encode_test_clip(clip, "160x90", 25, 120, 25));  // about 30 KiB a second: 4 s fill it
    std::ostringstream log_text;
    auto log = logger_into(log_text);
    log->set_level(spdlog::level::debug);
    {
        kg::stream::HlsWriter writer((tmpfs.base / "cam").string(), 1, log);
        play(clip, writer, [](int) {});
    }
    std::filesystem::remove(clip);
    const auto text = log_text.str();
    const auto stops = count_of(text, "its file system is full");
    EXPECT_GE(stops, 4u) << text;  // 2 s, 4, 8, 16, 32, 60: at most 8 in two minutes
    EXPECT_LE(stops, 8u) << text;
    EXPECT_EQ(count_of(text, "[warning]"), 1u) << text;
    EXPECT_EQ(count_of(text, "[info]"), 1u) << text;  // "serving again", once
    EXPECT_NE(text.find("starts again at a key frame in 32 s"), std::string::npos) << text;
    EXPECT_NE(text.find("this camera's segments"), std::string::npos) << text;
}

// Someone cleared /dev/shm: the camera's folder is made again, and the stream goes on.
TEST(HlsWriter, AFolderThatWentIsMadeAgain) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-hls-gone-" + std::to_string(::getpid()));
    const auto clip = dir.string() + ".mp4";
    ASSERT_TRUE(encode_test_clip(clip, "160x90", 25, 12, 25));
    std::ostringstream log_text;
    auto log = logger_into(log_text);
    bool gone_and_live = false;
    {
        kg::stream::HlsWriter writer(dir.string(), 1, log);
        play(clip, writer, [&](int frame) {
            if (frame == 100) fs::remove_all(dir);  // 4 s in
            if (frame > 130 && frame < 150) gone_and_live |= writer.live();
        });
        EXPECT_FALSE(gone_and_live);
        EXPECT_TRUE(writer.live()) << log_text.str();
        EXPECT_TRUE(fs::exists(dir / "index.m3u8")) << log_text.str();
    }
    EXPECT_NE(log_text.str().find("serving again after"), std::string::npos) << log_text.str();
    fs::remove_all(dir);
    fs::remove(clip);
}

TEST(Mp4Tag, H265IsTaggedHvc1OnlyWithItsParameterSetsOutOfBand) {
    AVCodecParameters params{};
    params.codec_id = AV_CODEC_ID_H264;
    EXPECT_EQ(kg::stream::mp4_codec_tag(params), 0u);  // the muxer's own avc1
    params.codec_id = AV_CODEC_ID_HEVC;
    EXPECT_EQ(kg::stream::mp4_codec_tag(params), 0u);  // in band only: hev1
    std::uint8_t hvcc[23] = {1};
    params.extradata = hvcc;
    params.extradata_size = sizeof hvcc;
    EXPECT_EQ(kg::stream::mp4_codec_tag(params), MKTAG('h', 'v', 'c', '1'));
    params.extradata = nullptr;  // not owned
}

TEST(LogThrottle, LetsALineThroughOnceAnIntervalWithHowManyItStandsFor) {
    using namespace std::chrono_literals;
    kg::LogThrottle throttle(60s);
    const kg::LogThrottle::Clock::time_point t0{};
    EXPECT_EQ(throttle.pass(t0), 1u);  // the first at once
    EXPECT_EQ(throttle.pass(t0 + 1s), 0u);
    EXPECT_EQ(throttle.pass(t0 + 59s), 0u);
    EXPECT_EQ(throttle.pass(t0 + 60s), 3u);  // this one and the two held back
    EXPECT_EQ(throttle.pass(t0 + 61s), 0u);
    EXPECT_EQ(throttle.pass(t0 + 10min), 2u);
}

TEST(KeyedLogThrottle, GivesEachSenderAFewLinesAnIntervalAndBoundsItsKeys) {
    using namespace std::chrono_literals;
    kg::KeyedLogThrottle throttle(2, 60s, 3);
    const kg::KeyedLogThrottle::Clock::time_point t0{};
    EXPECT_TRUE(throttle.pass("a", t0).log);
    EXPECT_TRUE(throttle.pass("a", t0 + 1s).log);
    for (int i = 0; i < 10; ++i) EXPECT_FALSE(throttle.pass("a", t0 + 2s).log);
    // One sender's flood does not hold another's lines back.
    EXPECT_TRUE(throttle.pass("b", t0 + 3s).log);
    // After the interval: a line, with the ten held back.
    auto v = throttle.pass("a", t0 + 61s);
    EXPECT_TRUE(v.log);
    EXPECT_EQ(v.held, 10u);
    v = throttle.pass("a", t0 + 62s);
    EXPECT_TRUE(v.log);
    EXPECT_EQ(v.held, 0u);
    EXPECT_FALSE(throttle.pass("a", t0 + 63s).log);
    EXPECT_TRUE(throttle.pass("b", t0 + 63s).log);
    // Past three keys the new ones share one entry: a sender naming itself anew with every
    // message gets two lines an interval in all, not two each.
    EXPECT_TRUE(throttle.pass("c", t0 + 64s).log);
    int logged = 0;
    for (int i = 0; i < 100; ++i) logged += throttle.pass("n" + std::to_string(i), t0 + 65s).log ? 1 : 0;
    EXPECT_EQ(logged, 2);
    // A key that is not pushed out says what it held back.
    v = throttle.pass("a", t0 + 130s);
    EXPECT_TRUE(v.log);
    EXPECT_EQ(v.held, 1u);
    EXPECT_TRUE(throttle.pass("a", t0 + 131s).log);
    EXPECT_FALSE(throttle.pass("a", t0 + 131s).log);
    // Keys whose interval is over make room again, whatever they held back: the table is never
    // filled for good.
    EXPECT_TRUE(throttle.pass("d", t0 + 200s).log);
    EXPECT_TRUE(throttle.pass("e", t0 + 200s).log);
    EXPECT_TRUE(throttle.pass("f", t0 + 200s).log);
    // The three new keys took the table: more new keys share one entry within this interval.
    EXPECT_TRUE(throttle.pass("g", t0 + 200s).log);
    EXPECT_TRUE(throttle.pass("h", t0 + 200s).log);
    EXPECT_FALSE(throttle.pass("a", t0 + 200s).log);
}

TEST(RepeatedFailure, SaysTheFirstTriesThenOnceAnIntervalWithHowManyItStandsFor) {
    using namespace std::chrono_literals;
    kg::RepeatedFailure failures(10min);
    const kg::RepeatedFailure::Clock::time_point t0{};
    auto v = failures.failed("refused", t0);
    EXPECT_TRUE(v.log);
    EXPECT_EQ(v.in_row, 1u);
    EXPECT_TRUE(failures.failed("refused", t0 + 30s).log);
    v = failures.failed("refused", t0 + 60s);
    EXPECT_TRUE(v.log);
    EXPECT_TRUE(v.quiet_from_now);  // the third: from now on, summarised
    EXPECT_TRUE(failures.quiet());
    EXPECT_FALSE(failures.failed("refused", t0 + 90s).log);
    EXPECT_FALSE(failures.failed("refused", t0 + 10min + 59s).log);
    v = failures.failed("refused", t0 + 11min);  // ten minutes after the last line
    EXPECT_TRUE(v.log);
    EXPECT_EQ(failures.note(v), " (2 more tries failed so since the last line)");
    EXPECT_FALSE(v.quiet_from_now);
    EXPECT_EQ(v.held, 2u);
    EXPECT_EQ(v.in_row, 6u);
    // Another reason is news: said at once, with the tries of the one before not yet said, and
    // counted anew.
    EXPECT_FALSE(failures.failed("refused", t0 + 11min + 10s).log);
    v = failures.failed("timed out", t0 + 11min + 30s);
    EXPECT_TRUE(v.log);
    EXPECT_EQ(v.in_row, 1u);
    EXPECT_EQ(v.held, 0u);
    EXPECT_EQ(v.held_before, 1u);
    EXPECT_EQ(v.reason_before, "refused");
    EXPECT_EQ(failures.note(v), " (after 1 more tries that failed: refused)");
    EXPECT_FALSE(failures.quiet());
    // A success ends the row: how long it was, all reasons, and the next failure is the first again.
    EXPECT_EQ(failures.succeeded(), 8u);
    EXPECT_EQ(failures.failed("timed out", t0 + 12min).in_row, 1u);
}

// A run that crashed left its segments in its cameras' folders on tmpfs (a writer clears its own as
// it closes, and again as it opens): a camera no longer public after it kept them in memory until a
// reboot. Only a writer's own files go, and the folder once empty.
TEST(HlsWriter, FoldersOfCamerasNoLongerPublicAreRemovedAndOnlyTheirOwnFiles) {
    namespace fs = std::filesystem;
    const auto site = fs::temp_directory_path() / ("kg-hls-stale-" + std::to_string(::getpid())) / "sch-0101";
    fs::remove_all(site.parent_path());
    auto write = [](const fs::path& path, std::size_t bytes) {
        fs::create_directories(path.parent_path());
        std::ofstream(path) << std::string(bytes, 'x');
    };
    write(site / "kitchen" / "index.m3u8", 100);  // public now: kept
    write(site / "kitchen" / "k3f9a2g1-00001.m4s", 4096);
    write(site / "old" / "index.m3u8", 100);  // gone from the configuration
    write(site / "old" / "k3f9a2g1-init.mp4", 1024);
    write(site / "old" / "k3f9a2g1-00001.m4s", 8192);
    write(site / "old" / "k3f9a2g1-00002.m4s.tmp", 2048);
    write(site / "mixed" / "k3f9a2g7-00001.m4s", 4096);  // not ours beside it: folder kept
    write(site / "mixed" / "notes.txt", 10);
    write(site / "README", 10);  // not a folder: left

    std::ostringstream text;
    spdlog::logger log("hls", std::make_shared<spdlog::sinks::ostream_sink_mt>(text));
    EXPECT_EQ(kg::stream::remove_stale_hls_folders(site.string(), {"kitchen", "pass"}, log),
              100u + 1024 + 8192 + 2048 + 4096);
    EXPECT_TRUE(fs::exists(site / "kitchen" / "k3f9a2g1-00001.m4s"));
    EXPECT_TRUE(fs::exists(site / "kitchen" / "index.m3u8"));
    EXPECT_FALSE(fs::exists(site / "old"));
    EXPECT_FALSE(fs::exists(site / "mixed" / "k3f9a2g7-00001.m4s"));
    EXPECT_TRUE(fs::exists(site / "mixed" / "notes.txt"));
    EXPECT_TRUE(fs::exists(site / "README"));
    EXPECT_NE(text.str().find("(camera 'old', not public in this configuration) removed: 11 KiB"),
              std::string::npos)
        << text.str();
    EXPECT_NE(text.str().find("other files in it kept"), std::string::npos) << text.str();
    // A site folder not made yet (the first start): nothing to do, nothing thrown.
    EXPECT_EQ(kg::stream::remove_stale_hls_folders((site / "none").string(), {}, log), 0u);
    fs::remove_all(site.parent_path());
}

namespace {

// How the masker gets its pictures: decoded by the ingest (as the gateway runs it, but for a camera
// analysed on key frames alone), or decoded from the packets itself.
enum class Pictures { from_input, own_decoder };

// Runs a 320-wide privacy masker with `masks` over every frame of `clip`, into `out`; returns the
// frames it encoded.
std::uint64_t mask_clip(const std::filesystem::path& clip, decltype(kg::stream::PrivacyOptions::masks) masks,
                        kg::ingest::PacketObserver& out, Pictures pictures) {
    kg::stream::PrivacyOptions options;
    options.masks = std::move(masks);
    options.width = 320;
    options.frames_from_input = pictures == Pictures::from_input;
    kg::stream::PrivacyMasker masker(options, out, kg::Logging::null_logger());
    std::atomic<bool> stop{false};
    kg::ingest::FfmpegInput input({clip.string()}, stop);
    input.set_packet_observer(&masker);
    if (pictures == Pictures::from_input) input.set_frame_observer(&masker);
    input.open();
    while (input.next_frame()) {
    }
    masker.on_stream_closed();
    return masker.frames_encoded();
}

}  // namespace

// The masker's key frames came every 20 frames at its 10 a second cap, so a camera sending 2
// frames a second got 10 s GOPs: segments as long, and a player polling once a segment lost its
// place among the capped viewers between polls (review). Every 2 s of the camera's time now.
TEST(PrivacyMasker, KeyFramesComeEveryTwoSecondsOfTheCamerasTimeWhateverItsFrameRate) {
    namespace fs = std::filesystem;
    const auto clip = fs::temp_directory_path() / ("kg-mask-2fps-" + std::to_string(::getpid()) + ".mp4");
    const std::string cmd =
        "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x180:rate=2 -t 20 -c:v libx264 "
        "-preset ultrafast -g 40 -pix_fmt yuv420p " +
        clip.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    struct Keys : kg::ingest::PacketObserver {
        std::vector<std::int64_t> ms;
        void on_stream_opened(const AVStream&) override {}
        void on_packet(const AVPacket& p, const AVStream& s) override {
            if (p.flags & AV_PKT_FLAG_KEY)
                ms.push_back(av_rescale_q(p.pts, s.time_base, AVRational{1, 1000}));
        }
        void on_stream_closed() override {}
    } keys;
    for (const auto pictures : {Pictures::from_input, Pictures::own_decoder}) {
        SCOPED_TRACE(pictures == Pictures::from_input ? "pictures from the ingest"
                                                      : "pictures decoded by the masker");
        keys.ms.clear();
        const auto encoded =
            mask_clip(clip, {{{0.1f, 0.1f}, {0.5f, 0.1f}, {0.5f, 0.5f}, {0.1f, 0.5f}}}, keys, pictures);
        ASSERT_GE(keys.ms.size(), 2u) << "40 frames encoded: " << encoded;
        for (std::size_t i = 1; i < keys.ms.size(); ++i)
            EXPECT_LE(keys.ms[i] - keys.ms[i - 1], 2000)
                << "key frames at " << ::testing::PrintToString(keys.ms);
        EXPECT_GE(keys.ms.size(), 9u) << ::testing::PrintToString(keys.ms);
    }
    fs::remove(clip);
}

// The frame rate cap measured each picture from the last one taken, so a camera at 25 a second under
// the cap of 10 gave every third picture (8.3 a second), one at 15 every second (7.5): the parents'
// masked feed ran slower than configured. It keeps a cadence now, and a camera at the cap's own rate
// with some jitter in its clock loses none of its pictures.
TEST(PrivacyMasker, TheFrameRateCapGivesItsRateWhateverTheCamerasRate) {
    namespace fs = std::filesystem;
    struct Source {
        const char* name;
        int rate;
        const char* filter;  // the pictures' times, if not the source's own
    };
    const Source sources[] = {
        {"25 a second", 25, nullptr},
        {"30 a second", 30, nullptr},
        {"15 a second", 15, nullptr},
        {"10 a second, up to 8 ms early or late", 10, "settb=1/1000,setpts='(N/10+0.008*sin(N*7))/TB'"},
    };
    struct Count : kg::ingest::PacketObserver {
        int packets = 0;
        void on_stream_opened(const AVStream&) override {}
        void on_packet(const AVPacket&, const AVStream&) override { ++packets; }
        void on_stream_closed() override {}
    };
    for (const auto& source : sources) {
        SCOPED_TRACE(source.name);
        const auto clip = fs::temp_directory_path() / ("kg-mask-rate-" + std::to_string(source.rate) + "-" +
                                                       std::to_string(::getpid()) + ".mp4");
        std::string cmd = "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=320x180:rate=" +
                          std::to_string(source.rate) + " -t 6 ";
        if (source.filter != nullptr)
            cmd += std::string("-vf \"") + source.filter +
                   "\" -fps_mode passthrough -enc_time_base 1:1000 -video_track_timescale 1000 ";
        cmd += "-c:v libx264 -preset ultrafast -g 50 -pix_fmt yuv420p " + clip.string();
        ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
        Count out;
        const auto encoded = mask_clip(clip, {{{0.1f, 0.1f}, {0.5f, 0.1f}, {0.5f, 0.5f}, {0.1f, 0.5f}}}, out,
                                       Pictures::from_input);
        // 6 s at the default cap of 10 a second: 60 pictures, give or take the last slot.
        EXPECT_GE(encoded, 59u);
        EXPECT_LE(encoded, 61u);
        fs::remove(clip);
    }
}

// A masked camera was decoded twice: by the ingest for the checks, and by the masker for the public
// feed (5 % of a core for a 720p camera here, as much as the checks' own decode). The masker now
// takes the ingest's pictures: given no packets at all, it still makes the feed.
TEST(PrivacyMasker, TakesTheIngestsPicturesWithoutDecodingTheCameraAgain) {
    namespace fs = std::filesystem;
    const auto clip = fs::temp_directory_path() / ("kg-mask-frames-" + std::to_string(::getpid()) + ".mp4");
    const std::string cmd =
        "ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=640x360:rate=25 -t 4 -c:v libx264 "
        "-preset ultrafast -g 50 -pix_fmt yuv420p " +
        clip.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    struct Count : kg::ingest::PacketObserver {
        int packets = 0, opened = 0;
        void on_stream_opened(const AVStream&) override { ++opened; }
        void on_packet(const AVPacket&, const AVStream&) override { ++packets; }
        void on_stream_closed() override {}
    };
    // The stream's opening and end reach the masker; its packets do not.
    struct NoPackets : kg::ingest::PacketObserver {
        kg::ingest::PacketObserver& to;
        explicit NoPackets(kg::ingest::PacketObserver& t) : to(t) {}
        void on_stream_opened(const AVStream& s) override { to.on_stream_opened(s); }
        void on_packet(const AVPacket&, const AVStream&) override {}
        void on_stream_closed() override { to.on_stream_closed(); }
    };
    for (const bool from_input : {true, false}) {
        SCOPED_TRACE(from_input ? "pictures from the ingest" : "pictures decoded by the masker");
        Count out;
        kg::stream::PrivacyOptions options;
        options.masks = {{{0.1f, 0.1f}, {0.5f, 0.1f}, {0.5f, 0.5f}, {0.1f, 0.5f}}};
        options.width = 320;
        options.frames_from_input = from_input;
        kg::stream::PrivacyMasker masker(options, out, kg::Logging::null_logger());
        NoPackets packets(masker);
        std::atomic<bool> stop{false};
        kg::ingest::FfmpegInput input({clip.string()}, stop);
        input.set_packet_observer(&packets);
        input.set_frame_observer(&masker);
        input.open();
        while (input.next_frame()) {
        }
        masker.on_stream_closed();
        if (from_input) {
            EXPECT_EQ(out.opened, 1);
            EXPECT_GE(masker.frames_encoded(), 30u);  // 4 s under its cap of 10 a second
            EXPECT_EQ(static_cast<std::uint64_t>(out.packets), masker.frames_encoded());
        } else {
            EXPECT_EQ(masker.frames_encoded(), 0u);  // told to decode, and given nothing to
        }
    }
    fs::remove(clip);
}

// A camera with B-frames that changes its picture size within its connection: the ingest tells the
// outputs a new stream at the key frame, but its decoder still holds a picture of the old size,
// which came out after it. The masker took it for a new stream of the old size, then restarted
// again at the first new picture: every output cleared twice, FLV viewers cut off twice (review).
TEST(PrivacyMasker, APictureChangeOfACameraWithBFramesRestartsTheFeedOnce) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-mask-change-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    // The second part: B-frames and a clock going on, or none and a clock that starts again (the
    // new key frame is then placed one frame after the last packet, after the old pictures held).
    struct Case {
        const char *name, *second;
    };
    for (const Case c : {Case{"b-frames, one clock", "-bf 2 -output_ts_offset 4"},
                         Case{"no b-frames after, the clock from zero", "-bf 0"}}) {
        SCOPED_TRACE(c.name);
        for (const char* size : {"160x90", "320x240"}) {
            const bool second = std::string(size) == "320x240";
            const std::string cmd =
                std::string("ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=") + size +
                ":rate=25 -t 4 -c:v libx264 -preset veryfast -g 25 -pix_fmt yuv420p -f mpegts " +
                (second ? c.second : "-bf 2") + " " + (dir / (std::string(size) + ".ts")).string();
            ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
        }
        const auto camera = dir / "camera.ts";
        ASSERT_EQ(std::system(("cat " + (dir / "160x90.ts").string() + " " + (dir / "320x240.ts").string() +
                               " > " + camera.string())
                                  .c_str()),
                  0);
        struct Opens : kg::ingest::PacketObserver {
            std::vector<std::pair<int, int>> sizes;
            void on_stream_opened(const AVStream& s) override {
                sizes.emplace_back(s.codecpar->width, s.codecpar->height);
            }
            void on_packet(const AVPacket&, const AVStream&) override {}
            void on_stream_closed() override {}
        } out;
        const auto encoded = mask_clip(camera, {{{0.1f, 0.1f}, {0.5f, 0.1f}, {0.5f, 0.5f}, {0.1f, 0.5f}}},
                                       out, Pictures::from_input);
        EXPECT_GE(encoded, 60u);
        EXPECT_EQ(out.sizes, (std::vector<std::pair<int, int>>{{320, 180}, {320, 240}}));
    }
    fs::remove_all(dir);
}

// The masked public feed said nothing of its colours, so a browser read an HD camera's BT.709
// picture by its own guess, and a full-range camera's picture went out at full range, tagged as
// nothing: washed-out or crushed. It is now tagged as the camera was and written in limited range:
// decoded by what it says, the parents see the camera's colours. Also from a 10-bit full-range
// HEVC camera, whose range swscale converts only when told before its set-up.
TEST(PrivacyMasker, TheMaskedFeedIsTaggedWithTheCamerasColoursAndReadsBackAsThem) {
    namespace fs = std::filesystem;
    struct Source {
        const char *name, *pix_fmt, *codec;
        int width;  // the masker's output is 320 wide: the 10-bit camera's pictures are not scaled
    };
    const Source sources[] = {
        {"h264-full", "yuvj420p", "libx264", 640},
        {"hevc10-full", "yuv420p10le", "libx265 -x265-params log-level=error", 320},
    };
    for (const auto& [source, pictures] :
         {std::pair{sources[0], Pictures::from_input}, std::pair{sources[1], Pictures::from_input},
          std::pair{sources[0], Pictures::own_decoder}, std::pair{sources[1], Pictures::own_decoder}}) {
        SCOPED_TRACE(std::string(source.name) + (pictures == Pictures::from_input
                                                     ? ", the ingest's pictures"
                                                     : ", the masker's own decoder"));
        const auto clip = fs::temp_directory_path() /
                          ("kg-mask-colour-" + std::to_string(::getpid()) + "-" + source.name + ".mp4");
        struct Remove {
            fs::path path;
            ~Remove() {
                std::error_code ec;
                fs::remove(path, ec);
            }
        } remove{clip};
        // A full-range BT.709 camera of one colour, 0xC82828.
        const std::string cmd =
            "ffmpeg -loglevel error -y -f lavfi -i color=c=0xC82828:s=" + std::to_string(source.width) + "x" +
            std::to_string(source.width * 9 / 16) +
            ":r=10:d=2 -vf format=rgb24,scale=out_color_matrix=bt709:out_range=pc,format=" + source.pix_fmt +
            " -colorspace bt709 -color_primaries bt709 -color_trc bt709 -color_range pc "
            "-c:v " +
            source.codec + " -qp 4 " + clip.string();
        ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
        struct Output : kg::ingest::PacketObserver {
            AVCodecContext* decoder = nullptr;
            AVFrame* frame = av_frame_alloc();
            kg::ingest::PictureConverter converter;
            int decoded = 0;
            std::vector<cv::Vec3b> centres;
            int colorspace = -1, range = -1, primaries = -1, transfer = -1;
            ~Output() override {
                avcodec_free_context(&decoder);
                av_frame_free(&frame);
            }
            void on_stream_opened(const AVStream& s) override {
                colorspace = s.codecpar->color_space;
                range = s.codecpar->color_range;
                primaries = s.codecpar->color_primaries;
                transfer = s.codecpar->color_trc;
                decoder = avcodec_alloc_context3(avcodec_find_decoder(s.codecpar->codec_id));
                avcodec_parameters_to_context(decoder, s.codecpar);
                ASSERT_EQ(avcodec_open2(decoder, nullptr, nullptr), 0);
            }
            void on_packet(const AVPacket& p, const AVStream&) override {
                if (decoder == nullptr || avcodec_send_packet(decoder, &p) < 0) return;
                while (avcodec_receive_frame(decoder, frame) == 0) {
                    // Read as the stream says, as a browser does.
                    EXPECT_EQ(frame->colorspace, AVCOL_SPC_BT709);
                    EXPECT_EQ(frame->color_range, AVCOL_RANGE_MPEG);
                    cv::Mat bgr(frame->height, frame->width, CV_8UC3);
                    std::uint8_t* dst[4] = {bgr.data, nullptr, nullptr, nullptr};
                    const int stride[4] = {static_cast<int>(bgr.step[0]), 0, 0, 0};
                    ASSERT_TRUE(converter.convert(*frame, frame->width, frame->height, AV_PIX_FMT_BGR24, dst,
                                                  stride));
                    centres.push_back(bgr.at<cv::Vec3b>(bgr.rows / 2, bgr.cols / 2));
                    av_frame_unref(frame);
                }
            }
            void on_stream_closed() override {}
        } out;
        mask_clip(clip, {{{0.0f, 0.0f}, {0.2f, 0.0f}, {0.2f, 0.2f}, {0.0f, 0.2f}}}, out,  // a corner
                  pictures);
        EXPECT_EQ(out.colorspace, AVCOL_SPC_BT709);
        EXPECT_EQ(out.range, AVCOL_RANGE_MPEG);
        EXPECT_EQ(out.primaries, AVCOL_PRI_BT709);
        EXPECT_EQ(out.transfer, AVCOL_TRC_BT709);
        ASSERT_GE(out.centres.size(), 3u);
        const cv::Vec3b want(40, 40, 200);
        for (std::size_t i = 0; i < out.centres.size(); ++i)
            for (int c = 0; c < 3; ++c)
                EXPECT_NEAR(out.centres[i][c], want[c], 5) << "channel " << c << " (BGR) of frame " << i;
    }
}

// The encoder is given only tags a player can read: libx264 writes whatever it is given, and a
// camera's reserved values or a GBR matrix on YCbCr made players read the feed as something else.
TEST(PictureConverter, TagsAnEncoderOnlyWithValuesAPlayerCanRead) {
    AVFrame* frame = av_frame_alloc();
    AVCodecContext* encoder = avcodec_alloc_context3(nullptr);
    frame->format = AV_PIX_FMT_YUV420P;
    frame->colorspace = AVCOL_SPC_BT709;
    frame->color_primaries = AVCOL_PRI_BT709;
    frame->color_trc = AVCOL_TRC_BT709;
    kg::ingest::PictureConverter::tag_encoder(*encoder, *frame);
    EXPECT_EQ(encoder->colorspace, AVCOL_SPC_BT709);
    EXPECT_EQ(encoder->color_primaries, AVCOL_PRI_BT709);
    EXPECT_EQ(encoder->color_trc, AVCOL_TRC_BT709);
    EXPECT_EQ(encoder->color_range, AVCOL_RANGE_MPEG);
    frame->colorspace = AVCOL_SPC_RGB;  // a damaged header: GBR on YCbCr
    frame->color_primaries = AVCOL_PRI_RESERVED;
    frame->color_trc = AVCOL_TRC_RESERVED0;
    kg::ingest::PictureConverter::tag_encoder(*encoder, *frame);
    EXPECT_EQ(encoder->colorspace, AVCOL_SPC_UNSPECIFIED);
    EXPECT_EQ(encoder->color_primaries, AVCOL_PRI_UNSPECIFIED);
    EXPECT_EQ(encoder->color_trc, AVCOL_TRC_UNSPECIFIED);
    frame->format = AV_PIX_FMT_BGR24;  // converted to YUV with swscale's default, BT.601
    kg::ingest::PictureConverter::tag_encoder(*encoder, *frame);
    EXPECT_EQ(encoder->colorspace, AVCOL_SPC_SMPTE170M);
    avcodec_free_context(&encoder);
    av_frame_free(&frame);
}
