#pragma once
// The ingest thread of one camera: connects with FFmpeg, decodes, samples to the analysis rate,
// scales once to the analysis size and hands the newest frame on. Reconnects with capped
// back-off, forever, until stopped.

#include <spdlog/logger.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/log_throttle.hpp"
#include "config/config.hpp"
#include "ingest/camera_stats.hpp"
#include "ingest/ffmpeg_input.hpp"
#include "ingest/latest_frame.hpp"
#include "ingest/login_gate.hpp"

namespace kg::ingest {

// What to say when a camera's pictures (shown at `camera_aspect`, width / height) are analysed at a
// size of another shape: every picture, snapshot and training frame is stretched to it (a 4:3 D1
// camera at the default 640x360 made everyone short and wide, unsaid: the 54th session's review).
// Nothing within 5 %.
std::optional<std::string> stretch_warning(double camera_aspect, int width, int height);

class CameraWorker {
public:
    // on_frame: called on the ingest thread after each new frame is published to `out`.
    // logins: shared with the other cameras (see LoginGate); outlives the worker.
    CameraWorker(const config::Camera& camera, LatestFrame& out, CameraStats& stats, LoginGate& logins,
                 std::function<void()> on_frame, std::shared_ptr<spdlog::logger> log);
    ~CameraWorker();
    CameraWorker(const CameraWorker&) = delete;
    CameraWorker& operator=(const CameraWorker&) = delete;

    void start();
    // Aborts any blocking FFmpeg call and joins the thread.
    void stop();

    // Receives every demuxed video packet (set before start()).
    void set_packet_observer(PacketObserver* observer) { observer_ = observer; }
    void set_frame_observer(FrameObserver* observer) { frame_observer_ = observer; }

private:
    enum class StreamEnd { stopped, end_of_file };

    void run();
    // When this connection's first and latest frames were decoded: a connection is healthy (the
    // back-off starts again from its minimum) once it has delivered frames for a while, not once
    // it has lasted a while (a camera that hangs while opening lasts the whole timeout).
    struct Delivered {
        std::optional<std::chrono::steady_clock::time_point> first, last;
        std::uint64_t lost_counted = 0;  // of the connection's lost RTP packets, those in stats_
    };
    // Counts the connection's lost RTP packets not counted yet; says them at most every 10 minutes.
    void count_lost(const FfmpegInput& input, Delivered& delivered, std::chrono::steady_clock::time_point now,
                    bool say);
    StreamEnd read_frames(FfmpegInput& input, Delivered& delivered);
    // Says the damaged pictures decoded since it last did: the first 10 s after the first one,
    // then at most every 10 minutes.
    void say_damaged(std::chrono::steady_clock::time_point now);
    // Waits while the camera's login is refused or another camera's try of it is under way (see
    // LoginGate); nothing when stopped meanwhile.
    std::optional<LoginGate::Pass> wait_for_login(const std::string& login);
    // Sleeps up to `d`; returns false if stopped meanwhile.
    bool wait_for(std::chrono::steady_clock::duration d);

    const config::Camera camera_;
    LatestFrame& out_;
    CameraStats& stats_;
    LoginGate& logins_;
    std::function<void()> on_frame_;
    std::shared_ptr<spdlog::logger> log_;
    // Logs end up in the journal and in support tickets: never with the camera's password.
    const std::string shown_url_;
    static constexpr int kFailureSummaryMinutes = 10;
    // The end of the refused login's wait this camera last said (ingest thread): said once, by the
    // camera refused or by each one waiting with it.
    std::optional<std::chrono::steady_clock::time_point> login_wait_said_;
    std::uint64_t unanswered_said_ = 0;  // the last unanswered try of its login it took as its cause
    RepeatedFailure failures_;  // tries that failed before any picture, in a row (ingest thread)
    bool said_shape_ = false;   // a picture stretched to the analysis size was said (ingest thread)
    // Lost RTP packets, over every connection (ingest thread): a lossy UDP link that also stalls
    // now and then said them again at each reconnect (the review of the first version).
    std::uint64_t lost_ = 0, lost_said_ = 0;
    std::optional<std::chrono::steady_clock::time_point> lost_said_at_;
    // Pictures decoded, and of them damaged, since damaged_since_ (ingest thread; see say_damaged).
    std::uint64_t decoded_ = 0, damaged_ = 0;
    std::optional<std::chrono::steady_clock::time_point> damaged_since_;
    bool damaged_said_ = false;
    PacketObserver* observer_ = nullptr;
    FrameObserver* frame_observer_ = nullptr;

    std::atomic<bool> stop_{false};
    std::mutex wait_mutex_;
    std::condition_variable wait_cv_;
    std::thread thread_;
};

}  // namespace kg::ingest
