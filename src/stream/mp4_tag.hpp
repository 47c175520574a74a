#pragma once
// The sample-entry tag the MP4 outputs (event clips, the HLS fMP4 segments) give the camera's codec.
// FFmpeg's MP4 muxer tags H.265 `hev1` by default; Apple's players (Safari, iPhones and Macs, which
// many parents and staff use) refuse `hev1` in MP4 and fMP4 and play `hvc1`, whose parameter sets
// are all in the sample entry's hvcC box (the muxer marks them complete for `hvc1`). Other codecs
// keep the muxer's own choice (avc1 for H.264).

extern "C" {
#include <libavcodec/codec_id.h>
#include <libavcodec/codec_par.h>
#include <libavutil/macros.h>
}

#include <cstdint>

namespace kg::stream {

// The codec_tag to set on an MP4 output stream of `params`: 0 lets the muxer choose. `hvc1` needs the
// parameter sets in the sample entry (extradata). FFmpeg's probe, or ingest at the first key frame
// (ingest/parameter_sets.hpp), takes them from the stream when the SDP has none; a stream still
// without them keeps `hev1`, which carries them in band and plays outside Apple's players.
inline std::uint32_t mp4_codec_tag(const AVCodecParameters& params) {
    return params.codec_id == AV_CODEC_ID_HEVC && params.extradata_size > 0 ? MKTAG('h', 'v', 'c', '1') : 0;
}

}  // namespace kg::stream
