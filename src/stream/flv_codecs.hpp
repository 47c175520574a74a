#pragma once
// What FLV carries, for HTTP-FLV and the RTMP push alike: H.264 video only. H.265 in FLV exists only
// as non-standard extensions that media servers (nginx-rtmp) and players (WeChat's live-player,
// flv.js) refuse or disagree on, so a camera sending H.265, as many do by default, has neither.

extern "C" {
#include <libavcodec/codec_desc.h>
#include <libavcodec/codec_id.h>
}

#include <string>

namespace kg::stream {

inline bool flv_carries(AVCodecID codec) { return codec == AV_CODEC_ID_H264; }

// A codec's name as people know it: H.265 is what camera menus and phones call HEVC.
inline std::string codec_for_people(AVCodecID codec) {
    if (codec == AV_CODEC_ID_HEVC) return "H.265 (HEVC)";
    const AVCodecDescriptor* d = avcodec_descriptor_get(codec);
    if (d == nullptr) return "an unknown codec";
    return d->long_name != nullptr ? d->long_name : d->name;
}

}  // namespace kg::stream
