#include "ingest/picture_colour.hpp"

extern "C" {
#include <libavutil/frame.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

namespace kg::ingest {

bool is_full_range(const AVFrame& frame) {
    if (frame.color_range == AVCOL_RANGE_JPEG) return true;
    switch (frame.format) {
        case AV_PIX_FMT_YUVJ420P:
        case AV_PIX_FMT_YUVJ422P:
        case AV_PIX_FMT_YUVJ444P:
        case AV_PIX_FMT_YUVJ440P:
        case AV_PIX_FMT_YUVJ411P:
            return true;
        default:
            return false;
    }
}

void read_as_tagged(SwsContext& sws, const AVFrame& frame, bool out_full_range) {
    const auto* desc = av_pix_fmt_desc_get(static_cast<AVPixelFormat>(frame.format));
    if (desc == nullptr || (desc->flags & AV_PIX_FMT_FLAG_RGB) != 0) return;
    // As the scale filter: RGB (0), unspecified (2), reserved (3, 8) and anything past BT.2020 CL
    // (10) are read as the default, BT.601.
    const int cs = frame.colorspace;
    const bool known = cs >= 1 && cs <= 10 && cs != 2 && cs != 3 && cs != 8;
    const int* matrix = sws_getCoefficients(known ? cs : SWS_CS_DEFAULT);
    sws_setColorspaceDetails(&sws, matrix, is_full_range(frame) ? 1 : 0, matrix, out_full_range ? 1 : 0, 0,
                             1 << 16, 1 << 16);
}

}  // namespace kg::ingest
