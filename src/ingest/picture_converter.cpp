#include "ingest/picture_converter.hpp"

#include <algorithm>
#include <array>
#include <cstddef>

extern "C" {
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
}

namespace kg::ingest {
namespace {

// FFmpeg 5.1's H.264, HEVC and MJPEG decoders still give full-range pictures in the deprecated
// yuvj formats. swscale rewrites them to their plain twins inside its context, which then never
// matches them again (sws_getCachedContext built a new one every frame, and dropped the matrix
// set on the old one): they are given to it as the twin, with the range said.
AVPixelFormat plain_twin(int format, bool& full_range) {
    switch (format) {
        case AV_PIX_FMT_YUVJ420P:
            full_range = true;
            return AV_PIX_FMT_YUV420P;
        case AV_PIX_FMT_YUVJ422P:
            full_range = true;
            return AV_PIX_FMT_YUV422P;
        case AV_PIX_FMT_YUVJ444P:
            full_range = true;
            return AV_PIX_FMT_YUV444P;
        case AV_PIX_FMT_YUVJ440P:
            full_range = true;
            return AV_PIX_FMT_YUV440P;
        case AV_PIX_FMT_YUVJ411P:
            full_range = true;
            return AV_PIX_FMT_YUV411P;
        default:
            return static_cast<AVPixelFormat>(format);
    }
}

bool is_rgb(int format) {
    const auto* desc = av_pix_fmt_desc_get(static_cast<AVPixelFormat>(format));
    return desc != nullptr && (desc->flags & AV_PIX_FMT_FLAG_RGB) != 0;
}

// The YCbCr matrices swscale has tables for: BT.709 (1), FCC (4), BT.470BG (5), SMPTE 170M (6),
// SMPTE 240M (7), BT.2020 (9, 10). RGB (0), unspecified (2), reserved (3) and YCgCo (8) are not.
bool known_matrix(int cs) { return cs == 1 || (cs >= 4 && cs <= 7) || cs == 9 || cs == 10; }

}  // namespace

bool PictureConverter::convert(const AVFrame& frame, int width, int height, AVPixelFormat format,
                               std::uint8_t* const dst[4], const int dst_stride[4]) {
    bool full_range = frame.color_range == AVCOL_RANGE_JPEG;
    const AVPixelFormat src_format = plain_twin(frame.format, full_range);
    const Key key{frame.width, frame.height, src_format, width, height, format, frame.colorspace, full_range};
    if (!sws_ || key_ != key) {
        sws_.reset();
        key_.reset();
        // The ranges are set before sws_init_context: set after, they are not applied to pictures
        // deeper than 8 bits, nor when the size stays the same (swscale has chosen a plain copy).
        SwsContext* sws = sws_alloc_context();
        if (sws == nullptr) return false;
        sws_.reset(sws);
        const bool out_full = is_rgb(format);
        // SWS_ACCURATE_RND: the fast path reads saturated colours up to 7 levels off (0.16 ms more
        // a 1280x720 picture, measured).
        av_opt_set_int(sws, "srcw", frame.width, 0);
        av_opt_set_int(sws, "srch", frame.height, 0);
        av_opt_set_int(sws, "src_format", src_format, 0);
        av_opt_set_int(sws, "dstw", width, 0);
        av_opt_set_int(sws, "dsth", height, 0);
        av_opt_set_int(sws, "dst_format", format, 0);
        av_opt_set_int(sws, "sws_flags", SWS_BILINEAR | SWS_ACCURATE_RND, 0);
        av_opt_set_int(sws, "src_range", full_range ? 1 : 0, 0);
        av_opt_set_int(sws, "dst_range", out_full ? 1 : 0, 0);
        if (sws_init_context(sws, nullptr, nullptr) < 0) {
            sws_.reset();
            return false;
        }
        // The matrix, as FFmpeg's scale filter reads it: what the stream says, else BT.601. Only
        // for RGB out: a YUV picture keeps its matrix (swscale refuses to change it in one pass).
        if (out_full && !is_rgb(src_format)) {
            const int* matrix =
                sws_getCoefficients(known_matrix(frame.colorspace) ? frame.colorspace : SWS_CS_DEFAULT);
            sws_setColorspaceDetails(sws, matrix, full_range ? 1 : 0, matrix, 1, 0, 1 << 16, 1 << 16);
        }
        stretch_grey_ = src_format == AV_PIX_FMT_GRAY8 && !full_range && frame.width == width &&
                        frame.height == height && (format == AV_PIX_FMT_BGR24 || format == AV_PIX_FMT_RGB24);
        key_ = key;
    }
    sws_scale(sws_.get(), frame.data, frame.linesize, 0, frame.height, dst, dst_stride);
    if (stretch_grey_) {
        static constexpr auto kStretch = [] {
            std::array<std::uint8_t, 256> t{};
            for (int v = 0; v < 256; ++v) {
                const int full = ((v - 16) * 255 + 219 / 2) / 219;
                t[static_cast<std::size_t>(v)] = static_cast<std::uint8_t>(std::clamp(full, 0, 255));
            }
            return t;
        }();
        for (int y = 0; y < height; ++y) {
            std::uint8_t* row = dst[0] + static_cast<std::ptrdiff_t>(y) * dst_stride[0];
            for (int x = 0; x < width * 3; ++x) row[x] = kStretch[row[x]];
        }
    }
    return true;
}

void PictureConverter::tag_encoder(AVCodecContext& encoder, const AVFrame& frame) {
    encoder.color_range = AVCOL_RANGE_MPEG;
    if (is_rgb(frame.format)) {
        encoder.colorspace = AVCOL_SPC_SMPTE170M;  // swscale's default matrix, which wrote it
        encoder.color_primaries = AVCOL_PRI_UNSPECIFIED;
        encoder.color_trc = AVCOL_TRC_UNSPECIFIED;
        return;
    }
    // swscale does not change a YUV picture's matrix: the output has the camera's. Values a
    // player cannot read (reserved, GBR on YCbCr, past the known ones) are left unspecified:
    // libx264 writes whatever it is given.
    encoder.colorspace = known_matrix(frame.colorspace) ? frame.colorspace : AVCOL_SPC_UNSPECIFIED;
    const int pri = frame.color_primaries, trc = frame.color_trc;
    const bool known_primaries = pri == 1 || (pri >= 4 && pri <= 12) || pri == AVCOL_PRI_EBU3213;
    const bool known_transfer = trc == 1 || (trc >= 4 && trc <= 18);
    encoder.color_primaries = known_primaries ? frame.color_primaries : AVCOL_PRI_UNSPECIFIED;
    encoder.color_trc = known_transfer ? frame.color_trc : AVCOL_TRC_UNSPECIFIED;
}

}  // namespace kg::ingest
