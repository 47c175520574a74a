#pragma once
// Converts decoded camera pictures with swscale, reading each as its stream is tagged: its matrix
// (BT.709 for HD, BT.601 for SD, ...) and range (limited, or full on many IP cameras). swscale
// left to itself reads every picture as limited-range BT.601: an HD camera's red cap came out
// browner and its staff's skin greener than the photos the checks were trained and measured on.

#include <cstdint>
#include <optional>

#include "ingest/ffmpeg_ptr.hpp"

namespace kg::ingest {

class PictureConverter {
public:
    // Converts `frame` into `dst` (planes and strides, as sws_scale takes them) at the given size
    // and format: an RGB format is written full range, a YUV one limited, as players expect of it.
    // False when swscale cannot convert this picture. Keeps its context while the pictures' size,
    // format and tags stay the same.
    bool convert(const AVFrame& frame, int width, int height, AVPixelFormat format,
                 std::uint8_t* const dst[4], const int dst_stride[4]);

    // The tags to give an encoder of this converter's YUV output, from the source `frame`: its
    // matrix when it is a YCbCr one swscale reads, its primaries and transfer when they are not
    // reserved values; unspecified otherwise (an RGB source converted with BT.601: that).
    static void tag_encoder(AVCodecContext& encoder, const AVFrame& frame);

private:
    struct Key {
        int src_width, src_height, src_format, width, height, format, colorspace;
        bool full_range;
        bool operator==(const Key&) const = default;
    };
    SwsPtr sws_;
    std::optional<Key> key_;
    // swscale's unscaled grey-to-RGB path ignores the source's range: a limited-range monochrome
    // camera read at its own size came out flat (16..235). Such pictures are stretched after.
    bool stretch_grey_ = false;
};

}  // namespace kg::ingest
