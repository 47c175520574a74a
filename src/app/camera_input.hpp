#pragma once
// One camera's connection and what is fed from it without the analysis: the ingest worker with its
// counters and newest picture, and the parents' feed (HLS, HTTP-FLV, the RTMP push). A reload hands
// it from one run's pipeline of the camera to the next's when the next fetches, samples and shows the
// camera alike (CameraInput::Spec): the camera is not connected to again, and a parent's stream goes
// on, its playlist's numbers and init segment kept, instead of `503 the stream is starting` for the
// seconds the camera took to answer and a discontinuity after (MediaMTX keeps an unchanged path so
// at a reload). The clip ring and the analysis belong to the pipeline: attached and detached here.

#include <spdlog/logger.h>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "ingest/camera_stats.hpp"
#include "ingest/camera_worker.hpp"
#include "ingest/latest_frame.hpp"
#include "ingest/login_gate.hpp"
#include "stream/public_feed.hpp"

namespace kg::app {

class CameraInput final : public ingest::PacketObserver {
public:
    // What the input is made of: an input of an equal spec serves the next run as one made for it.
    struct Spec {
        std::string camera;  // its id
        std::string url;
        config::Input input;
        config::Analysis analysis;                // the worker samples and scales the pictures to it
        std::optional<stream::FeedOptions> feed;  // public, with the public side on
        // The format of the loggers the worker and the feed keep (their level follows: set_log_level).
        bool log_json = false;
        bool operator==(const Spec&) const = default;
    };
    // The spec of `camera` as `site` runs it.
    static Spec spec_of(const config::Camera& camera, const config::Gateway& site);

    // `logins`: shared with the other cameras and kept across reloads (see ingest::LoginGate); null:
    // the input's own (tests). Makes nothing outside itself: the feed (which empties its HLS folder)
    // is made by start(), so that an input made and then replaced by a handed-over one touches
    // nothing of that one's.
    CameraInput(const config::Camera& camera, Spec spec, ingest::LoginGate* logins,
                std::shared_ptr<spdlog::logger> log, std::shared_ptr<spdlog::logger> feed_log);
    ~CameraInput() override;
    CameraInput(const CameraInput&) = delete;
    CameraInput& operator=(const CameraInput&) = delete;

    const Spec& spec() const { return spec_; }
    // Makes the feed and starts the worker; nothing once started.
    void start();
    bool started() const { return started_; }
    void stop();

    // Called on the ingest thread after each new picture is in frames(); empty: nobody (between two
    // runs). Once it returns, the one before is not called again.
    void set_frame_listener(std::function<void()> listener);
    // Given every packet from the next key frame on (null: none). Once it returns, the one before
    // is not given any again.
    void set_clip_ring(ingest::PacketObserver* ring);
    // The level of the loggers the worker and the feed keep (a reload that changes only `log.level`
    // keeps the input; any thread: spdlog's level is atomic).
    void set_log_level(spdlog::level::level_enum level);
    // Public hours (any thread): kept for the feed made by start(), and passed on to it once made.
    void set_open(bool open);
    bool open() const { return open_; }

    ingest::LatestFrame& frames() { return frames_; }
    ingest::CameraStats& stats() { return stats_; }
    // Null before start(), and for a camera parents do not see.
    stream::PublicFeed* feed() const { return feed_.get(); }

    // ingest::PacketObserver, on the ingest thread.
    void on_stream_opened(const AVStream& stream) override;
    void on_packet(const AVPacket& packet, const AVStream& stream) override;
    void on_stream_closed() override;

private:
    void frame_arrived();

    const Spec spec_;
    std::shared_ptr<spdlog::logger> log_, feed_log_;
    ingest::LatestFrame frames_;
    ingest::CameraStats stats_;
    std::unique_ptr<ingest::LoginGate> own_logins_;  // without the site's (tests); before the worker
    std::unique_ptr<stream::PublicFeed> feed_;       // set by start(), before the worker runs
    std::unique_ptr<ingest::CameraWorker> worker_;
    bool started_ = false;
    bool open_ = true;

    std::mutex listener_mutex_;
    std::function<void()> listener_;  // under listener_mutex_

    std::mutex ring_mutex_;
    ingest::PacketObserver* ring_ = nullptr;  // under ring_mutex_
    // Under ring_mutex_: ring_ was told of the stream being read. One attached meanwhile is told at
    // its next packet, on the ingest thread, where the stream is known to be valid.
    bool ring_told_ = false;
};

}  // namespace kg::app
