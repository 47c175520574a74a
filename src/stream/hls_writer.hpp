#pragma once
// A live HLS rendition of one camera for the public side: the camera's own H.264/H.265 packets
// segmented by FFmpeg's HLS muxer (no decode, no encode) into fragmented-MP4 segments in a folder
// on tmpfs, a short sliding playlist with old segments deleted. Fed on the ingest thread; a muxer error
// disables the output until the camera's next connection, never the camera.

#include <spdlog/logger.h>

#include <atomic>
#include <memory>
#include <string>

#include "ingest/ffmpeg_input.hpp"

namespace kg::stream {

class HlsWriter final : public ingest::PacketObserver {
public:
    HlsWriter(std::string folder, int segment_seconds, std::shared_ptr<spdlog::logger> log);
    ~HlsWriter() override;

    void on_stream_opened(const AVStream& stream) override;
    void on_packet(const AVPacket& packet, const AVStream& stream) override;
    void on_stream_closed() override;

    const std::string& folder() const { return folder_; }

    bool live() const { return started_.load(); }

private:
    void close();
    void clear_folder();

    std::string folder_;
    int segment_seconds_;
    std::shared_ptr<spdlog::logger> log_;
    AVFormatContext* out_ = nullptr;
    AVPacket* packet_ = nullptr;
    std::atomic<bool> started_{false};  // false: waiting for the first key frame
    std::int64_t last_dts_ = AV_NOPTS_VALUE;
    int generation_ = 0;  // bumps on every reconnect: segment names never repeat
};

}  // namespace kg::stream
