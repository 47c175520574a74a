#include "stream/rtmp_pusher.hpp"

#include <fmt/format.h>

extern "C" {
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
}

#include "common/backoff.hpp"
#include "stream/flv_codecs.hpp"
#include "stream/muxable.hpp"

namespace kg::stream {
namespace {

// A few seconds of video at camera bit rates; beyond that the link is not keeping up.
constexpr std::size_t kMaxQueuedBytes = 8u << 20;

std::string without_secrets(const std::string& url) {
    // rtmp://user:pass@host/app/key -> rtmp://host/app/...: stream keys are credentials too.
    auto scheme = url.find("://");
    if (scheme == std::string::npos) return url;
    auto host = url.substr(scheme + 3);
    if (auto at = host.find('@'); at != std::string::npos && at < host.find('/')) host = host.substr(at + 1);
    if (auto slash = host.rfind('/'); slash != std::string::npos && slash != host.find('/')) {
        host = host.substr(0, slash) + "/...";
    }
    return url.substr(0, scheme + 3) + host;
}

std::string av_error(int rc) {
    char text[AV_ERROR_MAX_STRING_SIZE] = {};
    av_strerror(rc, text, sizeof(text));
    return text;
}

}  // namespace

void RtmpPusher::PacketDeleter::operator()(AVPacket* p) const { av_packet_free(&p); }
void RtmpPusher::ParamsDeleter::operator()(AVCodecParameters* p) const { avcodec_parameters_free(&p); }

RtmpPusher::RtmpPusher(std::string url, std::shared_ptr<spdlog::logger> log,
                       std::chrono::milliseconds restart_after)
    : url_(std::move(url)),
      restart_after_(restart_after),
      shown_url_(without_secrets(url_)),
      log_(std::move(log)) {
    thread_.start([this] { run(); });
}

RtmpPusher::~RtmpPusher() { thread_.stop(); }

void RtmpPusher::on_stream_opened(const AVStream& stream) {
    if (!flv_carries(stream.codecpar->codec_id)) {
        // Before, the push connected, failed the handshake ("Function not implemented") and tried
        // again at every key frame, forever: a media server hammered and a log that named no cause.
        if (!refused_) {
            log_->error(
                "RTMP push to {}: the camera sends {}, and RTMP carries H.264 only: nothing is pushed for "
                "this camera (set its stream to H.264 in the camera's settings; HLS still serves it)",
                shown_url_, codec_for_people(stream.codecpar->codec_id));
        }
        refused_ = true;
        return on_stream_closed();  // no stream to push
    }
    refused_ = false;
    if (const std::string why = unmuxable_reason(*stream.codecpar); !why.empty()) {
        // Connecting would only fail the handshake with "Invalid argument" at every reconnect.
        if (why != unmuxable_)
            log_->warn("RTMP push to {}: {}; nothing is pushed until the next connection", shown_url_, why);
        unmuxable_ = why;
        return on_stream_closed();
    }
    unmuxable_.clear();
    std::shared_ptr<AVCodecParameters> params(avcodec_parameters_alloc(), ParamsDeleter{});
    if (!params || avcodec_parameters_copy(params.get(), stream.codecpar) < 0) return;
    {
        std::lock_guard lock(mutex_);
        params_ = std::move(params);
        time_base_ = stream.time_base;
        ++generation_;
        queue_.clear();
        queued_bytes_ = 0;
        wait_key_ = true;
    }
    thread_.wake();
}

void RtmpPusher::on_stream_closed() {
    {
        std::lock_guard lock(mutex_);
        params_.reset();
        ++generation_;
        queue_.clear();
        queued_bytes_ = 0;
    }
    thread_.wake();
}

void RtmpPusher::on_packet(const AVPacket& packet, const AVStream&) {
    const bool key = (packet.flags & AV_PKT_FLAG_KEY) != 0;
    {
        std::lock_guard lock(mutex_);
        if (!params_) return;
        if (packet.dts == AV_NOPTS_VALUE || (wait_key_ && !starts_output(packet))) {
            dropped_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        if (queued_bytes_ + static_cast<std::size_t>(packet.size) > kMaxQueuedBytes) {
            // The media server is not keeping up (or not there): drop what waits and resume at a key
            // frame, so what it gets later still decodes.
            dropped_.fetch_add(queue_.size() + 1, std::memory_order_relaxed);
            queue_.clear();
            queued_bytes_ = 0;
            wait_key_ = true;
            if (!key) return;
        }
        PacketPtr copy(av_packet_clone(&packet));
        if (!copy) return;
        wait_key_ = false;
        queued_bytes_ += static_cast<std::size_t>(copy->size);
        queue_.push_back(std::move(copy));
    }
    thread_.wake();
}

void RtmpPusher::run() {
    Backoff backoff(std::chrono::seconds(1), std::chrono::seconds(30));
    while (!thread_.stopping()) {
        std::shared_ptr<AVCodecParameters> params;
        AVRational time_base{};
        int generation = 0;
        {
            std::lock_guard lock(mutex_);
            params = params_;
            time_base = time_base_;
            generation = generation_;
        }
        if (!params) {
            thread_.wait_for(std::chrono::seconds(1));
            continue;
        }
        const auto began = std::chrono::steady_clock::now();
        const bool again = push_once(params, time_base, generation);
        connected_ = false;
        if (thread_.stopping()) break;
        if (again) {
            backoff.reset();  // a push that ran for weeks: a failing re-publish starts its back-off afresh
            continue;
        }
        if (std::chrono::steady_clock::now() - began > std::chrono::seconds(30)) backoff.reset();
        {
            std::lock_guard lock(mutex_);
            if (generation != generation_) continue;  // the camera reconnected: start again at once
            queue_.clear();
            queued_bytes_ = 0;
            wait_key_ = true;
        }
        // on_packet wakes this thread at every key frame to send it; during the back-off that must not
        // cut the wait short (it did: a push to a server that was gone was tried again at every key
        // frame, every 2 s on most cameras, never backing off to 30 s). A camera that reconnected
        // still starts a push at once.
        const auto until = std::chrono::steady_clock::now() + backoff.next();
        for (auto now = std::chrono::steady_clock::now(); now < until && !thread_.stopping();
             now = std::chrono::steady_clock::now()) {
            {
                std::lock_guard lock(mutex_);
                if (generation != generation_) break;
            }
            thread_.wait_for(until - now);
        }
    }
}

bool RtmpPusher::push_once(const std::shared_ptr<AVCodecParameters>& params, AVRational time_base,
                           int generation) {
    AVFormatContext* out = nullptr;
    if (avformat_alloc_output_context2(&out, nullptr, "flv", url_.c_str()) < 0 || out == nullptr) {
        log_->error("RTMP push to {}: cannot create the muxer", shown_url_);
        return false;
    }
    std::unique_ptr<AVFormatContext, void (*)(AVFormatContext*)> guard(out, [](AVFormatContext* c) {
        if (c->pb != nullptr) avio_closep(&c->pb);
        avformat_free_context(c);
    });
    AVStream* s = avformat_new_stream(out, nullptr);
    if (s == nullptr || avcodec_parameters_copy(s->codecpar, params.get()) < 0) return false;
    s->codecpar->codec_tag = 0;
    s->time_base = AVRational{1, 1000};
    out->interrupt_callback.callback = [](void* self) -> int {
        return static_cast<RtmpPusher*>(self)->thread_.stopping() ? 1 : 0;
    };
    out->interrupt_callback.opaque = this;
    AVDictionary* options = nullptr;
    av_dict_set(&options, "rw_timeout", "10000000", 0);  // 10 s: a silent server is a failed one
    int rc = avio_open2(&out->pb, url_.c_str(), AVIO_FLAG_WRITE, &out->interrupt_callback, &options);
    av_dict_free(&options);
    if (rc < 0) {
        log_->warn("RTMP push to {}: cannot connect: {}", shown_url_, av_error(rc));
        return false;
    }
    av_opt_set(out->priv_data, "flvflags", "no_duration_filesize", 0);
    if ((rc = avformat_write_header(out, nullptr)) < 0) {
        log_->warn("RTMP push to {}: handshake failed: {}", shown_url_, av_error(rc));
        return false;
    }
    connects_.fetch_add(1, std::memory_order_relaxed);
    connected_ = true;
    log_->info("RTMP push to {}: connected", shown_url_);
    std::int64_t last_dts = AV_NOPTS_VALUE;
    FlvClock clock(restart_after_);
    std::deque<PacketPtr> batch;
    while (!thread_.stopping()) {
        {
            std::lock_guard lock(mutex_);
            if (generation != generation_) break;
            batch.swap(queue_);
            queued_bytes_ = 0;
        }
        if (batch.empty()) {
            thread_.wait_for(std::chrono::milliseconds(200));
            continue;
        }
        for (auto it = batch.begin(); it != batch.end(); ++it) {
            auto& p = *it;
            if (clock.due(*p)) {
                // The key frame and what follows it go back to the queue's head: the next push starts
                // with them, at once.
                {
                    std::lock_guard lock(mutex_);
                    if (generation == generation_) {
                        for (auto back = batch.end(); back != it;) {
                            --back;
                            queued_bytes_ += static_cast<std::size_t>((*back)->size);
                            queue_.push_front(std::move(*back));
                        }
                    }
                }
                av_write_trailer(out);
                log_->info("RTMP push to {}: starting over after {} days, before FLV's times wrap at 24.8",
                           shown_url_,
                           std::chrono::duration_cast<std::chrono::hours>(restart_after_).count() / 24.0);
                return true;
            }
            if (!muxable(*p, last_dts)) continue;
            if (clock.idle()) clock.start(*p, time_base);  // the first packet: a key frame
            p->stream_index = 0;
            clock.place(*p);
            av_packet_rescale_ts(p.get(), time_base, s->time_base);
            if ((rc = av_interleaved_write_frame(out, p.get())) < 0) {
                log_->warn("RTMP push to {}: write failed: {}; reconnecting", shown_url_, av_error(rc));
                return false;
            }
            sent_.fetch_add(1, std::memory_order_relaxed);
        }
        batch.clear();
    }
    av_write_trailer(out);
    return false;
}

}  // namespace kg::stream
