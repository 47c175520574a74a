#include "ingest/timeline.hpp"

extern "C" {
#include <libavutil/mathematics.h>
}

#include <algorithm>

namespace kg::ingest {
namespace {

std::int64_t ticks(double seconds, AVRational time_base) {
    return av_rescale_q(static_cast<std::int64_t>(seconds * 1000), AVRational{1, 1000}, time_base);
}

}  // namespace

Timeline::Timeline(AVRational time_base, std::int64_t frame_ticks, double max_ahead_seconds)
    : time_base_(time_base),
      frame_ticks_(std::max<std::int64_t>(frame_ticks, 1)),
      max_back_(ticks(kMaxBackSeconds, time_base)),
      max_ahead_(ticks(std::max(max_ahead_seconds, kMaxAheadSeconds), time_base)) {}

std::optional<Timeline::Shift> Timeline::place(AVPacket& packet) {
    // Packets without a decoding time (the first ones of an RTSP stream with B-frames) are placed by
    // their presentation time; only decoding times are compared, which B-frames do not reorder.
    const auto at = [](const AVPacket& p) { return p.dts != AV_NOPTS_VALUE ? p.dts : p.pts; };
    std::optional<Shift> shifted;
    std::int64_t nudge = 0;  // this packet only
    if (at(packet) != AV_NOPTS_VALUE) {
        if (restarted_) {
            if (end_ != AV_NOPTS_VALUE) offset_ = end_ - at(packet);
            restarted_ = false;
        } else if (packet.dts != AV_NOPTS_VALUE && last_dts_ != AV_NOPTS_VALUE) {
            const std::int64_t dts = packet.dts + offset_;
            const std::int64_t step = dts - last_dts_;
            const bool jump = step < -max_back_ || step > max_ahead_;
            if (!jump && step <= 0 && step > -frame_ticks_) {
                // A repeated time, or a step back of less than a frame (cameras with a coarse or
                // careless clock do it every few seconds): only this packet moves, one tick after the
                // last, as `ffmpeg` itself does. Moving the timeline a frame on for each would make it
                // drift ahead of the camera's for good, the parents' streams' delay growing by the hour;
                // the packets after it are later than the last again by themselves.
                nudge = 1 - step;
            } else if (jump || step <= 0) {
                // A packet a frame or more before the last one: the muxers would drop it, and every
                // packet after it up to where the clock was. It goes where the camera's cadence would
                // have put it, one frame after the last packet, not one tick: with B-frames, frames
                // decoded before it are shown up to a few frames later, and its presentation time must
                // stay after theirs.
                shifted = Shift{jump ? Shift::Kind::jump : Shift::Kind::step,
                                static_cast<double>(dts - end_) * av_q2d(time_base_)};
                offset_ += end_ - dts;
            }
        }
    }
    if (offset_ + nudge != 0) {
        if (packet.pts != AV_NOPTS_VALUE) packet.pts += offset_ + nudge;
        if (packet.dts != AV_NOPTS_VALUE) packet.dts += offset_ + nudge;
    }
    if (packet.dts != AV_NOPTS_VALUE) last_dts_ = packet.dts;
    if (at(packet) == AV_NOPTS_VALUE) return shifted;
    const std::int64_t end = at(packet) + (packet.duration > 0 ? packet.duration : frame_ticks_);
    if (end_ == AV_NOPTS_VALUE || end > end_) end_ = end;
    return shifted;
}

}  // namespace kg::ingest
