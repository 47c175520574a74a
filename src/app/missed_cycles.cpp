#include "app/missed_cycles.hpp"

#include <nlohmann/json.hpp>
#include <optional>

#include "common/iso_time.hpp"
#include "events/event.hpp"

namespace kg::app {

std::map<std::string, TimePoint> missed_cycles_left(const std::vector<std::string>& payloads, TimePoint now,
                                                    Duration max_age) {
    struct Newest {
        std::string id;
        std::optional<TimePoint> raised;  // unset: cleared by a cycle (or unreadable)
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
                newest[sensor] = {id, parse_iso8601_utc(j.value("start_time", ""))};
            } else if (state == "end") {
                const auto reason = j.value("end_reason", "");
                const bool by_gateway = reason == events::kEndStopped || reason == events::kEndRestarted;
                // An end the gateway made keeps the raise it ends (an end of another event, one
                // whose start the outbox no longer keeps, counts as raised at its own start).
                auto& n = newest[sensor];
                if (n.id != id) n = {id, parse_iso8601_utc(j.value("start_time", ""))};
                if (!by_gateway) n.raised.reset();
            }
        } catch (const nlohmann::json::exception&) {
            continue;  // a field of another type: not an event message this gateway wrote
        }
    }
    std::map<std::string, TimePoint> left;
    for (const auto& [sensor, n] : newest) {
        if (n.raised && *n.raised <= now && now - *n.raised <= max_age) left[sensor] = *n.raised;
    }
    return left;
}

}  // namespace kg::app
