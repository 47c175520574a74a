#include "outbox/open_record.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace kg::outbox {
namespace {

std::int64_t to_ms(TimePoint t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

std::string open_record(const events::Event& e) {
    // Milliseconds, not ISO text: the end's start_time is then exactly the start's.
    const nlohmann::json j = {{"source", e.source},     {"from_sensor", e.from_sensor},
                              {"unit", e.unit},         {"check", e.check},
                              {"label", e.label},       {"zone", e.zone},
                              {"severity", e.severity}, {"start_ms", to_ms(e.start_time)},
                              {"score", e.score},       {"top_score", e.top_score}};
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

events::Event end_from_record(const std::string& id, const std::string& record, TimePoint now,
                              const std::string& reason) {
    try {
        const auto j = nlohmann::json::parse(record);
        events::Event e;
        e.id = id;
        e.source = j.at("source").get<std::string>();
        e.from_sensor = j.at("from_sensor").get<bool>();
        e.unit = j.at("unit").get<std::string>();
        e.check = j.at("check").get<std::string>();
        e.label = j.at("label").get<std::string>();
        e.zone = j.at("zone").get<std::string>();
        e.severity = j.at("severity").get<int>();
        e.start_time = TimePoint(std::chrono::milliseconds(j.at("start_ms").get<std::int64_t>()));
        e.score = j.at("score").get<float>();
        e.top_score = j.at("top_score").get<float>();
        e.state = events::EventState::end;
        e.time = now;
        e.end_time = now;
        e.end_reason = reason;
        return e;
    } catch (const nlohmann::json::exception& err) {
        throw std::runtime_error(
            fmt::format("open event {}: unreadable record '{}': {}", id, record, err.what()));
    }
}

std::string clip_record(const events::Event& start) {
    const nlohmann::json j = {
        {"camera", start.source}, {"path", start.evidence.clip}, {"start_ms", to_ms(start.start_time)}};
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

events::ClipReport clip_from_record(const std::string& event_id, const std::string& record,
                                    const std::string& error) {
    try {
        const auto j = nlohmann::json::parse(record);
        events::ClipReport c;
        c.event_id = event_id;
        c.camera = j.at("camera").get<std::string>();
        c.path = j.at("path").get<std::string>();
        // The path is deleted if its file is not a whole clip: never one outside the evidence folder.
        const std::filesystem::path path(c.path);
        const bool inside = !path.empty() && path.is_relative() &&
                            std::none_of(path.begin(), path.end(), [](const auto& p) { return p == ".."; });
        if (!inside || path.extension() != ".mp4") {
            throw std::runtime_error(
                fmt::format("pending clip of event {}: path '{}' is not an .mp4 inside the evidence folder",
                            event_id, c.path));
        }
        c.start_time = TimePoint(std::chrono::milliseconds(j.at("start_ms").get<std::int64_t>()));
        c.error = error;
        return c;
    } catch (const nlohmann::json::exception& err) {
        throw std::runtime_error(fmt::format("pending clip of event {}: unreadable record '{}': {}", event_id,
                                             record, err.what()));
    }
}

}  // namespace kg::outbox
