#include "app/missed_cycles.hpp"

#include <nlohmann/json.hpp>
#include <optional>

#include "common/iso_time.hpp"
#include "events/event.hpp"

namespace kg::app {

std::map<std::string, MissedCycleLeft> missed_cycles_left(const std::vector<std::string>& payloads) {
    struct Newest {
        std::string id;
        std::optional<TimePoint> raised;  // unset: cleared by a cycle (or unreadable)
        std::optional<TimePoint> stopped;
    };
    std::map<std::string, Newest> newest;  // sensor -> its newest missed_cycle message
    for (const auto& payload : payloads) {
        const auto j = nlohmann::json::parse(payload, nullptr, false);
        if (!j.is_object()) continue;
        try {
            if (j.value("check", "") != "disinfection" || j.value("label", "") != "missed_cycle" ||
                !j.contains("sensor"))
                continue;
            const auto sensor = j.at("sensor").get<std::string>();
            const auto id = j.value("id", ""), state = j.value("state", "");
            if (state == "start") {
                newest[sensor] = {id, parse_iso8601_utc(j.value("start_time", "")), std::nullopt};
            } else if (state == "end") {
                const auto reason = j.value("end_reason", "");
                // A stop's end keeps the raise it ends (an end of another event, one whose start
                // the outbox no longer keeps, counts as raised at its own start). A restart's end
                // does not: the start that wrote it, dated at that start, already judged the
                // crashed run's raise, and had it carried it, its own raise would be newer. Taken
                // for a stop at that time, a second restart soon after raised a miss again that
                // the first, after hours down, rightly let go.
                auto& n = newest[sensor];
                if (n.id != id) n = {id, parse_iso8601_utc(j.value("start_time", "")), std::nullopt};
                if (reason != events::kEndStopped) n.raised.reset();
                n.stopped = parse_iso8601_utc(j.value("time", ""));
            }
        } catch (const nlohmann::json::exception&) {
            continue;  // a field of another type: not an event message this gateway wrote
        }
    }
    std::map<std::string, MissedCycleLeft> left;
    for (const auto& [sensor, n] : newest) {
        if (n.raised) left[sensor] = {*n.raised, n.stopped};
    }
    return left;
}

std::optional<TimePoint> newest_time(const std::vector<std::string>& payloads) {
    std::optional<TimePoint> newest;
    for (const auto& payload : payloads) {
        const auto j = nlohmann::json::parse(payload, nullptr, false);
        if (!j.is_object()) continue;
        std::optional<TimePoint> t;
        if (j.contains("time") && j["time"].is_string()) {
            t = parse_iso8601_utc(j["time"].get<std::string>());
        } else if (j.contains("minute") && j["minute"].is_string()) {
            t = parse_iso8601_utc(j["minute"].get<std::string>());
            if (t) *t += std::chrono::minutes(1);
        }
        if (t && (!newest || *t > *newest)) newest = t;
    }
    return newest;
}

}  // namespace kg::app
