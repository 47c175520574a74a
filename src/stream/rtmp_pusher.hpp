#pragma once
// Pushes one public camera's own packets (no decode, no encode) to a media server over RTMP, so a
// city-scale deployment serves parents from its media servers, not from the edge box. The ingest
// thread only queues packets; a thread of this object connects, writes and reconnects with back-off,
// so a slow or unreachable media server never stalls the camera. When the queue is full the pusher
// drops to the next key frame. RTMP carries H.264 only (stream/flv_codecs.hpp): a camera sending
// H.265 is not pushed at all, said once in the log, instead of failing the media server's handshake
// again and again.

#include <spdlog/logger.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "common/worker_thread.hpp"
#include "ingest/ffmpeg_input.hpp"
#include "stream/flv_clock.hpp"

struct AVCodecParameters;

namespace kg::stream {

class RtmpPusher final : public ingest::PacketObserver {
public:
    // `restart_after`: how long one push runs before it starts over (flv_clock.hpp).
    RtmpPusher(std::string url, std::shared_ptr<spdlog::logger> log,
               std::chrono::milliseconds restart_after = FlvClock::kRestartAfter);
    ~RtmpPusher() override;
    RtmpPusher(const RtmpPusher&) = delete;
    RtmpPusher& operator=(const RtmpPusher&) = delete;

    void on_stream_opened(const AVStream& stream) override;
    void on_packet(const AVPacket& packet, const AVStream& stream) override;
    void on_stream_closed() override;

    bool connected() const { return connected_.load(); }
    std::uint64_t packets_sent() const { return sent_.load(); }
    std::uint64_t packets_dropped() const { return dropped_.load(); }
    std::uint64_t connects() const { return connects_.load(); }

private:
    struct PacketDeleter {
        void operator()(AVPacket* p) const;
    };
    using PacketPtr = std::unique_ptr<AVPacket, PacketDeleter>;
    struct ParamsDeleter {
        void operator()(AVCodecParameters* p) const;
    };

    void run();
    // One connection: returns when it fails, the stream changes or the pusher stops (false), or when
    // it ran `restart_after_` and starts over at a key frame, which waits at the queue's head (true).
    bool push_once(const std::shared_ptr<AVCodecParameters>& params, AVRational time_base, int generation);

    std::string url_;
    std::chrono::milliseconds restart_after_;
    std::string shown_url_;  // without credentials or stream key
    std::shared_ptr<spdlog::logger> log_;

    std::mutex mutex_;
    std::deque<PacketPtr> queue_;
    std::size_t queued_bytes_ = 0;
    bool wait_key_ = true;                       // after a drop, nothing until the next key frame
    std::shared_ptr<AVCodecParameters> params_;  // null: no stream
    AVRational time_base_{1, 1000};
    int generation_ = 0;
    bool refused_ = false;   // ingest thread only: the camera's codec cannot go over RTMP (logged)
    std::string unmuxable_;  // ingest thread only: why the last connection's stream cannot be pushed

    std::atomic<bool> connected_{false};
    std::atomic<std::uint64_t> sent_{0}, dropped_{0}, connects_{0};
    WorkerThread thread_;
};

}  // namespace kg::stream
