#pragma once
// Privacy masks for the public feed of one camera: regions the public must not see (a cash desk,
// a staff door) are pixelated before anything leaves for the public side. This is the only place the
// public side decodes and re-encodes: the camera's packets are decoded, scaled down (a phone needs
// no more), the regions pixelated, and the frames encoded again with libx264 at a low frame rate.
// The pictures are the ingest's own (frames_from_input): the camera is decoded once, for the checks
// and for the mask; only a camera analysed on its key frames alone is decoded here a second time.
// Its output is a packet stream like a camera's, handed to the HLS/FLV/RTMP outputs. Runs on the
// ingest thread of that one camera; its CPU cost is measured in docs/performance.md.

#include <spdlog/logger.h>

#include <memory>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "ingest/ffmpeg_input.hpp"
#include "rules/zones.hpp"

struct AVCodecContext;
struct AVFrame;

namespace kg::stream {

struct PrivacyOptions {
    std::vector<rules::Polygon> masks;  // normalised coordinates
    int width = 640;                    // output width; height keeps the aspect ratio
    int fps = 10;                       // output frame rate cap
    int crf = 28;                       // x264 quality (higher: smaller)
    // The pictures come decoded through on_frame() (FfmpegInput's frame observer): no decoder here.
    // Else the masker decodes the packets itself.
    bool frames_from_input = false;
    bool operator==(const PrivacyOptions&) const = default;
};

class PrivacyMasker final : public ingest::PacketObserver, public ingest::FrameObserver {
public:
    PrivacyMasker(PrivacyOptions options, ingest::PacketObserver& output,
                  std::shared_ptr<spdlog::logger> log);
    ~PrivacyMasker() override;
    PrivacyMasker(const PrivacyMasker&) = delete;
    PrivacyMasker& operator=(const PrivacyMasker&) = delete;

    void on_stream_opened(const AVStream& stream) override;
    void on_packet(const AVPacket& packet, const AVStream& stream) override;
    void on_stream_closed() override;
    void on_frame(const AVFrame& frame, AVRational time_base) override;

    std::uint64_t frames_encoded() const { return encoded_; }

private:
    void close();
    bool open_encoder(const AVFrame& frame);  // its size, format and colour tagging
    void handle(const AVFrame& decoded, AVRational in_time_base);
    // The feed cannot be made of this stream (no decoder, no encoder, pictures it cannot convert):
    // off until the next one, said once.
    void turn_off();
    void pixelate();
    void drain_encoder();
    // Ends the output for its viewers and frees the encoder and what it wrote into.
    void close_encoder();

    PrivacyOptions options_;
    ingest::PacketObserver& output_;
    std::shared_ptr<spdlog::logger> log_;

    AVCodecContext* decoder_ = nullptr;
    AVCodecContext* encoder_ = nullptr;
    ingest::PictureConverter converter_;
    AVFrame* decoded_ = nullptr;
    AVFrame* scaled_ = nullptr;
    AVPacket* packet_ = nullptr;
    AVFormatContext* proxy_ = nullptr;  // holds the AVStream that describes our output
    bool output_open_ = false;
    bool streaming_ = false;  // between on_stream_opened and on_stream_closed, and not turned off
    int src_w_ = 0, src_h_ = 0, src_format_ = -1;
    std::int64_t last_ms_ = 0;      // the last picture taken, on the camera's clock
    std::int64_t next_due_ms_ = 0;  // the frame rate cap's next output slot
    bool have_last_ = false;
    std::int64_t last_out_pts_ = -1;
    static constexpr std::int64_t kKeyEveryMs = 2000;
    std::int64_t last_key_ms_ = -1;    // the last forced key frame, on the output's clock
    cv::Mat luma_mask_, chroma_mask_;  // at the output size, made once per size
    cv::Rect regions_[2];              // the masks' block-aligned bounding box: luma, chroma
    cv::Mat small_[2], mosaic_[2];     // pixelation buffers, luma and chroma, reused every frame
    std::uint64_t encoded_ = 0;
};

}  // namespace kg::stream
