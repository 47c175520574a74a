#pragma once
// The times an FLV output (HTTP-FLV, RTMP push) writes. FLV gives a tag's time in milliseconds in 32
// bits, and FFmpeg's muxer writes 31 of them (signed, as Adobe's players read it), so a time past
// 2^31 ms, 24.8 days, wraps to 0 and every player connected then freezes on a time going back.
// A camera's connection is its timeline (ingest/timeline.hpp), and a good one lasts that long on an
// unattended box. So each FLV output counts from its own first key frame, and starts over (a new
// header: HTTP-FLV viewers reconnect, the RTMP push reconnects) at the first key frame after
// `restart_after`, well before the wrap.

extern "C" {
#include <libavcodec/packet.h>
#include <libavutil/avutil.h>
#include <libavutil/mathematics.h>
}

#include <chrono>
#include <cstdint>

namespace kg::stream {

class FlvClock {
public:
    // 20 days: the wrap is 24.8 days away, and a start-over comes at the next key frame (seconds).
    static constexpr std::chrono::milliseconds kRestartAfter{std::chrono::hours(24) * 20};

    explicit FlvClock(std::chrono::milliseconds restart_after = kRestartAfter)
        : restart_after_(restart_after) {}

    // The output starts at `key` (a key frame with a decoding time), in the stream's `time_base`.
    void start(const AVPacket& key, AVRational time_base) {
        base_ = key.dts;
        restart_at_ = key.dts + av_rescale_q(restart_after_.count(), AVRational{1, 1000}, time_base);
    }

    // True when the output should start over at `packet`: a key frame `restart_after` past the start.
    bool due(const AVPacket& packet) const {
        return base_ != AV_NOPTS_VALUE && (packet.flags & AV_PKT_FLAG_KEY) != 0 &&
               packet.dts != AV_NOPTS_VALUE && packet.dts >= restart_at_;
    }

    // Puts `packet` (the output's copy, still in the stream's time base) on the output's own timeline.
    void place(AVPacket& packet) const {
        if (packet.dts != AV_NOPTS_VALUE) packet.dts -= base_;
        if (packet.pts != AV_NOPTS_VALUE) packet.pts -= base_;
    }

    void reset() { base_ = AV_NOPTS_VALUE; }
    bool idle() const { return base_ == AV_NOPTS_VALUE; }
    std::chrono::milliseconds restart_after() const { return restart_after_; }

private:
    std::chrono::milliseconds restart_after_;
    std::int64_t base_ = AV_NOPTS_VALUE;
    std::int64_t restart_at_ = 0;
};

}  // namespace kg::stream
