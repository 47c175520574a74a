// The named schedules (days, times, holidays, and `not` another schedule) rules and thresholds run under.
#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "config/read_sections.hpp"
#include "rules/schedule.hpp"

namespace kg::config::detail {

void read_schedules(Reader& r, const YAML::Node& n, std::vector<Schedule>& schedules) {
    if (!r.map_of_names(n, "schedules", "a map of schedule names to schedules")) return;
    // Inverted schedules refer to others by name, so resolve them after all are read.
    std::vector<std::pair<std::string, YAML::Node>> inversions;
    for (const auto& [name, key_node, value] : Reader::entries(n)) {
        Schedule s;
        s.name = name;
        const auto key = join("schedules", s.name);
        if (!r.map(value, key, {"days", "times", "on_holidays", "not"})) continue;
        if (value["not"]) {
            if (value["days"] || value["times"]) {
                r.error(value, key, "'not' takes no 'days' or 'times' of its own");
            }
            inversions.emplace_back(s.name, value["not"]);
            continue;
        }
        if (value["days"]) {
            std::string days;
            if (r.string(value["days"], key + ".days", days)) {
                try {
                    s.days = rules::parse_days(days);
                } catch (const std::invalid_argument& e) {
                    r.error(value["days"], key + ".days", e.what());
                }
            }
        }
        if (value["times"]) {
            if (r.strings(value["times"], key + ".times", s.times)) {
                // A schedule with no window is never active: a threshold under it never fires, a
                // disinfection window under it is never judged, and nothing says so.
                if (s.times.empty())
                    r.error(value["times"], key + ".times",
                            "no window: give at least one, e.g. [\"11:00-13:00\"]");
                for (std::size_t i = 0; i < s.times.size(); ++i) {
                    try {
                        rules::parse_window(s.times[i]);
                    } catch (const std::invalid_argument& e) {
                        r.error(value["times"][i], fmt::format("{}.times[{}]", key, i), e.what());
                    }
                }
            }
        } else {
            r.error(value, key + ".times", "missing required key");
        }
        if (value["on_holidays"]) r.boolean(value["on_holidays"], key + ".on_holidays", s.on_holidays);
        schedules.push_back(std::move(s));
    }
    // In rounds: `not` may name another `not` written further down (`open: {not: closed}` before
    // `closed: {not: working}`), and the inverse of an inverse is the schedule itself.
    struct Pending {  // NOLINT(bugprone-exception-escape): YAML::Node's assignment, not noexcept
        std::string name, of;
        YAML::Node at;
    };
    std::vector<Pending> pending;
    for (const auto& [name, target] : inversions) {
        std::string of;
        if (r.string(target, join("schedules", name) + ".not", of)) pending.push_back({name, of, target});
    }
    auto find = [&](const std::string& name) {
        return std::find_if(schedules.begin(), schedules.end(),
                            [&](const Schedule& s) { return s.name == name; });
    };
    for (bool progress = true; progress && !pending.empty();) {
        progress = false;
        for (auto p = pending.begin(); p != pending.end();) {
            const auto it = find(p->of);
            if (it == schedules.end()) {
                ++p;
                continue;
            }
            Schedule inverted = *it;
            inverted.name = p->name;
            inverted.inverted = !it->inverted;
            schedules.push_back(std::move(inverted));
            p = pending.erase(p);
            progress = true;
        }
    }
    for (const auto& p : pending) {
        const bool inverse =
            std::any_of(pending.begin(), pending.end(), [&](const Pending& q) { return q.name == p.of; });
        r.error(p.at, join("schedules", p.name) + ".not",
                inverse ? fmt::format("'{}' is itself an inverse of a schedule in a loop back here", p.of)
                        : fmt::format("no schedule named '{}'", p.of));
    }
}

}  // namespace kg::config::detail
