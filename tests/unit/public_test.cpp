// The public side's building blocks, driven without a camera or a server: signed viewer tokens,
// the viewer caps, and the bounded live stream that keeps a slow client from growing memory.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

#include "common/log_throttle.hpp"
#include "ingest/ffmpeg_input.hpp"
#include "stream/flv_hub.hpp"
#include "stream/hls_writer.hpp"
#include "stream/mp4_tag.hpp"
#include "web/live_stream.hpp"
#include "web/viewer_counter.hpp"
#include "web/viewer_token.hpp"

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
        auto log = std::make_shared<spdlog::logger>(
            "hls", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_text));
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

// A connection whose probe found no picture size (a camera that sends its parameter sets only with
// key frames, none within the probe) cannot be segmented: FFmpeg's HLS muxer refuses the header, and
// FFmpeg 5.1's leaks about 260 KB each time it does (AddressSanitizer, bench/soak.py). The writer
// does not try, says why once for the same camera, and segments the next connection that has one.
TEST(HlsWriter, AStreamWithoutAPictureSizeIsNotSegmentedAndTheReasonIsSaidOnce) {
    namespace fs = std::filesystem;
    const auto dir = fs::temp_directory_path() / ("kg-hls-nosize-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    std::unique_ptr<AVFormatContext, void (*)(AVFormatContext*)> source(avformat_alloc_context(),
                                                                        avformat_free_context);
    AVStream* stream = avformat_new_stream(source.get(), nullptr);
    ASSERT_NE(stream, nullptr);
    stream->codecpar->codec_type = AVMEDIA_TYPE_VIDEO;
    stream->codecpar->codec_id = AV_CODEC_ID_H264;
    stream->time_base = AVRational{1, 90000};
    std::unique_ptr<AVPacket, void (*)(AVPacket*)> key(av_packet_alloc(),
                                                       [](AVPacket* p) { av_packet_free(&p); });
    ASSERT_EQ(av_new_packet(key.get(), 64), 0);
    std::fill_n(key->data, 64, std::uint8_t{0});
    key->flags = AV_PKT_FLAG_KEY;
    key->pts = key->dts = 0;
    std::ostringstream log_text;
    {
        auto log = std::make_shared<spdlog::logger>(
            "hls", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_text));
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
    const std::regex short_name(R"([0-9a-z]{6}g1-(init\.mp4|[0-9]{5}\.m4s))");
    for (const auto& name : first) {
        EXPECT_TRUE(std::regex_match(name, short_name)) << name;
        EXPECT_FALSE(second.contains(name)) << name << " came back after a restart";
    }
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
