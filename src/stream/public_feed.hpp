#pragma once
// Everything the public sees of one camera: HLS (fMP4), HTTP-FLV and an optional RTMP push, all
// from the camera's own packets, or from the privacy masker's re-encoded ones when the camera has
// privacy masks. The feed is open only within public hours: closing it ends every output and
// removes the HLS files, so nothing of the kitchen is served outside them. Fed on the ingest
// thread; opened and closed from any thread.

#include <spdlog/logger.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "ingest/packet_fanout.hpp"
#include "stream/flv_hub.hpp"
#include "stream/hls_writer.hpp"
#include "stream/privacy_masker.hpp"
#include "stream/rtmp_pusher.hpp"

namespace kg::stream {

struct FeedOptions {
    std::string camera;
    std::string hls_folder;
    int segment_seconds = 2;
    std::string rtmp_url;                   // empty: no push
    std::optional<PrivacyOptions> privacy;  // set: decode, pixelate, re-encode
    bool operator==(const FeedOptions&) const = default;
};

class PublicFeed final : public ingest::PacketObserver, public ingest::FrameObserver {
public:
    PublicFeed(FeedOptions options, std::shared_ptr<spdlog::logger> log);
    ~PublicFeed() override;
    PublicFeed(const PublicFeed&) = delete;
    PublicFeed& operator=(const PublicFeed&) = delete;

    void on_stream_opened(const AVStream& stream) override;
    void on_packet(const AVPacket& packet, const AVStream& stream) override;
    void on_stream_closed() override;
    // The camera's decoded pictures, for the privacy masker when it takes them from the ingest
    // (PrivacyOptions::frames_from_input); ignored otherwise.
    void on_frame(const AVFrame& frame, AVRational time_base) override;

    // Public hours: takes effect at the camera's next packet (any thread).
    void set_open(bool open) { want_open_ = open; }
    bool open() const { return want_open_.load(); }

    const std::string& camera() const { return options_.camera; }
    const std::string& hls_folder() const { return hls_.folder(); }
    bool hls_live() const { return hls_.live(); }
    FlvHub& flv() { return flv_; }
    const FlvHub& flv() const { return flv_; }
    const RtmpPusher* rtmp() const { return rtmp_.get(); }
    bool reencoded() const { return masker_ != nullptr; }

private:
    void remember(const AVStream& stream);

    FeedOptions options_;
    std::shared_ptr<spdlog::logger> log_;
    HlsWriter hls_;
    FlvHub flv_;
    std::unique_ptr<RtmpPusher> rtmp_;
    ingest::PacketFanout outputs_;
    std::unique_ptr<PrivacyMasker> masker_;
    ingest::PacketObserver* entry_ = nullptr;  // the masker, or the outputs directly

    std::atomic<bool> want_open_{true};
    // Ingest thread only.
    bool is_open_ = true;
    AVFormatContext* last_stream_ = nullptr;  // a copy of the camera's stream, to reopen the outputs
};

}  // namespace kg::stream
