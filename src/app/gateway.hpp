#pragma once
// The composition root: builds the components from the config, starts them in data-flow order
// (broker link, outbox, analysis, cameras) and stops them in reverse.

#include <atomic>
#include <map>
#include <memory>
#include <vector>

#include "app/analysis_pool.hpp"
#include "app/camera_pipeline.hpp"
#include "app/sensor_hub.hpp"
#include "common/logging.hpp"
#include "config/config.hpp"
#include "events/event_id.hpp"
#include "evidence/evidence_store.hpp"
#include "outbox/outbox.hpp"
#include "outbox/sqlite_store.hpp"
#include "publish/mqtt_link.hpp"
#include "publish/topics.hpp"
#include "rules/schedule.hpp"

namespace kg::app {

class Gateway {
public:
    Gateway(config::Gateway cfg, const Logging& logging);
    ~Gateway();

    void start();
    // Periodic supervision, from the main thread's timer: offline detection, clips, state reports.
    void tick();
    void stop();

    static constexpr auto kTickInterval = std::chrono::milliseconds(500);

private:
    void publish_states(TimePoint now, bool due);

    const config::Gateway cfg_;
    std::shared_ptr<spdlog::logger> log_;
    publish::Topics topics_;
    events::EventIdGenerator ids_;
    rules::Calendar calendar_;
    std::map<std::string, rules::Schedule> schedules_;
    publish::MqttLink link_;
    std::unique_ptr<outbox::SqliteStore> store_;
    outbox::Outbox outbox_;
    std::unique_ptr<evidence::EvidenceStore> evidence_;
    SiteContext site_;
    AnalysisPool pool_;
    std::vector<std::unique_ptr<CameraPipeline>> cameras_;
    std::unique_ptr<SensorHub> sensors_;
    std::vector<bool> last_online_;

    TimePoint started_at_{};
    TimePoint last_state_publish_{};
    TimePoint last_expiry_{};
    std::atomic<bool> republish_{false};
    bool running_ = false;
};

}  // namespace kg::app
