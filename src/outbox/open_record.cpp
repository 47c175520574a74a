#include "outbox/open_record.hpp"

#include <fmt/format.h>

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
    return j.dump();
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

}  // namespace kg::outbox
