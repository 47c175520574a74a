#include "evidence/clip_writer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <optional>
#include <vector>

#include "common/durable_file.hpp"
#include "ingest/ffmpeg_ptr.hpp"
#include "stream/mp4_tag.hpp"
#include "stream/muxable.hpp"

namespace kg::evidence {
namespace {

struct OutputCloser {
    void operator()(AVFormatContext* c) const {
        if (c->pb != nullptr && !(c->oformat->flags & AVFMT_NOFILE)) avio_closep(&c->pb);
        avformat_free_context(c);
    }
};

}  // namespace

ClipResult write_mp4(const PacketSpan& span, const std::string& path) {
    ClipResult result;
    // The reason first: a camera whose codec no clip can hold has nothing buffered either.
    if (span.codecpar) {
        if (std::string why = stream::unmuxable_reason(*span.codecpar); !why.empty()) {
            result.error = std::move(why);
            return result;
        }
    }
    if (span.packets.empty() || !span.codecpar) {
        result.error = "no video buffered for this time";
        return result;
    }
    const std::string partial = path + ".part";
    AVFormatContext* raw = nullptr;
    int err = avformat_alloc_output_context2(&raw, nullptr, "mp4", partial.c_str());
    if (err < 0 || raw == nullptr) {
        result.error = fmt::format("cannot create an MP4 muxer: {}", ingest::av_error_string(err));
        return result;
    }
    std::unique_ptr<AVFormatContext, OutputCloser> out(raw);
    AVStream* stream = avformat_new_stream(out.get(), nullptr);
    if (stream == nullptr || avcodec_parameters_copy(stream->codecpar, span.codecpar.get()) < 0) {
        result.error = "cannot describe the clip's stream";
        return result;
    }
    // avc1 for H.264 (the muxer's choice), hvc1 for H.265: the muxer's hev1 does not play on Apple's.
    stream->codecpar->codec_tag = stream::mp4_codec_tag(*stream->codecpar);
    stream->time_base = span.time_base;
    if ((err = avio_open(&out->pb, partial.c_str(), AVIO_FLAG_WRITE)) < 0) {
        result.error = fmt::format("cannot write {}: {}", partial, ingest::av_error_string(err));
        return result;
    }
    if ((err = avformat_write_header(out.get(), nullptr)) < 0) {
        result.error = fmt::format("cannot write the MP4 header: {}", ingest::av_error_string(err));
        std::remove(partial.c_str());
        return result;
    }

    // RTSP cameras with B-frames send the first packets of a connection without a decoding time
    // (the first key frame included): a clip starts at the first key frame that has one, and
    // packets without one are left out, as the muxer refuses them.
    auto start = span.packets.begin();
    while (start != span.packets.end() &&
           (((*start).packet->flags & AV_PKT_FLAG_KEY) == 0 || (*start).packet->dts == AV_NOPTS_VALUE)) {
        ++start;
    }
    if (start == span.packets.end()) {
        result.error = "no key frame with timestamps in the clip's span";
        std::remove(partial.c_str());
        return result;
    }
    const std::int64_t origin = (*start).packet->dts;
    std::int64_t last_dts = AV_NOPTS_VALUE, last_end = 0;
    // The steps between packets' times, for a last packet that has no duration (below).
    constexpr std::size_t kStepsKept = 256;
    std::vector<std::int64_t> steps;
    steps.reserve(kStepsKept);
    std::int64_t step_count = 0;
    // Owned, so that every return (and an exception from the formatting below) frees it.
    const ingest::PacketPtr packet(av_packet_alloc());
    if (!packet) {
        result.error = "cannot write the clip: out of memory";
        std::remove(partial.c_str());
        return result;
    }
    AVPacket* const pkt = packet.get();
    for (auto it = start; it != span.packets.end(); ++it) {
        const auto& ref = *it;
        if (ref.packet->dts == AV_NOPTS_VALUE) continue;
        // A failed reference leaves the packet blank: written, it would be an empty sample.
        if ((err = av_packet_ref(pkt, ref.packet.get())) < 0) {
            result.error = fmt::format("cannot write the clip: {}", ingest::av_error_string(err));
            std::remove(partial.c_str());
            return result;
        }
        if (pkt->pts != AV_NOPTS_VALUE) pkt->pts -= origin;
        if (pkt->dts != AV_NOPTS_VALUE) pkt->dts -= origin;
        // Camera streams sometimes repeat a timestamp; the muxer insists on increasing dts.
        if (pkt->dts != AV_NOPTS_VALUE && last_dts != AV_NOPTS_VALUE && pkt->dts <= last_dts) {
            pkt->dts = last_dts + 1;
            if (pkt->pts != AV_NOPTS_VALUE && pkt->pts < pkt->dts) pkt->pts = pkt->dts;
        }
        if (last_dts != AV_NOPTS_VALUE && pkt->dts != AV_NOPTS_VALUE) {
            ++step_count;
            // A step of one tick is a burst (arrival stamps a tick apart) or a repeated time made
            // to increase: not a frame's length.
            if (pkt->dts - last_dts > 1 && steps.size() < kStepsKept) steps.push_back(pkt->dts - last_dts);
        }
        // The last packet, without a duration (an MJPEG camera's, stamped by its arrival), lasts a
        // typical step: the MP4 muxer takes every other sample's duration from the next one's time,
        // but the last's from its own, and such a clip lasted a frame less (its last frame no time
        // at all). The smallest of the mean step, the lower median of the steps and a second: the
        // step before it may be a pause of the camera, which held the last picture for as long,
        // and the clip said that much longer.
        if (pkt->duration <= 0 && std::next(it) == span.packets.end() && step_count > 0) {
            std::int64_t typical = std::max<std::int64_t>(pkt->dts / step_count, 1);  // dts from 0 here
            if (!steps.empty()) {
                const auto lower = steps.begin() + static_cast<std::ptrdiff_t>((steps.size() - 1) / 2);
                std::nth_element(steps.begin(), lower, steps.end());
                typical = std::min(typical, *lower);
            }
            pkt->duration = std::min(typical, av_rescale_q(1, AVRational{1, 1}, span.time_base));
        }
        last_dts = pkt->dts;
        if (pkt->pts != AV_NOPTS_VALUE)
            last_end = std::max(last_end, pkt->pts + std::max<std::int64_t>(pkt->duration, 0));
        pkt->stream_index = 0;
        av_packet_rescale_ts(pkt, span.time_base, stream->time_base);
        pkt->pos = -1;
        err = av_interleaved_write_frame(out.get(), pkt);  // takes the reference
        if (err < 0) {
            result.error = fmt::format("cannot write the clip: {}", ingest::av_error_string(err));
            std::remove(partial.c_str());
            return result;
        }
    }
    if ((err = av_write_trailer(out.get())) < 0) {
        result.error = fmt::format("cannot finish the clip: {}", ingest::av_error_string(err));
        std::remove(partial.c_str());
        return result;
    }
    // The last buffered bytes are written at the close: a full disk shows here, not before.
    if ((err = avio_closep(&out->pb)) < 0) {
        result.error = fmt::format("cannot finish the clip: {}", ingest::av_error_string(err));
        std::remove(partial.c_str());
        return result;
    }
    // Readable by the gateway's user and group only, as the snapshots are: FFmpeg creates the file
    // with the umask's mode, and clips of the staff at work were readable by every local user.
    std::error_code mode_error;
    std::filesystem::permissions(partial, std::filesystem::perms(0640),
                                 std::filesystem::perm_options::replace, mode_error);
    // On the disk before the rename, as snapshots are: after a power cut the name must not point
    // at an empty file whose report already reached the room.
    if (auto why = sync_file(partial)) {
        result.error = fmt::format("cannot flush the clip {} to the disk: {}", partial, *why);
        std::remove(partial.c_str());
        return result;
    }
    if (auto why = rename_file(partial, path)) {
        result.error = fmt::format("cannot rename {}: {}", partial, *why);
        std::remove(partial.c_str());
        return result;
    }
    // Whole and named: kept even if its folder cannot be flushed (said, for the log).
    if (auto why = sync_parent_folder(path)) result.warning = *why;
    std::error_code ec;
    result.ok = true;
    result.bytes = static_cast<std::size_t>(std::filesystem::file_size(path, ec));
    result.seconds = static_cast<double>(last_end) * av_q2d(span.time_base);
    return result;
}

ClipResult probe_mp4(const std::string& path) {
    ClipResult result;
    AVFormatContext* raw = nullptr;
    int err = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
    if (err < 0) {
        result.error = fmt::format("cannot read {}: {}", path, ingest::av_error_string(err));
        return result;
    }
    const ingest::FormatContextPtr in(raw);
    if ((err = avformat_find_stream_info(in.get(), nullptr)) < 0) {
        result.error = fmt::format("cannot read the streams of {}: {}", path, ingest::av_error_string(err));
        return result;
    }
    if (av_find_best_stream(in.get(), AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0) < 0) {
        result.error = fmt::format("{} holds no video", path);
        return result;
    }
    if (in->duration <= 0 || in->duration == AV_NOPTS_VALUE) {
        result.error = fmt::format("{} has no duration", path);
        return result;
    }
    std::error_code ec;
    result.bytes = static_cast<std::size_t>(std::filesystem::file_size(path, ec));
    if (ec) {
        result.error = fmt::format("cannot read the size of {}: {}", path, ec.message());
        return result;
    }
    result.seconds = static_cast<double>(in->duration) / AV_TIME_BASE;
    result.ok = true;
    return result;
}

}  // namespace kg::evidence
