#include "stream/public_feed.hpp"

extern "C" {
#include <libavformat/avformat.h>
}

namespace kg::stream {

PublicFeed::PublicFeed(FeedOptions options, std::shared_ptr<spdlog::logger> log)
    : options_(std::move(options)),
      log_(std::move(log)),
      hls_(options_.hls_folder, options_.segment_seconds, log_),
      flv_(options_.camera, log_) {
    outputs_.add(&hls_);
    outputs_.add(&flv_);
    if (!options_.rtmp_url.empty()) {
        rtmp_ = std::make_unique<RtmpPusher>(options_.rtmp_url, log_);
        outputs_.add(rtmp_.get());
    }
    if (options_.privacy) {
        masker_ = std::make_unique<PrivacyMasker>(*options_.privacy, outputs_, log_);
        entry_ = masker_.get();
    } else {
        entry_ = &outputs_;
    }
}

PublicFeed::~PublicFeed() {
    if (last_stream_ != nullptr) avformat_free_context(last_stream_);
}

void PublicFeed::remember(const AVStream& stream) {
    if (last_stream_ != nullptr) avformat_free_context(last_stream_);
    last_stream_ = avformat_alloc_context();
    AVStream* copy = last_stream_ != nullptr ? avformat_new_stream(last_stream_, nullptr) : nullptr;
    if (copy == nullptr || avcodec_parameters_copy(copy->codecpar, stream.codecpar) < 0) {
        if (last_stream_ != nullptr) avformat_free_context(last_stream_);
        last_stream_ = nullptr;
        return;
    }
    copy->time_base = stream.time_base;
    copy->avg_frame_rate = stream.avg_frame_rate;
    copy->r_frame_rate = stream.r_frame_rate;
}

void PublicFeed::on_stream_opened(const AVStream& stream) {
    remember(stream);
    is_open_ = want_open_.load();
    if (is_open_) entry_->on_stream_opened(stream);
}

void PublicFeed::on_packet(const AVPacket& packet, const AVStream& stream) {
    const bool want = want_open_.load();
    if (want != is_open_) {
        is_open_ = want;
        if (want) {
            log_->info("public feed open (public hours)");
            if (last_stream_ != nullptr) entry_->on_stream_opened(*last_stream_->streams[0]);
        } else {
            log_->info("public feed closed (outside public hours)");
            entry_->on_stream_closed();
        }
    }
    if (is_open_) entry_->on_packet(packet, stream);
}

void PublicFeed::on_frame(const AVFrame& frame, AVRational time_base) {
    // After the packet it was decoded from, which opened or closed the feed for the public hours.
    if (is_open_ && masker_ != nullptr) masker_->on_frame(frame, time_base);
}

void PublicFeed::on_stream_closed() {
    if (is_open_) entry_->on_stream_closed();
}

}  // namespace kg::stream
