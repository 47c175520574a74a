// Ingest building blocks that need no camera: sampling, the newest-frame hand-off, back-off.
#include <gtest/gtest.h>

#include "common/backoff.hpp"
#include "ingest/camera_stats.hpp"
#include "ingest/ffmpeg_input.hpp"
#include "ingest/frame_sampler.hpp"
#include "ingest/latest_frame.hpp"

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

TEST(CameraStats, CountsReconnectsAndStallsInTheLastHour) {
    kg::ingest::CameraStats stats;
    const auto t0 = kg::Clock::now();
    stats.reconnect(t0 - 2h);
    stats.reconnect(t0 - 30min);
    stats.reconnect(t0 - 1min);
    stats.stall(t0 - 10s);
    const auto s = stats.snapshot(t0);
    EXPECT_EQ(s.reconnects_1h, 2);
    EXPECT_EQ(s.stalls_1h, 1);
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
}
