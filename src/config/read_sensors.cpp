// The sensors: each sensor, its MQTT or Modbus source, its thresholds and disinfection; and how a
// Modbus device's name tells its connection.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/mqtt_topic.hpp"
#include "common/short_text.hpp"
#include "config/read_sections.hpp"

namespace kg::config {
namespace fs = std::filesystem;

namespace detail {

// The kinds the gateway treats apart: a detector's thresholds (gas, smoke: no `for`; those and door,
// leak: no hysteresis), the parents' page (temperature), the units below. Any other is carried as
// written, with a measurement's defaults.
constexpr std::array<std::string_view, 8> kKnownKinds = {"temperature", "humidity", "gas",   "smoke",
                                                         "door",        "leak",     "power", "co2"};

bool known_kind(const std::string& kind) {
    return std::find(kKnownKinds.begin(), kKnownKinds.end(), kind) != kKnownKinds.end();
}

namespace {

std::string lower_trimmed(const std::string& text) {
    const auto first = text.find_first_not_of(" \t");
    if (first == std::string::npos) return {};
    std::string out = text.substr(first, text.find_last_not_of(" \t") - first + 1);
    for (auto& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

// A sensor's unit when its configuration gives none: a humidity in degC was what every kind got.
std::string default_unit(const std::string& kind) {
    if (kind == "temperature") return "degC";
    if (kind == "humidity") return "%";
    if (kind == "co2") return "ppm";
    if (kind == "power") return "W";
    return {};
}

// Where an MQTT sensor's number is when its configuration gives no `value`: the field Zigbee2MQTT
// names after the kind. A humidity sensor read its payload's `temperature` (22.5 % said, and a
// false "too dry" raised). Door contacts are left out: Zigbee2MQTT's `contact` is true when closed.
std::string default_value_path(const std::string& kind) {
    if (kind == "humidity" || kind == "co2" || kind == "power" || kind == "gas" || kind == "smoke")
        return kind;
    if (kind == "leak") return "water_leak";
    return "temperature";
}

void read_source(Reader& r, const YAML::Node& n, const std::string& path, const std::string& sensor,
                 SensorSource& src) {
    if (!r.map(n, path, {"mqtt", "modbus"})) return;
    if (n["mqtt"] && n["modbus"]) r.error(n, path, "one of mqtt or modbus, not both");
    if (const auto m = n["mqtt"]) {
        src.kind = SensorSource::Kind::mqtt;
        if (!r.map(m, path + ".mqtt", {"topic", "value", "time"})) return;
        if (m["topic"]) {
            if (r.string(m["topic"], path + ".mqtt.topic", src.topic)) {
                // The broker would disconnect the sensor input, and every MQTT sensor with it.
                if (const auto problem = topic_filter_problem(src.topic); !problem.empty())
                    r.error(m["topic"], path + ".mqtt.topic", fmt::format("'{}': {}", src.topic, problem));
            }
        } else {
            r.error(m, path + ".mqtt.topic", "missing required key");
        }
        if (m["value"]) r.string(m["value"], path + ".mqtt.value", src.value_path);
        if (m["time"]) r.string(m["time"], path + ".mqtt.time", src.time_path);
    } else if (const auto b = n["modbus"]) {
        src.kind = SensorSource::Kind::modbus;
        if (!r.map(b, path + ".modbus",
                   {"device", "baud", "parity", "data_bits", "stop_bits", "unit_id", "address", "register",
                    "type", "word_order", "scale", "offset", "timeout"})) {
            return;
        }
        const auto p = path + ".modbus";
        if (!b["device"]) {
            r.error(b, p + ".device", "missing required key");
        } else if (r.string(b["device"], p + ".device", src.device)) {
            if (src.device.rfind("tcp://", 0) == 0) {
                const auto problem = check_authority(src.device.substr(6));
                if (!problem.empty())
                    r.error(b["device"], p + ".device", fmt::format("'{}': {}", shown(src.device), problem));
            } else if (src.device.rfind("rtu:", 0) != 0 || src.device.size() <= 4) {
                r.error(b["device"], p + ".device",
                        fmt::format("'{}' is not tcp://host:port or rtu:/dev/ttyXXX", src.device));
            }
        }
        if (b["baud"]) r.integer(b["baud"], p + ".baud", src.baud, 300, 1000000);
        if (b["parity"]) {
            std::string parity;
            if (r.string(b["parity"], p + ".parity", parity)) {
                if (parity != "N" && parity != "E" && parity != "O") {
                    r.error(b["parity"], p + ".parity", "expected N, E or O");
                } else {
                    src.parity = parity[0];
                }
            }
        }
        if (b["data_bits"]) r.integer(b["data_bits"], p + ".data_bits", src.data_bits, 5, 8);
        if (b["stop_bits"]) r.integer(b["stop_bits"], p + ".stop_bits", src.stop_bits, 1, 2);
        if (b["unit_id"]) {
            // Modbus TCP devices and gateways often answer as 255 only; libmodbus refuses 248..254 on
            // TCP (and would read the unit set before). On a serial line 248..255 are reserved; 0 is
            // the broadcast address, which no unit answers: a doubt, not an error, as it loaded before.
            const bool tcp = src.device.rfind("tcp://", 0) == 0;
            int id = 0;
            if (r.integer(b["unit_id"], p + ".unit_id", id, std::numeric_limits<int>::min(),
                          std::numeric_limits<int>::max())) {
                if (id < 0 || (id > 247 && !(tcp && id == 255))) {
                    r.error(b["unit_id"], p + ".unit_id",
                            fmt::format("sensor '{}': unit_id {} is out of range for Modbus {}", sensor, id,
                                        tcp ? "TCP (0..247 or 255)" : "RTU (0..247)"));
                } else {
                    src.unit_id = id;
                }
            }
        }
        if (b["address"]) {
            r.integer(b["address"], p + ".address", src.address, 0, 65535);
        } else {
            r.error(b, p + ".address", "missing required key");
        }
        if (b["register"]) {
            std::string reg;
            if (r.string(b["register"], p + ".register", reg)) {
                if (reg != "holding" && reg != "input")
                    r.error(b["register"], p + ".register", "expected holding or input");
                src.input_register = reg == "input";
            }
        }
        if (b["type"]) {
            std::string type;
            if (r.string(b["type"], p + ".type", type)) {
                static const std::map<std::string, SensorSource::Type> types{
                    {"int16", SensorSource::Type::int16},
                    {"uint16", SensorSource::Type::uint16},
                    {"int32", SensorSource::Type::int32},
                    {"uint32", SensorSource::Type::uint32},
                    {"float32", SensorSource::Type::float32}};
                if (auto it = types.find(type); it != types.end()) {
                    src.type = it->second;
                } else {
                    r.error(b["type"], p + ".type",
                            fmt::format("'{}' is not int16, uint16, int32, uint32 or float32", type));
                }
            }
        }
        if (b["word_order"]) {
            std::string order;
            if (r.string(b["word_order"], p + ".word_order", order)) {
                if (order != "big" && order != "little")
                    r.error(b["word_order"], p + ".word_order", "expected big or little");
                src.low_word_first = order == "little";
            }
        }
        // Two registers from the address on: the last one has no second (the installer review).
        if (src.address == 65535 && src.type != SensorSource::Type::int16 &&
            src.type != SensorSource::Type::uint16)
            r.error(b["address"], p + ".address",
                    "65535 is the last register: a 32-bit type reads two, from at most 65534");
        if (b["scale"] && r.number(b["scale"], p + ".scale", src.scale, -1e9, 1e9) && src.scale == 0)
            r.error(b["scale"], p + ".scale",
                    "0 would make every reading 0 (the value is register x scale + offset)");
        if (b["offset"]) r.number(b["offset"], p + ".offset", src.offset, -1e9, 1e9);
        if (b["timeout"] && r.duration(b["timeout"], p + ".timeout", src.response_timeout) &&
            src.response_timeout > std::chrono::seconds(60))
            r.error(b["timeout"], p + ".timeout", "at most 60s");
    } else {
        r.error(n, path, "expected mqtt or modbus");
    }
}

}  // namespace

void read_sensor(Reader& r, const YAML::Node& n, const std::string& path, Sensor& s) {
    s.source_line = n.Mark().line + 1;
    if (!r.map(n, path,
               {"id", "name", "kind", "location", "unit", "interval", "stale_after", "valid_range", "source",
                "thresholds", "disinfection"})) {
        return;
    }
    if (n["id"]) {
        r.id(n["id"], path + ".id", s.id);
    } else {
        r.error(n, path + ".id", "missing required key");
    }
    if (n["name"]) r.string(n["name"], path + ".name", s.name);
    if (s.name.empty()) s.name = s.id;
    // The kinds are compared as words: `Gas` or ` gas` missed the gas detector's defaults (an alarm
    // at the first reading) and got a fridge's ten minutes instead, without a word.
    if (n["kind"] && r.string(n["kind"], path + ".kind", s.kind)) s.kind = lower_trimmed(s.kind);
    if (n["location"]) r.string(n["location"], path + ".location", s.location);
    if (n["unit"]) {
        r.short_text(n["unit"], path + ".unit", s.unit, kMaxUnitBytes, true);
    } else {
        s.unit = default_unit(s.kind);
    }
    if (n["interval"]) r.duration(n["interval"], path + ".interval", s.interval);
    if (n["stale_after"]) r.integer(n["stale_after"], path + ".stale_after", s.stale_after, 1, 1000);
    if (const auto v = n["valid_range"]) {
        double lo = 0, hi = 0;
        if (!v.IsSequence() || v.size() != 2) {
            r.error(v, path + ".valid_range", "expected [min, max]");
        } else if (r.number(v[0], path + ".valid_range", lo, -1e9, 1e9) &&
                   r.number(v[1], path + ".valid_range", hi, -1e9, 1e9)) {
            // Not kept when refused: the thresholds' checks against it would add errors of their own.
            if (lo >= hi) {
                r.error(v, path + ".valid_range", "min must be below max");
            } else {
                s.min_valid = lo;
                s.max_valid = hi;
            }
        }
    }
    if (n["source"]) {
        read_source(r, n["source"], path + ".source", s.id, s.source);
        if (s.source.kind == SensorSource::Kind::mqtt) {
            // Each node asked whether it is there before what it is: yaml-cpp throws for the type of
            // a key that is missing, and `source: {}` ended the reading of the whole document there
            // (every later error unsaid, and this one without its line).
            const auto source = n["source"];
            const auto mqtt = source.IsMap() ? source["mqtt"] : YAML::Node();
            s.value_path_given = mqtt && mqtt.IsMap() && mqtt["value"];
            if (!s.value_path_given) s.source.value_path = default_value_path(s.kind);
        }
    } else {
        r.error(n, path + ".source", "missing required key");
    }
    if (const auto t = n["thresholds"]) {
        if (!t.IsSequence()) {
            r.error(t, path + ".thresholds", "expected a list");
        } else {
            for (std::size_t i = 0; i < t.size(); ++i) {
                const auto key = fmt::format("{}.thresholds[{}]", path, i);
                Threshold th;
                if (!r.map(t[i], key,
                           {"label", "above", "below", "hysteresis", "for", "clear_for", "cooldown",
                            "severity", "schedule"})) {
                    continue;
                }
                if (t[i]["above"] && t[i]["below"]) r.error(t[i], key, "one of above or below, not both");
                if (t[i]["above"]) {
                    r.number(t[i]["above"], key + ".above", th.value, -1e9, 1e9);
                } else if (t[i]["below"]) {
                    th.above = false;
                    r.number(t[i]["below"], key + ".below", th.value, -1e9, 1e9);
                } else {
                    r.error(t[i], key, "missing above or below");
                }
                th.label = th.above ? "too_high" : "too_low";
                if (t[i]["label"]) r.short_text(t[i]["label"], key + ".label", th.label, kMaxNameBytes);
                // A door, gas, smoke or leak detector reports a state, 1 or 0 (a Modbus register, a
                // number in JSON): past `above: 0` by 0.5 is a value it never sends, and its first
                // alarm would never end.
                if (s.kind == "door" || s.kind == "gas" || s.kind == "smoke" || s.kind == "leak")
                    th.hysteresis = 0;
                if (t[i]["hysteresis"]) {
                    r.number(t[i]["hysteresis"], key + ".hysteresis", th.hysteresis, 0, 1e6);
                    th.hysteresis_given = true;
                }
                // The same, said at load, for a Modbus sensor whose valid range leaves no value to end
                // on. Not for MQTT: a true/false payload ends without hysteresis (sensor_rules.cpp).
                const bool numbers_only = s.source.kind == SensorSource::Kind::modbus;
                if (numbers_only && t[i]["above"] && s.min_valid && th.value - th.hysteresis < *s.min_valid) {
                    r.error(t[i], key,
                            fmt::format(
                                "above {} with hysteresis {} ends only at or under {}, below valid_range's "
                                "{}: the event could never end",
                                th.value, th.hysteresis, th.value - th.hysteresis, *s.min_valid));
                } else if (numbers_only && t[i]["below"] && s.max_valid &&
                           th.value + th.hysteresis > *s.max_valid) {
                    r.error(t[i], key,
                            fmt::format(
                                "below {} with hysteresis {} ends only at or over {}, above valid_range's "
                                "{}: the event could never end",
                                th.value, th.hysteresis, th.value + th.hysteresis, *s.max_valid));
                }
                // A gas or smoke alarm is a danger now, not a fridge warming through a delivery:
                // without a `for` of its own it raises at the first reading past the limit.
                if (s.kind == "gas" || s.kind == "smoke") th.for_time = Duration::zero();
                if (t[i]["for"]) {
                    r.duration(t[i]["for"], key + ".for", th.for_time, true);
                    th.for_given = true;
                }
                if (t[i]["clear_for"]) r.duration(t[i]["clear_for"], key + ".clear_for", th.clear_for, true);
                if (t[i]["cooldown"]) r.duration(t[i]["cooldown"], key + ".cooldown", th.cooldown, true);
                if (t[i]["severity"]) r.integer(t[i]["severity"], key + ".severity", th.severity, 1, 3);
                if (t[i]["schedule"]) r.string(t[i]["schedule"], key + ".schedule", th.schedule);
                s.thresholds.push_back(th);
            }
        }
    }
    if (const auto d = n["disinfection"];
        d && r.map(d, path + ".disinfection", {"setpoint", "min_time", "schedule", "severity"})) {
        Disinfection dis;
        const auto key = path + ".disinfection";
        if (d["setpoint"]) r.number(d["setpoint"], key + ".setpoint", dis.setpoint, -1e6, 1e6);
        if (d["min_time"]) r.duration(d["min_time"], key + ".min_time", dis.min_time);
        if (d["schedule"]) {
            r.string(d["schedule"], key + ".schedule", dis.schedule);
        } else {
            r.error(d, key + ".schedule",
                    "missing required key: the meal windows after which a cycle is due");
        }
        if (d["severity"]) r.integer(d["severity"], key + ".severity", dis.severity, 1, 3);
        s.disinfection = dis;
    }
}

}  // namespace detail

std::pair<std::string, std::string> modbus_host_port(std::string authority) {
    authority = authority.substr(0, authority.find_first_of("/?#"));
    if (const auto at = authority.rfind('@'); at != std::string::npos) authority = authority.substr(at + 1);
    std::string host = authority, port = "502";
    if (!authority.empty() && authority.front() == '[') {
        const auto close = authority.find(']');
        host = authority.substr(1, close - 1);
        if (close + 2 < authority.size() && authority[close + 1] == ':') port = authority.substr(close + 2);
    } else if (const auto colon = authority.rfind(':'); colon != std::string::npos) {
        host = authority.substr(0, colon);
        if (colon + 1 < authority.size()) port = authority.substr(colon + 1);
    }
    return {host, port};
}

std::string modbus_connection(const std::string& device) {
    if (detail::starts_with(device, "tcp://")) {
        auto [host, port] = modbus_host_port(device.substr(6));
        host = detail::lower_trimmed(host);
        // "0502" is port 502 too.
        if (const auto digits = port.find_first_not_of('0'); digits != std::string::npos && digits > 0)
            port = port.substr(digits);
        if (host.find(':') != std::string::npos) return fmt::format("tcp://[{}]:{}", host, port);
        return fmt::format("tcp://{}:{}", host, port);
    }
    if (detail::starts_with(device, "rtu:")) {
        std::error_code ec;
        const auto resolved = fs::canonical(device.substr(4), ec);
        if (!ec) return "rtu:" + resolved.string();
    }
    return device;
}

}  // namespace kg::config
