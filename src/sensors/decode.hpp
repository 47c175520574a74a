#pragma once
// Turning what sensors send into numbers: Modbus registers by data type and word order, and a
// value found by a dotted path in a JSON payload (Zigbee2MQTT, Tasmota).

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/time.hpp"
#include "config/config.hpp"

namespace kg::sensors {

// Number of 16-bit registers a value of this type spans.
int register_count(config::SensorSource::Type type);
// raw registers -> value * scale + offset.
double decode_registers(const std::vector<std::uint16_t>& regs, const config::SensorSource& src);

// The JSON value at `path` ("a.b.c"; array indexes as numbers: "sensors.0.t"), or null.
const nlohmann::json* node_at(const nlohmann::json& doc, const std::string& path);
// The number at `path`, if there is one.
// Numbers given as strings ("4.2") count; anything else is nullopt.
std::optional<double> number_at(const nlohmann::json& doc, const std::string& path);
// Whether the value at `path` is true or false (number_at reads it as 1 or 0).
bool boolean_at(const nlohmann::json& doc, const std::string& path);
// Whether a payload says its device has no measurement: "nan" (ESPHome's state when a probe does
// not answer; not JSON, so `doc` is discarded and only a whole payload can say it), or a null or
// "nan" value at `path`. Such a message is an invalid reading, not garbage: the device is alive.
bool says_no_measurement(const nlohmann::json& doc, std::string_view payload, const std::string& path);
// The time at `path`: ISO 8601 (with Z or an offset; a fraction of any length) or epoch seconds,
// milliseconds, microseconds or nanoseconds (told apart by size); nothing outside 1970-2200.
std::optional<TimePoint> time_at(const nlohmann::json& doc, const std::string& path);

}  // namespace kg::sensors
