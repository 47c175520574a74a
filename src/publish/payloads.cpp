#include "publish/payloads.hpp"

#include <cmath>
#include <nlohmann/json.hpp>

#include "kg/version.hpp"

namespace kg::publish {

// Dividing by a power of ten keeps the printed value short (24.99).
double round_to(double v, int decimals) {
    const double scale = std::pow(10.0, decimals);
    // Past 2^53 a double has no decimals to round, and v * scale may overflow to infinity, which
    // JSON writes as null: a reading of 1e308 went out as "value": null.
    if (!std::isfinite(v * scale) || std::abs(v) >= 9007199254740992.0) return v;
    return std::round(v * scale) / scale;
}

nlohmann::json cause_json(const events::EventCause& cause) {
    return {{"kind", cause.kind}, {"text", cause.text}};
}

namespace {

using nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

std::string event_payload(const events::Event& e, const std::string& site) {
    json boxes = json::array();
    for (const auto& b : e.boxes) {
        boxes.push_back(
            {{"x", b.x}, {"y", b.y}, {"w", b.w}, {"h", b.h}, {"label", b.label}, {"score", b.score}});
    }
    json j = {
        {"message_id", e.message_id()},
        {"id", e.id},
        {"site", site},

        {"check", e.check},
        {"label", e.label},
        {"severity", e.severity},
        {"state", events::to_string(e.state)},
        {"start_time", iso8601_utc(e.start_time)},
        {"end_time", e.end_time ? json(iso8601_utc(*e.end_time)) : json(nullptr)},
        {"time", iso8601_utc(e.time)},
        {"score", round_to(e.score, 3)},
        {"top_score", round_to(e.top_score, 3)},
        {"boxes", std::move(boxes)},
        {"zone", e.zone.empty() ? json(nullptr) : json(e.zone)},
    };
    if (e.from_sensor) {
        j["sensor"] = e.source;
        if (e.value) j["value"] = round_to(*e.value, 3);
        j["unit"] = e.unit;
    } else {
        j["camera"] = e.source;
    }
    if (e.end_time) j["duration_s"] = round_to(seconds_between(e.start_time, *e.end_time), 3);
    if (e.state == events::EventState::end) j["end_reason"] = e.end_reason.empty() ? "cleared" : e.end_reason;
    if (e.cause) j["cause"] = cause_json(*e.cause);
    if (e.windows_missed > 0) j["windows_missed"] = e.windows_missed;
    auto path_or_null = [](const std::string& p) { return p.empty() ? json(nullptr) : json(p); };
    j["evidence"] = {
        {"snapshot", path_or_null(e.evidence.snapshot)},
        {"snapshot_end", path_or_null(e.evidence.snapshot_end)},
        {"clip", path_or_null(e.evidence.clip)},
        {"errors", e.evidence.errors},
    };
    return dump(j);
}

std::string clip_payload(const events::ClipReport& c, const std::string& site) {
    json j = {
        {"id", c.event_id}, {"site", site}, {"camera", c.camera}, {"start_time", iso8601_utc(c.start_time)}};
    if (c.error.empty()) {
        j["path"] = c.path;
        j["duration_s"] = round_to(c.seconds, 3);
        j["bytes"] = c.bytes;
    } else {
        j["error"] = c.error;
    }
    return dump(j);
}

std::string camera_state_payload(const CameraState& s, const std::string& site, TimePoint now) {
    json j = {
        {"site", site},
        {"camera", s.camera->id},
        {"name", s.camera->name},
        {"online", s.online},
        {"fps_in", round_to(s.fps_in, 2)},
        {"fps_analysed", round_to(s.fps_analysed, 2)},
        {"frames_dropped", s.stats.frames_dropped},
        {"reconnects_1h", s.stats.reconnects_1h},
        {"stalls_1h", s.stats.stalls_1h},
        {"breaks_1h", s.stats.breaks_1h},
        {"decode_errors", s.stats.decode_errors},
        {"frames_damaged", s.stats.frames_damaged},
        {"packets_lost", s.stats.packets_lost},
        {"check_errors", s.stats.check_errors},
        {"timestamp_jumps", s.stats.timestamp_jumps},
        {"failing_checks", s.failing_checks},
        {"last_frame_time", s.stats.last_frame ? json(iso8601_utc(*s.stats.last_frame)) : json(nullptr)},
        {"conditions", s.conditions},
        {"time", iso8601_utc(now)},
    };
    if (!s.stats.last_error.empty()) j["last_error"] = s.stats.last_error;
    if (s.stats.last_error_cause) j["last_error_cause"] = ingest::to_string(*s.stats.last_error_cause);
    if (s.stats.last_error_time) j["last_error_time"] = iso8601_utc(*s.stats.last_error_time);
    return dump(j);
}

std::string gateway_payload(const config::Gateway& cfg, TimePoint started_at,
                            std::optional<TimePoint> reloaded_at, TimePoint now, const std::string& stream,
                            std::optional<TimePoint> stream_started, std::int64_t acknowledged,
                            const std::vector<std::string>& config_warnings) {
    json cameras = json::array();
    for (const auto& c : cfg.cameras) {
        cameras.push_back({{"id", c.id}, {"name", c.name}, {"public", c.is_public}, {"checks", c.checks}});
    }
    // The room forgets the cameras and sensors a site no longer lists (docs/monitor.md).
    json sensors = json::array();
    for (const auto& s : cfg.sensors) {
        sensors.push_back({{"id", s.id}, {"name", s.name}, {"kind", s.kind}, {"unit", s.unit}});
    }
    json j = {
        {"site", cfg.site.id},
        {"name", cfg.site.name},
        {"version", kVersion},
        {"started_at", iso8601_utc(started_at)},
        {"cameras", std::move(cameras)},
        {"sensors", std::move(sensors)},
        // Said once in the log at start, which nobody reads months later; the room shows them.
        {"config_warnings", config_warnings},
        {"stream", stream},
        {"seq", acknowledged},
        {"time", iso8601_utc(now)},
    };
    // A room that first hears of the stream after its first numbers can tell from this whether it
    // was watching when they were sent (and must ask for them) or came later.
    if (stream_started) j["stream_started"] = iso8601_utc(*stream_started);
    if (reloaded_at) j["reloaded_at"] = iso8601_utc(*reloaded_at);
    return dump(j);
}

std::string lost_payload(const Lost& lost, const std::string& site, TimePoint now) {
    return dump({
        {"site", site},
        {"stream", lost.stream},
        {"from", lost.from},
        {"to", lost.to},
        {"reason", lost.reason},
        {"request_id", lost.request_id},
        {"time", iso8601_utc(now)},
    });
}

}  // namespace kg::publish
