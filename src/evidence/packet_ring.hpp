#pragma once
// The last seconds of one camera's encoded video, kept as reference-counted FFmpeg packets (no
// copy of the data), always starting on a key frame, so that a clip around an event can be cut
// without re-encoding. Fed by the ingest thread, read by whoever cuts clips.

#include <spdlog/logger.h>

#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "common/time.hpp"
#include "ingest/ffmpeg_input.hpp"

namespace kg::evidence {

struct PacketRef {
    struct Unref {
        void operator()(AVPacket* p) const { av_packet_free(&p); }
    };
    std::unique_ptr<AVPacket, Unref> packet;
    // On the steady clock: a wall clock set back (a box that started before NTP, an RTC in local
    // time read as UTC) kept every packet younger than `keep` for hours, without bound.
    std::chrono::steady_clock::time_point arrival;
    bool key = false;
};

// What a clip needs: the stream description and the packets, key frame first.
struct PacketSpan {
    std::unique_ptr<AVCodecParameters, void (*)(AVCodecParameters*)> codecpar{nullptr, nullptr};
    AVRational time_base{1, 90000};
    std::vector<PacketRef> packets;
};

class PacketRing final : public ingest::PacketObserver {
public:
    // `keep`: how far back a clip may start. A GOP is held whole up to twice that (at least
    // `longest_gop`); a longer one is dropped, so memory stays bounded however rare key frames are.
    // `max_bytes` bounds it whatever the bitrate and `keep` (a long health.frozen_after lengthens
    // `keep`): past it the oldest GOPs go, and clips reach back less far.
    explicit PacketRing(Duration keep, Duration longest_gop = std::chrono::seconds(30),
                        std::size_t max_bytes = kDefaultMaxBytes,
                        std::shared_ptr<spdlog::logger> log = nullptr);
    static constexpr std::size_t kDefaultMaxBytes = std::size_t{96} << 20;
    static constexpr std::size_t kEarlierRuns = 3;

    // A new connection starts the ring again (its parameters may differ, and old packets no longer
    // decode with them), as does a new picture within one (ingest::FfmpegInput tells it as a new
    // stream); the earlier streams' packets are kept beside it, with their own parameters, for as
    // long as a clip may start in them (`keep`): a camera that dropped during an event's post-roll
    // lost the event's video, and the clip cut from the new connection alone was reported as kept.
    // Up to kEarlierRuns of them: a camera whose settings change drops its session soon after, and
    // the one before the change went with the short one between.
    void on_stream_opened(const AVStream& stream) override;
    void on_packet(const AVPacket& packet, const AVStream& stream) override;
    void on_stream_closed() override;

    // Packets from the last key frame at or before `from` up to `to` (wall-clock times, as events
    // have them, taken as that long before `now`), of one stream: the one that holds most of the
    // span (the one before a reconnect up to its end, if it does). Empty if the ring
    // holds nothing for that span (camera down, or older than `keep`).
    PacketSpan span(TimePoint from, TimePoint to, TimePoint now = Clock::now()) const;
    // The same, on the steady clock the packets are stamped with. With `at` (the event's moment),
    // the stream that holds that moment, when one does: the clip shows how the event began.
    PacketSpan span(SteadyPoint from, SteadyPoint to, std::optional<SteadyPoint> at = std::nullopt) const;

    std::size_t packets() const;
    std::size_t bytes() const;

private:
    // One connection's packets, always starting on a key frame.
    struct Run {
        std::unique_ptr<AVCodecParameters, void (*)(AVCodecParameters*)> codecpar{nullptr, nullptr};
        AVRational time_base{1, 90000};
        std::deque<PacketRef> packets;
        std::size_t bytes = 0;
        bool clippable = true;  // an MP4 file can hold its codec (stream::mp4_holds)
    };
    void trim(std::chrono::steady_clock::time_point now);
    void drop_first_gop();
    static PacketSpan span_of(const Run& run, SteadyPoint from, SteadyPoint to);

    Duration keep_, longest_gop_;
    std::size_t max_bytes_;
    std::shared_ptr<spdlog::logger> log_;  // may be null
    bool warned_bytes_ = false;
    bool said_unclippable_ = false;  // a camera whose codec no clip can hold: said once
    mutable std::mutex mutex_;
    Run current_;              // this stream's
    std::deque<Run> earlier_;  // the ones before while a clip may need them, oldest first
};

}  // namespace kg::evidence
