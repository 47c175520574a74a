#pragma once
// HTTP-FLV for one public camera: the camera's own packets muxed once into FLV (no decode, no
// encode) and the same bytes fanned out to every viewer. A viewer that joins gets the FLV header
// and sequence header, then the current GOP from its key frame, so it starts at once. This is the
// format WeChat mini-program `live-player` and flv.js play. FLV carries H.264 only: a camera sending
// anything else (H.265, as many do by default) has no HTTP-FLV, and the hub says so (refused_codec)
// for the HTTP side to tell viewers at once. Fed on the ingest thread.

#include <spdlog/logger.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ingest/ffmpeg_input.hpp"
#include "stream/flv_clock.hpp"
#include "web/live_stream.hpp"

struct AVIOContext;

namespace kg::stream {

class FlvHub final : public ingest::PacketObserver {
public:
    // `restart_after`: how long one connection is muxed before the hub starts over (flv_clock.hpp).
    FlvHub(std::string camera, std::shared_ptr<spdlog::logger> log,
           std::chrono::milliseconds restart_after = FlvClock::kRestartAfter);
    ~FlvHub() override;
    FlvHub(const FlvHub&) = delete;
    FlvHub& operator=(const FlvHub&) = delete;

    void on_stream_opened(const AVStream& stream) override;
    void on_packet(const AVPacket& packet, const AVStream& stream) override;
    void on_stream_closed() override;

    // From the HTTP side (any thread): a new viewer. Null when the stream is not live yet.
    std::shared_ptr<web::LiveStream> subscribe(std::size_t max_queued_bytes);
    std::size_t viewers() const;
    // Whether subscribe() would give a stream now (any thread).
    bool live() const;
    // Ends every viewer's stream (the feed closes: public hours over, shutdown).
    void disconnect_all();
    // The codec of the camera's last connection when FLV cannot carry it, for people ("H.265
    // (HEVC)"); empty when it can or before the first connection (any thread).
    std::string refused_codec() const;

    // Internal: the AVIO write callback appends here.
    void append(const std::uint8_t* data, int size) {
        pending_.append(reinterpret_cast<const char*>(data), size);
    }

private:
    void close();
    void open_muxer(const AVCodecParameters& params);
    // After a failed header or packet: ends the viewers and starts again at the next key frame.
    void fail(const AVStream& stream, const char* what);
    web::Chunk take_pending();
    void broadcast_locked(const web::Chunk& chunk, bool key);  // mutex_ held
    // Ends every viewer and the stream itself (header and GOP) in one critical section.
    void end_stream();

    std::string camera_;
    std::shared_ptr<spdlog::logger> log_;
    // Muxer state, ingest thread only.
    AVFormatContext* out_ = nullptr;
    AVIOContext* io_ = nullptr;
    AVPacket* packet_ = nullptr;
    bool started_ = false;
    static constexpr int kMaxFailures = 10;
    int failures_ = 0;  // failed headers or packets since a key frame was written
    FlvClock clock_;
    std::int64_t last_dts_;
    std::string pending_;

    // Shared with subscribers.
    mutable std::mutex mutex_;
    web::Chunk header_;            // FLV header + metadata + sequence header; null: not live
    std::vector<web::Chunk> gop_;  // tags since the last key frame
    std::size_t gop_bytes_ = 0;
    struct Viewer {
        std::shared_ptr<web::LiveStream> stream;
        // Joined when the GOP so far would not fit its queue (or was not held whole): it gets the
        // header, then nothing until the next key frame, so its picture starts clean.
        bool waiting_for_key = false;
    };
    std::vector<Viewer> viewers_;
    std::string refused_codec_;
    std::string unmuxable_;  // ingest thread only: why the last connection's stream had no FLV (logged)
};

}  // namespace kg::stream
