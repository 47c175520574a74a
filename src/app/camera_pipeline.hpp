#pragma once
// Everything that belongs to one camera: its ingest worker, the frame hand-off, its checks and
// their event trackers, and the counters it reports. The analysis side runs on the shared pool;
// the supervisor side (offline detection, state report) runs on the gateway's timer.

#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "app/analysis_pool.hpp"
#include "common/logging.hpp"
#include "config/config.hpp"
#include "events/event_tracker.hpp"
#include "ingest/camera_stats.hpp"
#include "ingest/camera_worker.hpp"
#include "ingest/latest_frame.hpp"
#include "publish/payloads.hpp"
#include "vision/check.hpp"

namespace kg::app {

class CameraPipeline final : public AnalysisJob {
  public:
    CameraPipeline(const config::Camera& camera, AnalysisPool& pool, events::EventSink& sink,
                   events::EventIdGenerator& ids, const Logging& logging);
    ~CameraPipeline() override;

    void start();
    void stop();

    // Analysis side: runs the checks on the newest frame.
    void run_once() override;

    // Supervisor side (one thread): offline detection and the numbers for the state report.
    publish::CameraState supervise(TimePoint now);

    const config::Camera& camera() const { return camera_; }

  private:
    struct Tracked {
        std::string check, label, zone;
        events::EventTracker tracker;
    };
    events::EventTracker& tracker_for(const vision::Observation& o);
    events::TrackerRule rule_for(const std::string& check) const;

    const config::Camera camera_;
    AnalysisPool& pool_;
    events::EventSink& sink_;
    events::EventIdGenerator& ids_;
    std::shared_ptr<spdlog::logger> log_;

    ingest::LatestFrame frames_;
    ingest::CameraStats stats_;
    std::unique_ptr<ingest::CameraWorker> worker_;

    // Analysis side, touched by one pool thread at a time.
    std::vector<std::unique_ptr<vision::Check>> checks_;
    std::vector<Tracked> trackers_;
    std::vector<vision::Observation> observations_;

    // Shared with the supervisor.
    std::mutex conditions_mutex_;
    std::vector<std::string> conditions_;

    // Supervisor side.
    TimePoint started_at_{};
    std::unique_ptr<events::EventTracker> offline_;
    struct RateSample {
        TimePoint t;
        std::uint64_t in, analysed;
    };
    std::deque<RateSample> rate_samples_;
};

}  // namespace kg::app
