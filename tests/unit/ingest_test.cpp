// Ingest building blocks that need no camera: sampling, the newest-frame hand-off, back-off, and the
// continuous timeline that absorbs a camera clock's jumps and steps back.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <vector>

#include "common/backoff.hpp"
#include "common/watchdog_keeper.hpp"
#include "ingest/camera_stats.hpp"
#include "ingest/ffmpeg_input.hpp"
#include "ingest/frame_sampler.hpp"
#include "ingest/latest_frame.hpp"
#include "ingest/timeline.hpp"
#include "stream/muxable.hpp"

using namespace std::chrono_literals;

TEST(FrameSampler, Samples25FpsDownTo2Fps) {
    kg::ingest::FrameSampler sampler(2.0);
    int accepted = 0;
    for (int i = 0; i < 250; ++i) accepted += sampler.accept(i / 25.0) ? 1 : 0;  // 10 s
    EXPECT_EQ(accepted, 20);
}

TEST(FrameSampler, RestartsAfterAJumpBack) {
    kg::ingest::FrameSampler sampler(1.0);
    EXPECT_TRUE(sampler.accept(100.0));
    EXPECT_FALSE(sampler.accept(100.5));
    EXPECT_TRUE(sampler.accept(0.0));  // a file looped
    EXPECT_FALSE(sampler.accept(0.5));
    EXPECT_TRUE(sampler.accept(1.0));
}

TEST(FrameSampler, DoesNotBurstAfterAGap) {
    kg::ingest::FrameSampler sampler(2.0);
    EXPECT_TRUE(sampler.accept(0.0));
    EXPECT_TRUE(sampler.accept(3.0));  // 3 s of nothing
    EXPECT_FALSE(sampler.accept(3.1));
    EXPECT_FALSE(sampler.accept(3.2));
    EXPECT_TRUE(sampler.accept(3.5));
}

TEST(LatestFrame, NewestWinsAndOverwrittenFramesAreCounted) {
    kg::ingest::LatestFrame slot;
    EXPECT_EQ(slot.take(), nullptr);
    for (std::uint64_t i = 1; i <= 3; ++i) {
        slot.back().seq = i;
        slot.publish();
    }
    const auto* f = slot.take();
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->seq, 3u);
    EXPECT_EQ(slot.dropped(), 2u);
    EXPECT_EQ(slot.take(), nullptr);  // nothing new
    slot.back().seq = 4;
    slot.publish();
    EXPECT_EQ(f->seq, 3u);  // the frame being analysed is never written while held
    EXPECT_EQ(slot.take()->seq, 4u);
}

TEST(LatestFrame, BuffersAreReusedNotReallocated) {
    kg::ingest::LatestFrame slot;
    std::set<const void*> buffers;
    for (int i = 0; i < 30; ++i) {
        auto& f = slot.back();
        if (f.image.empty()) f.image.create(36, 64, CV_8UC3);
        buffers.insert(f.image.data);
        slot.publish();
        if (i % 2 == 0) slot.take();
    }
    EXPECT_EQ(buffers.size(), 3u);
}

TEST(Backoff, DoublesUpToTheCapAndResets) {
    kg::Backoff b(500ms, 4s);
    EXPECT_EQ(b.next(), 500ms);
    EXPECT_EQ(b.next(), 1000ms);
    EXPECT_EQ(b.next(), 2000ms);
    EXPECT_EQ(b.next(), 4000ms);
    EXPECT_EQ(b.next(), 4000ms);
    b.reset();
    EXPECT_EQ(b.next(), 500ms);
}

// A broker that closes each connection at once (another box with the same client id takes the
// session) was reconnected to at the minimum wait for ever: back-off starts over only after a
// connection that lasted.
TEST(Backoff, StartsOverOnlyAfterAConnectionThatLasted) {
    const auto t0 = std::chrono::steady_clock::now();
    kg::Backoff b(500ms, 8s, 1min);
    EXPECT_EQ(b.next(t0), 500ms);
    b.connected(t0);
    EXPECT_EQ(b.next(t0 + 2s), 1000ms);  // lost after 2 s: still backing off
    b.connected(t0 + 3s);
    EXPECT_EQ(b.next(t0 + 4s), 2000ms);
    b.connected(t0 + 5s);
    EXPECT_EQ(b.next(t0 + 5s + 1min), 500ms);   // a minute up: from the start again
    EXPECT_EQ(b.next(t0 + 5s + 1min), 1000ms);  // a failed attempt after it
}

TEST(WatchdogKeeper, FeedsFromItsThreadUntilEndedAndNoLongerThanItsBound) {
    std::atomic<int> fed{0};
    kg::WatchdogKeeper keeper([&] { ++fed; }, 20ms, 10s);
    keeper.begin();
    EXPECT_EQ(fed.load(), 1) << "fed at once";
    keeper.begin();  // again while begun: nothing more
    // Fed every 20 ms from its thread: twice more within 40 ms, however long a loaded machine takes.
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (fed.load() < 3 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(10ms);
    EXPECT_GE(fed.load(), 3);
    keeper.end();
    const int ended = fed.load();
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(fed.load(), ended) << "nothing after end()";
    EXPECT_FALSE(keeper.active());

    // A reload that hangs: fed for `longest`, then no more, so the watchdog catches it.
    std::atomic<int> bounded{0};
    kg::WatchdogKeeper short_lived([&] { ++bounded; }, 20ms, 100ms);
    short_lived.begin();
    std::this_thread::sleep_for(400ms);
    const int at_bound = bounded.load();
    EXPECT_LE(at_bound, 100 / 20 + 2);
    std::this_thread::sleep_for(100ms);
    EXPECT_EQ(bounded.load(), at_bound);

    // No watchdog (systemd did not ask for one): begin() does nothing.
    int none = 0;
    kg::WatchdogKeeper off([&] { ++none; }, 0ms, 10s);
    off.begin();
    EXPECT_EQ(none, 0);
    EXPECT_FALSE(off.active());
}

TEST(CameraStats, CountsReconnectsAndStallsInTheLastHour) {
    kg::ingest::CameraStats stats;
    const auto t0 = std::chrono::steady_clock::now();
    stats.reconnect(t0 - 2h);
    stats.reconnect(t0 - 30min);
    stats.reconnect(t0 - 1min);
    stats.stall(t0 - 10s);
    const auto s = stats.snapshot(t0);
    EXPECT_EQ(s.reconnects_1h, 2);
    EXPECT_EQ(s.stalls_1h, 1);
}

TEST(WithoutPassword, HidesTheCameraPasswordAndKeepsTheRest) {
    using kg::ingest::without_password;
    EXPECT_EQ(without_password("rtsp://admin:secret@192.168.1.64:554/Streaming/Channels/102"),
              "rtsp://admin:***@192.168.1.64:554/Streaming/Channels/102");
    // An '@' after the host may be the end of a password holding a '/' ('p@ss/word'): hidden up to it.
    EXPECT_EQ(without_password("rtsp://admin:p@ss:w0rd@cam:554/s?x=a@b"), "rtsp://admin:***@b");
    EXPECT_EQ(without_password("rtsp://admin:p@ss/word@cam/s"), "rtsp://admin:***@cam/s");
    EXPECT_EQ(without_password("http://u:p@host"), "http://u:***@host");
    // Nothing secret: unchanged.
    EXPECT_EQ(without_password("rtsp://admin@cam:554/s"), "rtsp://admin@cam:554/s");
    EXPECT_EQ(without_password("rtsp://10.0.0.5:554/stream1"), "rtsp://10.0.0.5:554/stream1");
    EXPECT_EQ(without_password("rtsp://cam/live?user=a:b@c"), "rtsp://cam/live?user=a:b@c");
    EXPECT_EQ(without_password("/var/lib/demo:1@x.mp4"), "/var/lib/demo:1@x.mp4");
    EXPECT_EQ(without_password("file:///srv/a:b@c.mp4"), "file:///srv/a:b@c.mp4");
    // A password holding '/', '?' or '#' unencoded (the installer review: shown whole in the
    // configuration's error and the reload's answer), with an '@' too.
    EXPECT_EQ(without_password("rtsp://admin:Kit/chen2026@127.0.0.1:21555/stream1"),
              "rtsp://admin:***@127.0.0.1:21555/stream1");
    EXPECT_EQ(without_password("rtsp://admin:p@ss:w/rd@10.0.0.5:554/s"), "rtsp://admin:***@10.0.0.5:554/s");
    EXPECT_EQ(without_password("rtsp://admin:pa#ss@cam/s"), "rtsp://admin:***@cam/s");
    EXPECT_EQ(without_password("rtsp://admin:12/34@cam/s"), "rtsp://admin:***@cam/s");
    EXPECT_EQ(without_password("rtsp://admin:/ab?c@cam"), "rtsp://admin:***@cam");
    // A path with an '@' after a port is hidden from there too: more than the password, never less.
    EXPECT_EQ(without_password("rtsp://cam:554/live@main"), "rtsp://cam:***@main");
    EXPECT_EQ(without_password("rtsp://[fe80::1]:554/live@main"), "rtsp://[fe80::1]:554/live@main");
}

TEST(ClassifyUrl, KnowsNetworkFilesAndDevices) {
    using kg::ingest::SourceKind;
    EXPECT_EQ(kg::ingest::classify_url("rtsp://10.0.0.5:554/stream1"), SourceKind::network);
    EXPECT_EQ(kg::ingest::classify_url("rtmp://host/live/x"), SourceKind::network);
    EXPECT_EQ(kg::ingest::classify_url("https://host/x.m3u8"), SourceKind::network);
    EXPECT_EQ(kg::ingest::classify_url("/var/lib/demo.mp4"), SourceKind::file);
    EXPECT_EQ(kg::ingest::classify_url("file:///var/lib/demo.mp4"), SourceKind::file);
    EXPECT_EQ(kg::ingest::classify_url("/dev/video0"), SourceKind::device);
    EXPECT_EQ(kg::ingest::classify_url("v4l2:///dev/video2"), SourceKind::device);
    // A USB camera's stable name (a review: it was opened as a file, and its input.format dropped).
    EXPECT_EQ(kg::ingest::classify_url("/dev/v4l/by-id/usb-046d_C270-video-index0"), SourceKind::device);
    EXPECT_EQ(kg::ingest::classify_url("/dev/shm/clip.mp4"), SourceKind::file);
}

namespace {

// A camera's packets in the RTP time base: 25 fps is 3600 ticks a frame.
constexpr AVRational kRtp{1, 90000};
constexpr std::int64_t kFrame = 3600;

struct Placed {
    std::int64_t pts, dts;
    std::optional<double> jumped;   // a jump of the clock: by how much
    std::optional<double> stepped;  // a step back of the clock: by how much
};

// Places one packet with these source timestamps (AV_NOPTS_VALUE: none); duration 0 as RTSP gives.
Placed place(kg::ingest::Timeline& timeline, std::int64_t pts, std::int64_t dts) {
    AVPacket p{};
    p.pts = pts;
    p.dts = dts;
    const auto shifted = timeline.place(p);
    Placed placed{p.pts, p.dts, std::nullopt, std::nullopt};
    if (shifted && shifted->kind == kg::ingest::Timeline::Shift::Kind::jump) placed.jumped = shifted->seconds;
    if (shifted && shifted->kind == kg::ingest::Timeline::Shift::Kind::step)
        placed.stepped = shifted->seconds;
    return placed;
}

}  // namespace

TEST(Timeline, LeavesASteadyClockAlone) {
    kg::ingest::Timeline timeline(kRtp, kFrame);
    for (std::int64_t i = 0; i < 500; ++i) {
        // B-frames: presentation two frames after decoding; a 3 s pause at packet 250 is a real pause.
        const std::int64_t dts = 1'000'000 + i * kFrame + (i >= 250 ? 3 * 90000 : 0);
        const auto placed = place(timeline, dts + 2 * kFrame, dts);
        ASSERT_EQ(placed.dts, dts) << i;
        ASSERT_EQ(placed.pts, dts + 2 * kFrame) << i;
        ASSERT_FALSE(placed.jumped || placed.stepped) << i;
    }
}

TEST(Timeline, AJumpBackContinuesOneFrameAfterTheLastPacket) {
    kg::ingest::Timeline timeline(kRtp, kFrame);
    std::int64_t last = 0;
    for (std::int64_t i = 0; i < 100; ++i)
        last = place(timeline, 40 * 90000 + i * kFrame, 40 * 90000 + i * kFrame).dts;
    // The camera's clock is reset to 0: 40 s + 100 frames (44 s) back from where it was to continue.
    const auto first = place(timeline, 2 * kFrame, 0);
    ASSERT_TRUE(first.jumped);
    EXPECT_NEAR(*first.jumped, -44.0, 1e-9);
    EXPECT_EQ(first.dts, last + kFrame);
    EXPECT_EQ(first.pts - first.dts, 2 * kFrame);  // the reordering delay is kept
    for (std::int64_t i = 1; i < 100; ++i) {
        const auto placed = place(timeline, (i + 2) * kFrame, i * kFrame);
        ASSERT_EQ(placed.dts, last + (i + 1) * kFrame) << i;
        ASSERT_FALSE(placed.jumped) << i;
    }
}

TEST(Timeline, AJumpAheadOfAWrappedClockIsAbsorbed) {
    // FFmpeg takes an RTP clock (32 bits) set back by more than 60 s for one that wrapped: 2^32 ticks
    // ahead, 13 hours. A segment or an FLV gap that long would lose every viewer.
    kg::ingest::Timeline timeline(kRtp, kFrame);
    std::int64_t last = 0;
    for (std::int64_t i = 0; i < 10; ++i) last = place(timeline, i * kFrame, i * kFrame).dts;
    const std::int64_t wrapped = std::int64_t{1} << 32;
    const auto first = place(timeline, wrapped, wrapped);
    ASSERT_TRUE(first.jumped);
    EXPECT_NEAR(*first.jumped, static_cast<double>(wrapped - 10 * kFrame) / 90000, 1e-9);
    EXPECT_EQ(first.dts, last + kFrame);
    EXPECT_EQ(place(timeline, wrapped + kFrame, wrapped + kFrame).dts, last + 2 * kFrame);
}

// A camera that pauses 15 s within a 30 s input.timeout and goes on with its clock: a real pause,
// kept, not a jump cut out of the clips and streams (the ingest review). Past the limit it is a jump.
TEST(Timeline, APauseWithinALongerTimeoutIsNoJump) {
    for (const auto& [gap, jumps] : {std::pair{15.0, false}, std::pair{35.0, true}}) {
        kg::ingest::Timeline timeline(kRtp, kFrame, 31.0);
        for (std::int64_t i = 0; i < 10; ++i) place(timeline, i * kFrame, i * kFrame);
        const auto after = static_cast<std::int64_t>(10 * kFrame + gap * 90000);
        const auto placed = place(timeline, after, after);
        EXPECT_EQ(placed.jumped.has_value(), jumps) << gap;
        if (!jumps) {
            EXPECT_EQ(placed.dts, after) << gap;
        }
    }
    // The default (and any shorter limit asked) stays 10 s.
    kg::ingest::Timeline timeline(kRtp, kFrame, 3.0);
    place(timeline, 0, 0);
    EXPECT_TRUE(place(timeline, 11 * 90000, 11 * 90000).jumped);
}

TEST(Timeline, JitterThatKeepsTheDecodingTimeIncreasingIsLeftAlone) {
    // RTP times a camera stamps at capture: a few ms early or late, a step back of less than a frame.
    // Nothing is lost (each packet is still later than the last), so nothing is moved: shifting the
    // timeline for each would make it drift ahead of the camera's.
    kg::ingest::Timeline timeline(kRtp, kFrame);
    for (const std::int64_t dts : {900000, 903600, 906750, 910800, 914850, 914860, 918000, 921600}) {
        const auto placed = place(timeline, dts + kFrame, dts);
        EXPECT_EQ(placed.dts, dts);
        EXPECT_EQ(placed.pts, dts + kFrame);
        EXPECT_FALSE(placed.jumped || placed.stepped) << dts;
    }
}

// The camera's packets around an NTP step of its clock by `step_ticks` (negative: back) after 100
// frames: H.264 with two B-frames (decoding order I P B B P B B ...: presentation two frames after
// decoding for I and P, none for B), as most IP cameras send, and what the timeline makes of them.
std::vector<Placed> place_across_a_step(kg::ingest::Timeline& timeline, std::int64_t step_ticks) {
    std::vector<Placed> placed;
    for (std::int64_t i = 0; i < 199; ++i) {
        const std::int64_t dts = 10 * 90000 + i * kFrame + (i >= 100 ? step_ticks : 0);
        // Frame 0 is the key frame; then P (shown two frames on), B, B; a frame later in all (the
        // decoder's delay), so that pts >= dts. The 100th packet, the first after the step, is a P.
        const std::int64_t shown = i == 0 ? 0 : (i % 3 == 1 ? 2 : -1);
        placed.push_back(place(timeline, dts + (shown + 1) * kFrame, dts));
    }
    return placed;
}

TEST(Timeline, AStepBackOfLessThanASecondIsAbsorbed) {
    // chrony or ntpd stepping a camera's clock back at its boot or after drift. Before, every muxer
    // dropped the packets not later than the last one: 0.3 s or 0.9 s of video lost in every output
    // (and a broken picture up to the next key frame when a reference frame was among them).
    for (const double seconds : {-0.3, -0.9}) {
        SCOPED_TRACE(seconds);
        kg::ingest::Timeline timeline(kRtp, kFrame);
        const std::int64_t step_ticks = std::llround(seconds * 90000);
        const auto placed = place_across_a_step(timeline, step_ticks);
        std::int64_t last_dts = AV_NOPTS_VALUE;
        int dropped = 0, steps = 0, jumps = 0, uneven = 0;
        for (std::size_t i = 0; i < placed.size(); ++i) {
            // What every output does with it (stream/muxable.hpp).
            AVPacket packet{};
            packet.pts = placed[i].pts;
            packet.dts = placed[i].dts;
            dropped += kg::stream::muxable(packet, last_dts) ? 0 : 1;
            jumps += placed[i].jumped ? 1 : 0;
            ASSERT_GE(placed[i].pts, placed[i].dts) << i;
            if (placed[i].stepped) {
                ++steps;
                EXPECT_EQ(i, 100u);
                EXPECT_NEAR(*placed[i].stepped, seconds, 1e-9);
            }
            // One frame after another on the timeline, across the step too.
            if (i > 0 && placed[i].dts - placed[i - 1].dts != kFrame) {
                ++uneven;
                ADD_FAILURE() << "packet " << i << " comes " << placed[i].dts - placed[i - 1].dts
                              << " ticks after the one before";
            }
        }
        EXPECT_EQ(dropped, 0);
        EXPECT_EQ(steps, 1);
        EXPECT_EQ(jumps, 0);
        EXPECT_EQ(uneven, 0);
        // The presentation order the camera sent is kept across the step (no two frames swapped).
        std::vector<std::int64_t> pts;
        for (const auto& p : placed) pts.push_back(p.pts);
        std::sort(pts.begin(), pts.end());
        for (std::size_t i = 1; i < pts.size(); ++i) ASSERT_EQ(pts[i] - pts[i - 1], kFrame) << i;
    }
}

TEST(Timeline, ARepeatedTimeMovesOnlyItsPacketAndTheTimelineDoesNotDrift) {
    // A camera that stamps a frame like the one before it, or a little before, every 10 s for an hour:
    // each such packet goes one tick after the last (not to the bin), and the timeline stays the
    // camera's. Moving it a frame on each time had it 14 s ahead after the hour, the parents' delay
    // growing as much.
    kg::ingest::Timeline timeline(kRtp, kFrame);
    std::int64_t last_dts = AV_NOPTS_VALUE;
    int dropped = 0;
    for (std::int64_t i = 0; i < 25 * 3600; ++i) {
        std::int64_t dts = 900000 + i * kFrame;
        if (i % 250 == 249) dts -= kFrame;               // the same time as the frame before
        if (i % 250 == 124) dts -= kFrame + kFrame / 2;  // half a frame before the frame before
        const auto placed = place(timeline, dts, dts);
        ASSERT_FALSE(placed.jumped || placed.stepped) << i;
        AVPacket packet{};
        packet.pts = placed.pts;
        packet.dts = placed.dts;
        dropped += kg::stream::muxable(packet, last_dts) ? 0 : 1;
        if (i % 250 == 249 || i % 250 == 124) {
            ASSERT_EQ(placed.dts, 900000 + (i - 1) * kFrame + 1) << i;
        } else {
            ASSERT_EQ(placed.dts, dts) << i;  // the camera's own time, before and after
        }
    }
    EXPECT_EQ(dropped, 0);
}

TEST(Timeline, PacketsWithoutADecodingTimeAreMovedButNotJudged) {
    kg::ingest::Timeline timeline(kRtp, kFrame);
    // The first packets of an RTSP stream with B-frames: presentation times only, out of order.
    EXPECT_FALSE(place(timeline, 7200, AV_NOPTS_VALUE).jumped);
    EXPECT_FALSE(place(timeline, 0, AV_NOPTS_VALUE).jumped);
    EXPECT_EQ(place(timeline, 3600, 3600).dts, 3600);
    const auto jumped = place(timeline, 50 * 90000, 50 * 90000);
    ASSERT_TRUE(jumped.jumped);
    EXPECT_EQ(jumped.dts, 7200 + kFrame);  // after the latest presentation seen
    EXPECT_EQ(place(timeline, 50 * 90000 + kFrame, AV_NOPTS_VALUE).pts, 7200 + 2 * kFrame);
}

TEST(Timeline, ARestartContinuesWithoutCountingAJump) {
    // A file rewound for looping: expected, not a fault of the source.
    kg::ingest::Timeline timeline(kRtp, kFrame);
    for (std::int64_t i = 0; i < 50; ++i) place(timeline, i * kFrame, i * kFrame);
    timeline.restart();
    for (std::int64_t i = 0; i < 50; ++i) {
        const auto placed = place(timeline, i * kFrame, i * kFrame);
        ASSERT_FALSE(placed.jumped) << i;
        ASSERT_EQ(placed.dts, (50 + i) * kFrame) << i;
    }
    // A jump of the file's clock within a pass is still one.
    const auto back = place(timeline, 0, 0);
    ASSERT_TRUE(back.jumped);
    EXPECT_NEAR(*back.jumped, -2.0, 1e-9);
    EXPECT_EQ(back.dts, 100 * kFrame);
}

TEST(Timeline, EveryJumpIsAbsorbedAndTheTimelineKeepsGrowing) {
    kg::ingest::Timeline timeline(kRtp, kFrame);
    std::int64_t previous = AV_NOPTS_VALUE;
    int jumps = 0;
    for (std::int64_t i = 0; i < 1000; ++i) {
        // The camera's clock restarts every 200 frames, alternately from 0 and from 10 hours on.
        const std::int64_t source = (i / 200 % 2 == 0 ? 0 : std::int64_t{36000} * 90000) + i % 200 * kFrame;
        const auto placed = place(timeline, source, source);
        jumps += placed.jumped ? 1 : 0;
        if (previous != AV_NOPTS_VALUE) {
            ASSERT_EQ(placed.dts - previous, kFrame) << i;
        }
        previous = placed.dts;
    }
    EXPECT_EQ(jumps, 4);
}

// What a failed open's FFmpeg code (and its own last log line) says of the cause.
TEST(FailureCause, TheOpenErrorsCamerasGiveAreSortedByCause) {
    using kg::ingest::FailureCause;
    using kg::ingest::open_failure_cause;
    EXPECT_EQ(open_failure_cause(AVERROR_HTTP_UNAUTHORIZED, ""), FailureCause::unauthorized);
    EXPECT_EQ(open_failure_cause(AVERROR_HTTP_FORBIDDEN, ""), FailureCause::unauthorized);
    EXPECT_EQ(open_failure_cause(AVERROR_HTTP_NOT_FOUND, ""), FailureCause::not_found);
    EXPECT_EQ(open_failure_cause(AVERROR(ENOENT), ""), FailureCause::not_found);
    EXPECT_EQ(open_failure_cause(AVERROR(ECONNREFUSED), ""), FailureCause::unreachable);
    EXPECT_EQ(open_failure_cause(AVERROR(EHOSTUNREACH), ""), FailureCause::unreachable);
    EXPECT_EQ(
        open_failure_cause(AVERROR(EIO), "Failed to resolve hostname cam.invalid: Name or service not known"),
        FailureCause::unreachable);
    EXPECT_EQ(open_failure_cause(AVERROR(ECONNRESET), ""), FailureCause::dropped);
    EXPECT_EQ(open_failure_cause(AVERROR(EIO), "method SETUP failed: 453 Not Enough Bandwidth"),
              FailureCause::error);
    EXPECT_EQ(open_failure_cause(AVERROR_INVALIDDATA, ""), FailureCause::error);
    EXPECT_STREQ(kg::ingest::to_string(FailureCause::no_video), "no_video");
}

// A failure is kept with its cause and time, also once the camera is back; a stop is no failure.
TEST(CameraStats, KeepsTheLastFailureWithItsCauseAndTime) {
    kg::ingest::CameraStats stats;
    const auto now = std::chrono::steady_clock::now();
    EXPECT_FALSE(stats.snapshot(now).last_error_cause);
    const kg::TimePoint t = kg::Clock::now();
    stats.failed(kg::ingest::FailureCause::unauthorized, "cannot open: 401", t);
    stats.connected();
    stats.disconnected();
    const auto s = stats.snapshot(now);
    EXPECT_FALSE(s.connected);
    EXPECT_EQ(s.last_error, "cannot open: 401");
    ASSERT_TRUE(s.last_error_cause);
    EXPECT_EQ(*s.last_error_cause, kg::ingest::FailureCause::unauthorized);
    EXPECT_EQ(s.last_error_time, t);
    stats.frames_damaged(3);
    EXPECT_EQ(stats.snapshot(now).frames_damaged, 3u);
}
