#pragma once
// JSON payloads, exactly as docs/schemas/*.schema.json describe them.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "events/event.hpp"
#include "ingest/camera_stats.hpp"

namespace kg::publish {

// `v` rounded to `decimals` places, as every message carries measured numbers: 8.2, not
// 8.200000000000001 from a register's 82 x 0.1.
double round_to(double v, int decimals);

// Why a source cannot be read, as an event and a sensor's state say it: {"kind", "text"}.
nlohmann::json cause_json(const events::EventCause& cause);
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

// `stream`, `stream_started` and `acknowledged`: the outbox's stream, when it began (if known) and
// the highest number the broker acknowledged. `config_warnings`: config::doubts of the running
// configuration (settings that cannot work as meant).
// `started_at`: when the process started; `reloaded_at`: when the configuration it runs was loaded,
// if by a reload since (none: at the start).
std::string gateway_payload(const config::Gateway& cfg, TimePoint started_at,
                            std::optional<TimePoint> reloaded_at, TimePoint now, const std::string& stream,
                            std::optional<TimePoint> stream_started, std::int64_t acknowledged,
                            const std::vector<std::string>& config_warnings);

// The answer to a replay request for the numbers from..to that cannot be sent again, and why.
struct Lost {
    std::string stream;
    std::int64_t from = 0, to = 0;
    std::string reason, request_id;
};
std::string lost_payload(const Lost& lost, const std::string& site, TimePoint now);

}  // namespace kg::publish
