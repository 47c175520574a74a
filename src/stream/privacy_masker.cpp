#include "stream/privacy_masker.hpp"

#include "ingest/picture_converter.hpp"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
}

#include <opencv2/imgproc.hpp>

namespace kg::stream {
namespace {

// Pixel blocks of this many output pixels: faces and text become unreadable, the room stays legible.
constexpr int kBlock = 16;

}  // namespace

PrivacyMasker::PrivacyMasker(PrivacyOptions options, ingest::PacketObserver& output,
                             std::shared_ptr<spdlog::logger> log)
    : options_(std::move(options)), output_(output), log_(std::move(log)) {
    options_.width = std::max(64, options_.width) & ~1;
    options_.fps = std::clamp(options_.fps, 1, 30);
}

PrivacyMasker::~PrivacyMasker() { close(); }

void PrivacyMasker::close() {
    if (output_open_) {
        output_.on_stream_closed();
        output_open_ = false;
    }
    avcodec_free_context(&decoder_);
    avcodec_free_context(&encoder_);
    converter_ = {};
    av_frame_free(&decoded_);
    av_frame_free(&scaled_);
    av_packet_free(&packet_);
    if (proxy_ != nullptr) {
        avformat_free_context(proxy_);
        proxy_ = nullptr;
    }
    src_w_ = src_h_ = 0;
    src_format_ = -1;
    streaming_ = false;
    have_last_ = false;
    last_out_pts_ = -1;
    last_key_ms_ = -1;
}

void PrivacyMasker::turn_off() {
    streaming_ = false;
    avcodec_free_context(&decoder_);
}

void PrivacyMasker::on_stream_opened(const AVStream& stream) {
    close();
    streaming_ = true;
    packet_ = av_packet_alloc();  // the encoder's output
    if (packet_ == nullptr) {
        log_->error("privacy mask: out of memory; the public feed of this camera stays off");
        return turn_off();
    }
    if (options_.frames_from_input) return;
    const AVCodec* codec = avcodec_find_decoder(stream.codecpar->codec_id);
    decoder_ = codec != nullptr ? avcodec_alloc_context3(codec) : nullptr;
    if (decoder_ == nullptr || avcodec_parameters_to_context(decoder_, stream.codecpar) < 0) {
        log_->error("privacy mask: no decoder for {}; the public feed of this camera stays off",
                    avcodec_get_name(stream.codecpar->codec_id));
        return turn_off();
    }
    decoder_->thread_count = 1;  // the box's other core belongs to the checks
    decoder_->pkt_timebase = stream.time_base;
    if (avcodec_open2(decoder_, codec, nullptr) < 0) {
        log_->error("privacy mask: cannot open the decoder");
        return turn_off();
    }
    decoded_ = av_frame_alloc();
    if (decoded_ == nullptr) {
        log_->error("privacy mask: out of memory; the public feed of this camera stays off");
        return turn_off();
    }
}

bool PrivacyMasker::open_encoder(const AVFrame& frame) {
    const int width = frame.width, height = frame.height;
    const AVCodec* codec = avcodec_find_encoder_by_name("libx264");
    if (codec == nullptr) codec = avcodec_find_encoder(AV_CODEC_ID_H264);
    if (codec == nullptr) {
        log_->error("privacy mask: no H.264 encoder in this FFmpeg");
        return false;
    }
    const int out_w = options_.width;
    const int out_h = std::max(2, static_cast<int>(static_cast<long>(out_w) * height / width) & ~1);
    encoder_ = avcodec_alloc_context3(codec);
    if (encoder_ == nullptr) {
        log_->error("privacy mask: out of memory for the H.264 encoder");
        return false;
    }
    encoder_->width = out_w;
    encoder_->height = out_h;
    encoder_->pix_fmt = AV_PIX_FMT_YUV420P;
    // The camera's colours, said in the stream: a browser reads an untagged HD picture as BT.709
    // and an SD one as BT.601, whatever the camera encoded. Written in limited range, as players
    // expect of yuv420p (the converter brings a full-range camera's picture to it). Tags that
    // change within a connection are not followed: the encoder would have to start again.
    ingest::PictureConverter::tag_encoder(*encoder_, frame);
    encoder_->time_base = AVRational{1, 1000};
    encoder_->framerate = AVRational{options_.fps, 1};
    encoder_->gop_size = options_.fps * 2;  // a key frame every 2 s: HLS segments and late joiners
    encoder_->max_b_frames = 0;
    encoder_->thread_count = 1;
    encoder_->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;  // FLV and fMP4 want the SPS/PPS up front
    av_opt_set(encoder_->priv_data, "preset", "veryfast", 0);
    av_opt_set(encoder_->priv_data, "tune", "zerolatency", 0);
    av_opt_set_int(encoder_->priv_data, "crf", options_.crf, 0);
    av_opt_set(encoder_->priv_data, "forced-idr", "1", 0);  // a forced key frame starts a segment
    if (avcodec_open2(encoder_, codec, nullptr) < 0) {
        log_->error("privacy mask: cannot open the H.264 encoder");
        return false;
    }
    scaled_ = av_frame_alloc();
    if (scaled_ == nullptr) return false;
    scaled_->format = AV_PIX_FMT_YUV420P;
    scaled_->width = out_w;
    scaled_->height = out_h;
    if (av_frame_get_buffer(scaled_, 0) < 0) return false;

    // The masks, rasterised once at the output size.
    luma_mask_ = cv::Mat::zeros(out_h, out_w, CV_8UC1);
    for (const auto& poly : options_.masks) {
        std::vector<cv::Point> pts;
        pts.reserve(poly.size());
        for (const auto& p : poly)
            // NOLINTNEXTLINE(bugprone-incorrect-roundings): points are within 0..1 (config), never negative
            pts.emplace_back(static_cast<int>(p.x * out_w + 0.5), static_cast<int>(p.y * out_h + 0.5));
        cv::fillPoly(luma_mask_, std::vector<std::vector<cv::Point>>{pts}, cv::Scalar(255));
    }
    cv::resize(luma_mask_, chroma_mask_, cv::Size(out_w / 2, out_h / 2), 0, 0, cv::INTER_NEAREST);
    // Only the masks' bounding box is pixelated, on block boundaries, so its blocks fall where they
    // would over the whole picture: a cash desk in a corner costs a corner.
    const cv::Rect box = cv::boundingRect(luma_mask_);
    const auto down = [](int v) { return v / kBlock * kBlock; };
    const auto up = [&](int v, int limit) { return std::min(limit, (v + kBlock - 1) / kBlock * kBlock); };
    const int x0 = down(box.x), y0 = down(box.y);
    const int x1 = up(box.x + box.width, out_w), y1 = up(box.y + box.height, out_h);
    regions_[0] = box.empty() ? cv::Rect() : cv::Rect(x0, y0, x1 - x0, y1 - y0);
    regions_[1] = box.empty() ? cv::Rect() : cv::Rect(x0 / 2, y0 / 2, x1 / 2 - x0 / 2, y1 / 2 - y0 / 2);

    proxy_ = avformat_alloc_context();
    AVStream* s = proxy_ != nullptr ? avformat_new_stream(proxy_, nullptr) : nullptr;
    if (s == nullptr || avcodec_parameters_from_context(s->codecpar, encoder_) < 0) return false;
    s->time_base = encoder_->time_base;
    s->avg_frame_rate = encoder_->framerate;
    output_.on_stream_opened(*s);
    output_open_ = true;
    log_->info("privacy mask: public feed re-encoded at {}x{}, {} fps, {} region(s) pixelated", out_w, out_h,
               options_.fps, options_.masks.size());
    return true;
}

void PrivacyMasker::on_packet(const AVPacket& packet, const AVStream& stream) {
    if (decoder_ == nullptr || !streaming_) return;
    if (avcodec_send_packet(decoder_, &packet) < 0) return;  // a damaged packet: the next key frame heals it
    while (avcodec_receive_frame(decoder_, decoded_) == 0) {
        handle(*decoded_, stream.time_base);
        av_frame_unref(decoded_);
        if (decoder_ == nullptr) return;
    }
}

void PrivacyMasker::on_frame(const AVFrame& frame, AVRational time_base) {
    if (options_.frames_from_input && streaming_) handle(frame, time_base);
}

void PrivacyMasker::close_encoder() {
    drain_encoder();
    if (output_open_) output_.on_stream_closed();
    output_open_ = false;
    avcodec_free_context(&encoder_);
    av_frame_free(&scaled_);
    if (proxy_ != nullptr) avformat_free_context(proxy_);
    proxy_ = nullptr;
}

void PrivacyMasker::handle(const AVFrame& frame, AVRational in_time_base) {
    const std::int64_t ts =
        frame.best_effort_timestamp != AV_NOPTS_VALUE ? frame.best_effort_timestamp : frame.pts;
    if (ts == AV_NOPTS_VALUE) return;
    const std::int64_t ms = av_rescale_q(ts, in_time_base, AVRational{1, 1000});
    // The frame rate cap keeps a cadence of output slots, one interval apart, and takes the first
    // picture near each slot. Measured from the last picture taken instead, a 25 fps camera under a
    // cap of 10 gave every third picture (8.3 a second), 15 fps every second (7.5). A quarter of an
    // interval early still counts, so that a camera at the cap's own rate with some jitter loses none.
    const std::int64_t interval = 1000 / options_.fps;
    if (have_last_ && ms >= last_ms_ && ms < next_due_ms_ - interval / 4) return;
    if (encoder_ == nullptr || frame.width != src_w_ || frame.height != src_h_ ||
        frame.format != src_format_) {
        if (encoder_ != nullptr) {
            log_->warn("privacy mask: the camera changed its picture size; restarting the encoder");
            close_encoder();
        }
        src_w_ = frame.width;
        src_h_ = frame.height;
        last_key_ms_ = -1;  // a new encoder starts on a key frame
        src_format_ = frame.format;
        if (!open_encoder(frame)) {
            log_->error("privacy mask: the public feed of this camera stays off");
            return turn_off();
        }
    }
    // The next slot follows the cadence, unless this picture came a whole interval late (frames
    // lost, a pause) or went back in time (a new clock): the cadence starts again from it.
    next_due_ms_ = have_last_ && ms >= last_ms_ && ms < next_due_ms_ + interval ? next_due_ms_ + interval
                                                                                : ms + interval;
    last_ms_ = ms;
    have_last_ = true;
    if (av_frame_make_writable(scaled_) < 0) return;
    if (!converter_.convert(frame, scaled_->width, scaled_->height, AV_PIX_FMT_YUV420P, scaled_->data,
                            scaled_->linesize)) {
        const char* format = av_get_pix_fmt_name(static_cast<AVPixelFormat>(frame.format));
        log_->error(
            "privacy mask: cannot convert the camera's pictures ({}); the public feed of this camera "
            "stays off",
            format != nullptr ? format : "unknown format");
        close_encoder();  // closed for its viewers, as at a size change, rather than left to stop
        return turn_off();
    }
    pixelate();
    if (ms <= last_out_pts_) return;  // the encoder refuses non-increasing timestamps
    last_out_pts_ = ms;
    scaled_->pts = ms;
    // A key frame every 2 s of the camera's time. gop_size counts frames: a camera sending 2 a
    // second got 10 s GOPs, segments as long, and players that poll once a segment lost their
    // place among the capped viewers between two polls.
    const bool key = last_key_ms_ < 0 || ms - last_key_ms_ >= kKeyEveryMs;
    scaled_->pict_type = key ? AV_PICTURE_TYPE_I : AV_PICTURE_TYPE_NONE;
    if (key) last_key_ms_ = ms;
    if (avcodec_send_frame(encoder_, scaled_) < 0) return;
    drain_encoder();
}

void PrivacyMasker::pixelate() {
    if (options_.masks.empty()) return;
    for (int plane = 0; plane < 3; ++plane) {
        const int kind = plane == 0 ? 0 : 1;  // luma, or one of the two chroma planes
        const cv::Rect& region = regions_[kind];
        if (region.empty()) return;
        const cv::Mat& mask = kind == 0 ? luma_mask_ : chroma_mask_;
        const cv::Mat view = cv::Mat(mask.rows, mask.cols, CV_8UC1, scaled_->data[plane],
                                     static_cast<std::size_t>(scaled_->linesize[plane]))(region);
        const int block = kind == 0 ? kBlock : kBlock / 2;
        // Into buffers of this plane kind's size, kept from frame to frame: no allocation per frame.
        cv::resize(view, small_[kind],
                   cv::Size(std::max(1, region.width / block), std::max(1, region.height / block)), 0, 0,
                   cv::INTER_AREA);
        cv::resize(small_[kind], mosaic_[kind], region.size(), 0, 0, cv::INTER_NEAREST);
        mosaic_[kind].copyTo(view, mask(region));
    }
}

void PrivacyMasker::drain_encoder() {
    while (avcodec_receive_packet(encoder_, packet_) == 0) {
        ++encoded_;
        output_.on_packet(*packet_, *proxy_->streams[0]);
        av_packet_unref(packet_);
    }
}

void PrivacyMasker::on_stream_closed() { close(); }

}  // namespace kg::stream
