#pragma once
// A stream's picture size and parameter sets from a key frame that carries them in band.
//
// A camera that puts no parameter sets in its RTSP description (no sprop-parameter-sets) and sends
// them only with its key frames, with a GOP longer than the probe (2 s), opens with no picture size:
// the decoder copes at the first key frame, but the MP4- and FLV-based outputs refuse a stream
// without a size, and their viewers would wait for a connection that probed better. The first key
// frame tells what the probe did not.

#include <optional>
#include <utility>

extern "C" {
#include <libavcodec/codec_par.h>
#include <libavcodec/packet.h>
}

namespace kg::ingest {

// True when outputs can be made of a stream with these parameters (it has a picture size).
inline bool has_picture_size(const AVCodecParameters& params) {
    return params.width > 0 && params.height > 0;
}

// Fills what `params` lacks (picture size, pixel format, extradata) from `key`'s in-band parameter
// sets (H.264, H.265). Returns has_picture_size() afterwards; `params` is left as it was for what
// the packet does not carry.
bool complete_from_key_frame(AVCodecParameters& params, const AVPacket& key);

// The picture size (width, height) the sequence parameter set gives for `key`: its own in band,
// else the one in `params`' extradata. Nothing for a codec other than H.264 and H.265, or when
// neither gives one.
std::optional<std::pair<int, int>> key_frame_picture_size(const AVCodecParameters& params,
                                                          const AVPacket& key);

// `params` said again from `key`'s in-band parameter sets, for a camera that changed its picture
// within one connection: its size, and its parameter sets as extradata (the old ones would give
// the outputs' headers, MP4's avcC and FLV's sequence header, the old picture).
void renew_from_key_frame(AVCodecParameters& params, const AVPacket& key);

}  // namespace kg::ingest
