#pragma once
// How a decoded picture's YUV is to be read: the matrix and range its stream is tagged with. Told
// to swscale, which otherwise reads every picture as limited-range BT.601.

struct AVFrame;
struct SwsContext;

namespace kg::ingest {

// Full range: tagged so, or one of the deprecated full-range formats (yuvj420p) FFmpeg 5.1's
// H.264, HEVC and MJPEG decoders still give.
bool is_full_range(const AVFrame& frame);

// Tells `sws` to read pictures like `frame` with the matrix and range their stream is tagged with,
// writing `out_full_range` (RGB out: true; YUV out: as its encoder is tagged). Untagged pictures
// are read as BT.601, as FFmpeg's scale filter does. RGB pictures have no matrix: left as they are.
void read_as_tagged(SwsContext& sws, const AVFrame& frame, bool out_full_range);

}  // namespace kg::ingest
