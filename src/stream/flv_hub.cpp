#include "stream/flv_hub.hpp"

#include "stream/flv_codecs.hpp"
#include "stream/muxable.hpp"

extern "C" {
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
}

#include <algorithm>

namespace kg::stream {
namespace {

// A GOP larger than this is not cached (a camera with a very long key-frame interval): new viewers
// then wait for the next key frame instead of the gateway holding unbounded memory.
constexpr std::size_t kMaxGopBytes = 16u << 20;
constexpr int kIoBufferSize = 64 * 1024;

int write_cb(void* opaque, std::uint8_t* buf, int size) {
    static_cast<FlvHub*>(opaque)->append(buf, size);
    return size;
}

}  // namespace

FlvHub::FlvHub(std::string camera, std::shared_ptr<spdlog::logger> log,
               std::chrono::milliseconds restart_after)
    : camera_(std::move(camera)), log_(std::move(log)), clock_(restart_after), last_dts_(AV_NOPTS_VALUE) {}

FlvHub::~FlvHub() {
    close();
    disconnect_all();
}

void FlvHub::close() {
    if (out_ != nullptr) {
        avformat_free_context(out_);
        out_ = nullptr;
    }
    if (io_ != nullptr) {
        av_freep(&io_->buffer);
        avio_context_free(&io_);
    }
    av_packet_free(&packet_);
    started_ = false;
    pending_.clear();
    std::lock_guard lock(mutex_);
    header_.reset();
    gop_.clear();
    gop_bytes_ = 0;
}

void FlvHub::on_stream_opened(const AVStream& stream) {
    close();
    failures_ = 0;
    disconnect_all();  // a new connection may bring new parameters: players must start over
    const AVCodecID codec = stream.codecpar->codec_id;
    const std::string refused = flv_carries(codec) ? std::string() : codec_for_people(codec);
    bool changed = false;
    {
        std::lock_guard lock(mutex_);
        changed = refused != refused_codec_;
        refused_codec_ = refused;
    }
    if (!refused.empty()) {
        // Said once, not again at every reconnect of the same camera.
        if (changed) {
            log_->warn(
                "HTTP-FLV for {}: the camera sends {}, FLV carries H.264 only; its viewers are refused "
                "with that reason; HLS still works",
                camera_, refused);
        }
        return;
    }
    const std::string why = unmuxable_reason(*stream.codecpar);
    if (!why.empty()) {
        if (why != unmuxable_)
            log_->warn("HTTP-FLV for {}: {}; its viewers wait for the next connection", camera_, why);
        unmuxable_ = why;
        return;
    }
    unmuxable_.clear();
    open_muxer(*stream.codecpar);
}

void FlvHub::open_muxer(const AVCodecParameters& params) {
    if (avformat_alloc_output_context2(&out_, nullptr, "flv", nullptr) < 0 || out_ == nullptr) {
        out_ = nullptr;
        log_->error("HTTP-FLV for {}: cannot create the muxer", camera_);
        return;
    }
    AVStream* s = avformat_new_stream(out_, nullptr);
    if (s == nullptr || avcodec_parameters_copy(s->codecpar, &params) < 0) {
        log_->error("HTTP-FLV for {}: cannot describe the stream", camera_);
        return close();
    }
    s->codecpar->codec_tag = 0;
    s->time_base = AVRational{1, 1000};
    auto* buffer = static_cast<std::uint8_t*>(av_malloc(kIoBufferSize));
    io_ = buffer != nullptr ? avio_alloc_context(buffer, kIoBufferSize, 1, this, nullptr, write_cb, nullptr)
                            : nullptr;
    if (io_ == nullptr) {
        av_free(buffer);
        return close();
    }
    io_->seekable = 0;
    out_->pb = io_;
    out_->flags |= AVFMT_FLAG_CUSTOM_IO;
    // A live stream has no duration or size to go back and fill in.
    av_opt_set(out_->priv_data, "flvflags", "no_duration_filesize", 0);
    packet_ = av_packet_alloc();
    if (packet_ == nullptr) {
        log_->error("HTTP-FLV for {}: out of memory for the muxer's packet", camera_);
        return close();
    }
    last_dts_ = AV_NOPTS_VALUE;
    clock_.reset();
}

web::Chunk FlvHub::take_pending() {
    auto chunk = std::make_shared<const std::string>(std::move(pending_));
    pending_ = std::string();
    return chunk;
}

void FlvHub::on_packet(const AVPacket& packet, const AVStream& stream) {
    if (out_ == nullptr) return;
    const bool key = (packet.flags & AV_PKT_FLAG_KEY) != 0;
    if (started_ && clock_.due(packet)) {
        log_->info(
            "HTTP-FLV for {}: starting over after {} days of one connection, before FLV's times wrap at "
            "24.8; "
            "its viewers reconnect",
            camera_, std::chrono::duration_cast<std::chrono::hours>(clock_.restart_after()).count() / 24.0);
        end_stream();
        close();
        open_muxer(*stream.codecpar);
        if (out_ == nullptr) return;
    }
    if (!started_) {
        if (!starts_output(packet)) return;  // viewers must start on a key frame
        if (avformat_write_header(out_, nullptr) < 0) return fail(stream, "cannot write the header");
        clock_.start(packet, stream.time_base);
        avio_flush(io_);
        auto header = take_pending();
        std::lock_guard lock(mutex_);
        header_ = std::move(header);
        started_ = true;
    }
    if (!muxable(packet, last_dts_)) return;
    if (av_packet_ref(packet_, &packet) < 0) return;
    packet_->stream_index = 0;
    clock_.place(*packet_);
    av_packet_rescale_ts(packet_, stream.time_base, out_->streams[0]->time_base);
    const int rc = av_write_frame(out_, packet_);
    av_packet_unref(packet_);
    if (rc < 0) return fail(stream, "mux error");
    if (key) failures_ = 0;  // a GOP begun well
    avio_flush(io_);
    if (pending_.empty()) return;
    auto tag = take_pending();
    // One critical section for the GOP and the viewers: a viewer subscribing in between would get
    // this tag twice, once with the GOP and once broadcast.
    std::lock_guard lock(mutex_);
    {
        if (key) {
            gop_.clear();
            gop_bytes_ = 0;
        }
        if (key || !gop_.empty()) {
            if (gop_bytes_ + tag->size() <= kMaxGopBytes) {
                gop_.push_back(tag);
                gop_bytes_ += tag->size();
            } else {
                // A GOP this large is not held: part of one would give a new viewer a picture with
                // a hole. Viewers joining before the next key frame wait for it instead.
                gop_.clear();
                gop_bytes_ = 0;
            }
        }
    }
    broadcast_locked(tag, key);
}

void FlvHub::fail(const AVStream& stream, const char* what) {
    // Its viewers end (their players reconnect), and the stream starts again at the next key frame:
    // it waited for the camera's next connection, weeks on a camera that stays up, and WeChat's
    // viewers, FLV only, got 503 all that time. One packet FLV cannot carry (16 MiB or more) does
    // not stop it; ten failures in a row without a GOP begun well do, until the next connection.
    end_stream();
    close();
    if (++failures_ >= kMaxFailures) {
        log_->error("HTTP-FLV for {}: {}, {} times in a row; restarting at the next connection", camera_,
                    what, failures_);
        return;
    }
    log_->log(failures_ == 1 ? spdlog::level::warn : spdlog::level::debug,
              "HTTP-FLV for {}: {}; starting again at the next key frame", camera_, what);
    open_muxer(*stream.codecpar);
}

void FlvHub::broadcast_locked(const web::Chunk& chunk, bool key) {
    // A viewer whose queue overflowed or who left is dropped here.
    std::erase_if(viewers_, [&](Viewer& v) {
        if (v.waiting_for_key && !key) return v.stream->finished();
        v.waiting_for_key = false;
        return !v.stream->push(chunk);
    });
}

std::shared_ptr<web::LiveStream> FlvHub::subscribe(std::size_t max_queued_bytes) {
    std::lock_guard lock(mutex_);
    if (!header_) return nullptr;
    auto stream = std::make_shared<web::LiveStream>(max_queued_bytes);
    // The GOP so far starts the picture at once, when it fits well within the viewer's queue;
    // pushed whole into a smaller queue it would overflow it, and the viewer was refused.
    const bool whole = !gop_.empty() && header_->size() + gop_bytes_ <= max_queued_bytes / 2;
    if (!stream->push(header_)) return nullptr;
    if (whole) {
        for (const auto& tag : gop_) stream->push(tag);
    }
    viewers_.push_back({stream, !whole});
    return stream;
}

std::string FlvHub::refused_codec() const {
    std::lock_guard lock(mutex_);
    return refused_codec_;
}

bool FlvHub::live() const {
    std::lock_guard lock(mutex_);
    return header_ != nullptr;
}

std::size_t FlvHub::viewers() const {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(
        std::count_if(viewers_.begin(), viewers_.end(), [](const auto& v) { return !v.stream->finished(); }));
}

void FlvHub::disconnect_all() {
    std::lock_guard lock(mutex_);
    for (auto& v : viewers_) v.stream->finish();
    viewers_.clear();
}

void FlvHub::end_stream() {
    std::lock_guard lock(mutex_);
    for (auto& v : viewers_) v.stream->finish();
    viewers_.clear();
    // In the same critical section: a viewer subscribing after this is refused, not given the
    // ending stream's header and then nothing, holding a connection until the camera's next one.
    header_.reset();
    gop_.clear();
    gop_bytes_ = 0;
}

void FlvHub::on_stream_closed() {
    end_stream();
    close();
}

}  // namespace kg::stream
