#pragma once
// Which camera packets a muxer can take. RTSP carries presentation times only: FFmpeg's demuxer
// leaves the first packets of a stream with B-frames without a decoding time (even the first key
// frame). Muxers refuse those, so the outputs skip them, and start only at a key frame that has one.
// A jump or a step back of the camera's clock (a repeated time included) never gets here: ingest
// puts every packet on one continuous timeline (ingest/timeline.hpp); the check below stays as the
// muxers' own rule.

extern "C" {
#include <libavcodec/packet.h>
#include <libavutil/avutil.h>
}

#include <cstdint>

namespace kg::stream {

// True when `packet` can be written after a packet with decoding time `last_dts` (updated).
inline bool muxable(const AVPacket& packet, std::int64_t& last_dts) {
    if (packet.dts == AV_NOPTS_VALUE) return false;
    if (last_dts != AV_NOPTS_VALUE && packet.dts <= last_dts) return false;
    last_dts = packet.dts;
    return true;
}

// A packet an output can start on: a key frame with a decoding time.
inline bool starts_output(const AVPacket& packet) {
    return (packet.flags & AV_PKT_FLAG_KEY) != 0 && packet.dts != AV_NOPTS_VALUE;
}

}  // namespace kg::stream
