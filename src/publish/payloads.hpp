#pragma once
// JSON payloads, exactly as docs/schemas/*.schema.json describe them.

#include <string>
#include <vector>

#include "config/config.hpp"
#include "events/event.hpp"
#include "ingest/camera_stats.hpp"

namespace kg::publish {

std::string event_payload(const events::Event& event, const std::string& site);
std::string clip_payload(const events::ClipReport& clip, const std::string& site);

struct CameraState {
    const config::Camera* camera = nullptr;
    ingest::CameraStatsSnapshot stats;
    bool online = false;
    double fps_in = 0, fps_analysed = 0;
    double check_seconds = 0;  // mean time of one frame through the checks, last 10 s
    std::vector<std::string> conditions;
    std::vector<std::string> failing_checks;  // checks that failed on a frame in the last minute
};
std::string camera_state_payload(const CameraState& state, const std::string& site, TimePoint now);

std::string gateway_payload(const config::Gateway& cfg, TimePoint started_at, TimePoint now);

}  // namespace kg::publish
