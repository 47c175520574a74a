// The rules that need the whole document: the site's time zone and holidays, every name a part
// gives of a schedule, camera or model, folders that must not nest, and one serial line's settings.
#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <variant>

#include "config/read_sections.hpp"
#include "rules/schedule.hpp"

namespace kg::config::detail {
namespace fs = std::filesystem;

namespace {

using Step = std::variant<std::string, std::size_t>;

// The node at `steps` under `node` (map keys and list indexes), if every step exists; used to point
// a cross-reference error at the value that was written rather than at its camera.
std::optional<YAML::Node> node_at(const YAML::Node& node, std::initializer_list<Step> steps) {
    YAML::Node at;
    at.reset(node);  // plain assignment would write into the document
    for (const auto& step : steps) {
        const YAML::Node& here = at;  // the const operator[] never adds a key
        YAML::Node next;
        if (const auto* key = std::get_if<std::string>(&step)) {
            if (!here.IsMap() || !here[*key]) return std::nullopt;
            next.reset(here[*key]);
        } else {
            const auto index = std::get<std::size_t>(step);
            if (!here.IsSequence() || index >= here.size()) return std::nullopt;
            next.reset(here[index]);
        }
        at.reset(next);
    }
    return at;
}

// The time zone must be one the calendar can load from the system's tzdata (/usr/share/zoneinfo).
void check_timezone(Reader& r, const YAML::Node& at, const std::string& zone) {
    const fs::path file = fs::path("/usr/share/zoneinfo") / zone;
    const bool plain = !zone.empty() && zone.front() != '/' && zone.find("..") == std::string::npos;
    if (!plain || !fs::is_regular_file(file)) {
        r.error(
            at, "site.timezone",
            fmt::format("unknown time zone '{}': no such file under /usr/share/zoneinfo (e.g. Asia/Shanghai)",
                        zone));
        return;
    }
    try {
        rules::Calendar(zone, {});
    } catch (const std::invalid_argument& e) {
        r.error(at, "site.timezone", e.what());
    }
}

}  // namespace

// Cross-field rules that need the whole document. A reference inherited from `defaults` is
// reported once, at the defaults, not once per camera.
void check_references(Reader& r, const YAML::Node& root, Gateway& g) {
    if (root["site"] && root["site"].IsMap()) {
        check_timezone(r, node_at(root, {"site", "timezone"}).value_or(root["site"]), g.site.timezone);
        if (const auto h = root["site"]["holidays"]; h && h.IsSequence()) {
            for (std::size_t i = 0; i < g.site.holidays.size() && i < h.size(); ++i) {
                try {
                    rules::Calendar("UTC", {g.site.holidays[i]});
                } catch (const std::invalid_argument& e) {
                    r.error(h[i], fmt::format("site.holidays[{}]", i), e.what());
                }
            }
        }
    }
    auto schedule_known = [&](const std::string& name) {
        return std::any_of(g.schedules.begin(), g.schedules.end(),
                           [&](const Schedule& s) { return s.name == name; });
    };
    if (!g.public_side.hours.empty() && !schedule_known(g.public_side.hours)) {
        r.error(node_at(root, {"public", "hours"}).value_or(root), "public.hours",
                fmt::format("no schedule named '{}'", g.public_side.hours));
    }
    if (const auto& t = g.training_frames; !t.schedule.empty() && !schedule_known(t.schedule)) {
        r.error(node_at(root, {"training_frames", "schedule"}).value_or(root), "training_frames.schedule",
                fmt::format("no schedule named '{}'", t.schedule));
    }
    // Each folder's budget deletes files in it: nested, one would delete the other's.
    const auto normal = [](const std::string& p) {
        auto n = fs::path(p).lexically_normal();
        return n.has_filename() ? n : n.parent_path();  // "a/b/" is "a/b"
    };
    const auto within = [&](const std::string& child, const std::string& parent) {
        const auto c = normal(child), p = normal(parent);
        return std::mismatch(p.begin(), p.end(), c.begin(), c.end()).first == p.end();
    };
    const auto inside = [&](const std::string& a, const std::string& b) {
        return within(a, b) || within(b, a);
    };
    if (!g.public_side.listen.empty() && inside(g.evidence.path, g.public_side.hls_dir)) {
        r.error(
            node_at(root, {"public", "hls_dir"}).value_or(root), "public.hls_dir",
            fmt::format("'{}' and evidence.path '{}' are one inside the other: give each a folder of its own",
                        g.public_side.hls_dir, g.evidence.path));
    }
    if (g.outbox.path != ":memory:") {
        // The outbox is the one file no budget may delete: a folder that expires files must not hold it.
        const auto folder = fs::path(g.outbox.path).parent_path().string();
        for (const auto& [key, managed, on] :
             {std::tuple<const char*, std::string, bool>{"evidence.path", g.evidence.path, true},
              {"public.hls_dir", g.public_side.hls_dir, !g.public_side.listen.empty()},
              {"training_frames.path", g.training_frames.path, g.training_frames.enabled}}) {
            if (on && !managed.empty() && within(folder, managed)) {
                r.error(node_at(root, {"outbox", "path"}).value_or(root), "outbox.path",
                        fmt::format("'{}' is inside {} '{}', whose size and age budget would delete it",
                                    g.outbox.path, key, managed));
            }
        }
    }
    if (const auto& t = g.training_frames; t.enabled) {
        const auto at = node_at(root, {"training_frames", "path"}).value_or(root["training_frames"]);
        for (const auto& [key, other] :
             {std::pair<const char*, std::string>{"evidence.path", g.evidence.path},
              {"public.hls_dir", g.public_side.hls_dir}}) {
            if (!other.empty() && inside(t.path, other)) {
                r.error(
                    at, "training_frames.path",
                    fmt::format("'{}' and {} '{}' are one inside the other: give each a folder of its own",
                                t.path, key, other));
            }
        }
    }
    for (std::size_t i = 0; i < g.training_frames.cameras.size(); ++i) {
        const auto& id = g.training_frames.cameras[i];
        if (std::none_of(g.cameras.begin(), g.cameras.end(), [&](const Camera& c) { return c.id == id; })) {
            r.error(node_at(root, {"training_frames", "cameras", i}).value_or(root),
                    fmt::format("training_frames.cameras[{}]", i), fmt::format("no camera with id '{}'", id));
        }
    }
    std::set<std::string> reported;  // key paths
    auto report = [&](const std::optional<YAML::Node>& at, const YAML::Node& fallback, const std::string& key,
                      const std::string& message) {
        if (reported.insert(key).second) r.error(at.value_or(fallback), key, message);
    };
    // One serial line is opened once, with one speed and framing: the first sensor's. A second sensor
    // on it with other settings would have them ignored without a word.
    std::map<std::string, std::size_t> first_on_line;
    for (std::size_t i = 0; i < g.sensors.size(); ++i) {
        const auto& src = g.sensors[i].source;
        if (src.kind != SensorSource::Kind::modbus || src.device.rfind("rtu:", 0) != 0) continue;
        // By the line, not its spelling: /dev/serial/by-id/... and /dev/ttyUSB0 are one port.
        const auto [it, first] = first_on_line.emplace(modbus_connection(src.device), i);
        if (first) continue;
        const auto& other = g.sensors[it->second];
        const auto& o = other.source;
        const auto at = node_at(root, {"sensors", i, "source", "modbus"}).value_or(root);
        const std::pair<const char*, bool> differ[] = {{"baud", src.baud != o.baud},
                                                       {"parity", src.parity != o.parity},
                                                       {"data_bits", src.data_bits != o.data_bits},
                                                       {"stop_bits", src.stop_bits != o.stop_bits}};
        for (const auto& [key, differs] : differ) {
            if (!differs) continue;
            report(node_at(at, {key}), at, fmt::format("sensors[{}].source.modbus.{}", i, key),
                   fmt::format("sensor '{}' is on the serial line {} with sensor '{}' (line {}), whose {} "
                               "differs: one line has one setting, give both the same",
                               g.sensors[i].id, src.device, other.id, other.source_line, key));
        }
    }
    for (std::size_t i = 0; i < g.sensors.size(); ++i) {
        const auto& sensor = g.sensors[i];
        const auto at = node_at(root, {"sensors", i}).value_or(root);
        for (std::size_t t = 0; t < sensor.thresholds.size(); ++t) {
            const auto& name = sensor.thresholds[t].schedule;
            if (!name.empty() && !schedule_known(name)) {
                report(node_at(at, {"thresholds", t, "schedule"}), at,
                       fmt::format("sensors[{}].thresholds[{}].schedule", i, t),
                       fmt::format("sensor '{}': no schedule named '{}'", sensor.id, name));
            }
        }
        if (sensor.disinfection && !sensor.disinfection->schedule.empty() &&
            !schedule_known(sensor.disinfection->schedule)) {
            report(
                node_at(at, {"disinfection", "schedule"}), at,
                fmt::format("sensors[{}].disinfection.schedule", i),
                fmt::format("sensor '{}': no schedule named '{}'", sensor.id, sensor.disinfection->schedule));
        }
    }
    for (std::size_t i = 0; i < g.cameras.size(); ++i) {
        const auto& cam = g.cameras[i];
        const auto at = node_at(root, {"cameras", i}).value_or(root);
        const auto own_checks = node_at(at, {"checks"});
        for (std::size_t c = 0; c < cam.checks.size(); ++c) {
            const auto& check = cam.checks[c];
            if (check.rfind("model:", 0) != 0 || g.models.count(check.substr(6))) continue;
            const auto message = fmt::format("no model named '{}' under models", check.substr(6));
            if (own_checks) {
                report(node_at(*own_checks, {c}), at, fmt::format("cameras[{}].checks[{}]", i, c),
                       fmt::format("camera '{}': {}", cam.id, message));
            } else {
                report(node_at(root, {"defaults", "checks", c}), at, fmt::format("defaults.checks[{}]", c),
                       message);
            }
        }
        for (const auto& [check, rule] : cam.rules) {
            if (rule.schedule.empty() || schedule_known(rule.schedule)) continue;
            const auto message = fmt::format("no schedule named '{}'", rule.schedule);
            if (const auto own = node_at(at, {"rules", check, "schedule"})) {
                report(own, at, fmt::format("cameras[{}].rules.{}.schedule", i, check),
                       fmt::format("camera '{}': {}", cam.id, message));
            } else {
                report(node_at(root, {"defaults", "rules", check, "schedule"}), at,
                       fmt::format("defaults.rules.{}.schedule", check), message);
            }
        }
    }
}

}  // namespace kg::config::detail
