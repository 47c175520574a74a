#pragma once
// Which camera packets a muxer can take. RTSP carries presentation times only: FFmpeg's demuxer
// leaves the first packets of a stream with B-frames without a decoding time (even the first key
// frame). Muxers refuse those, so the outputs skip them, and start only at a key frame that has one.
// A jump or a step back of the camera's clock (a repeated time included) never gets here: ingest
// puts every packet on one continuous timeline (ingest/timeline.hpp); the check below stays as the
// muxers' own rule.

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavcodec/codec_par.h>
#include <libavcodec/packet.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
}

#include <fmt/format.h>

#include <cstdint>
#include <string>

#include "ingest/parameter_sets.hpp"

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

// Whether an MP4 file (a clip, an HLS segment) can hold video of this codec, as FFmpeg's muxer
// judges it. A USB camera left to its own choice gives raw YUYV, which it cannot.
inline bool mp4_holds(AVCodecID codec) {
    const AVOutputFormat* mp4 = av_guess_format("mp4", nullptr, nullptr);
    return mp4 != nullptr && avformat_query_codec(mp4, codec, FF_COMPLIANCE_NORMAL) == 1;
}

// Why no output can be made of a stream with these parameters; empty when one can. A connection
// whose description and probed packets gave no picture size (no parameter sets: a camera that
// sends them only with its key frames, and none came within the probe) makes the MP4-based
// muxers refuse their header, as they refuse a codec an MP4 file cannot hold. Ingest completes such a stream
// from its first key frame before the outputs see it (ingest/parameter_sets.hpp); what reaches here without a
// size is a stream whose key frame did not tell it either (a codec other than H.264 and H.265, a damaged
// frame). FFmpeg 5.1's HLS muxer also leaks about 260 KB every time its header fails that way (found under
// AddressSanitizer, bench/soak.py), so the outputs do not try: the next connection probes again.
inline std::string unmuxable_reason(const AVCodecParameters& params) {
    if (!mp4_holds(params.codec_id)) {
        return fmt::format(
            "the camera sends {} video, which an MP4 file cannot hold (a USB camera gives raw pictures "
            "unless "
            "asked otherwise: set its input.format to mjpeg or h264)",
            avcodec_get_name(params.codec_id));
    }
    if (!ingest::has_picture_size(params)) {
        return "the camera's stream gave no picture size (no parameter sets in its description or first "
               "packets)";
    }
    return {};
}

}  // namespace kg::stream
