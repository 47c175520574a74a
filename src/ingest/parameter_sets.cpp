#include "ingest/parameter_sets.hpp"

#include <cstdint>
#include <cstring>
#include <memory>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavcodec/bsf.h>
#include <libavutil/mem.h>
}

#include "ingest/ffmpeg_ptr.hpp"

namespace kg::ingest {
namespace {

struct ParserCloser {
    void operator()(AVCodecParserContext* p) const { av_parser_close(p); }
};
struct BsfFreer {
    void operator()(AVBSFContext* b) const { av_bsf_free(&b); }
};

// The picture size and pixel format, as FFmpeg's parser reads them from the sequence parameter set
// (the packet's own, else the one in the extradata).
struct ParsedPicture {
    int width = 0, height = 0, format = -1;
};
ParsedPicture parse_picture(const AVCodecParameters& params, const AVPacket& key) {
    std::unique_ptr<AVCodecParserContext, ParserCloser> parser(av_parser_init(params.codec_id));
    CodecContextPtr context(avcodec_alloc_context3(nullptr));
    if (!parser || !context || avcodec_parameters_to_context(context.get(), &params) < 0) return {};
    // The packet is one whole access unit (what the demuxer gives): parsed at once, not buffered.
    parser->flags |= PARSER_FLAG_COMPLETE_FRAMES;
    std::uint8_t* out = nullptr;
    int out_size = 0;
    av_parser_parse2(parser.get(), context.get(), &out, &out_size, key.data, key.size, key.pts, key.dts,
                     key.pos);
    return {parser->width, parser->height, parser->format};
}

void size_from_parser(AVCodecParameters& params, const AVPacket& key) {
    const ParsedPicture parsed = parse_picture(params, key);
    if (parsed.width > 0 && parsed.height > 0) {
        params.width = parsed.width;
        params.height = parsed.height;
    }
    if (params.format < 0 && parsed.format >= 0) params.format = parsed.format;
}

bool parsed_codec(const AVCodecParameters& params) {
    return params.codec_id == AV_CODEC_ID_H264 || params.codec_id == AV_CODEC_ID_HEVC;
}

// The parameter sets as extradata (Annex B), which the MP4 and FLV muxers turn into avcC / hvcC.
void extradata_from_key_frame(AVCodecParameters& params, const AVPacket& key) {
    const AVBitStreamFilter* filter = av_bsf_get_by_name("extract_extradata");
    AVBSFContext* raw = nullptr;
    if (filter == nullptr || av_bsf_alloc(filter, &raw) < 0) return;
    std::unique_ptr<AVBSFContext, BsfFreer> bsf(raw);
    if (avcodec_parameters_copy(bsf->par_in, &params) < 0 || av_bsf_init(bsf.get()) < 0) return;
    PacketPtr in(av_packet_alloc()), out(av_packet_alloc());
    if (!in || !out || av_packet_ref(in.get(), &key) < 0) return;
    if (av_bsf_send_packet(bsf.get(), in.get()) < 0 || av_bsf_receive_packet(bsf.get(), out.get()) < 0)
        return;
    std::size_t size = 0;
    const std::uint8_t* data = av_packet_get_side_data(out.get(), AV_PKT_DATA_NEW_EXTRADATA, &size);
    if (data == nullptr || size == 0) return;
    auto* copy = static_cast<std::uint8_t*>(av_mallocz(size + AV_INPUT_BUFFER_PADDING_SIZE));
    if (copy == nullptr) return;
    std::memcpy(copy, data, size);
    av_freep(&params.extradata);
    params.extradata = copy;
    params.extradata_size = static_cast<int>(size);
}

}  // namespace

bool complete_from_key_frame(AVCodecParameters& params, const AVPacket& key) {
    if (!parsed_codec(params)) return has_picture_size(params);
    if (params.extradata_size <= 0) extradata_from_key_frame(params, key);
    if (!has_picture_size(params)) size_from_parser(params, key);
    return has_picture_size(params);
}

std::optional<std::pair<int, int>> key_frame_picture_size(const AVCodecParameters& params,
                                                          const AVPacket& key) {
    if (!parsed_codec(params)) return std::nullopt;
    const ParsedPicture parsed = parse_picture(params, key);
    if (parsed.width <= 0 || parsed.height <= 0) return std::nullopt;
    return std::pair{parsed.width, parsed.height};
}

void renew_from_key_frame(AVCodecParameters& params, const AVPacket& key) {
    if (!parsed_codec(params)) return;
    extradata_from_key_frame(params, key);  // replaced only when the packet carries them
    // The size from the new parameter sets; the pixel format only if unset, as the parser never
    // says a full-range ("J") one: the probe's stays, as do its colour tags.
    size_from_parser(params, key);
}

}  // namespace kg::ingest
