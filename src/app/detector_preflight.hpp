#pragma once
// What a configuration needs beyond its own file: every detector and model a camera uses loads
// (its manifest, its network files, in OpenCV), and the detector of each hygiene check reports
// what that check raises on. The loader reads only the YAML; without this, a mistyped model path
// passed --check-config and then stopped the gateway at start, or at a reload took the running
// gateway down, and a mask detector pointed at the head-covering model never raised an alarm.

#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/config_loader.hpp"

namespace kg::app {

// What a hygiene check runs: its detector (resolved: "auto" is the project's own model when
// installed, else the classic back-end), the config key that sets it, the label of the detector's
// boxes that raise the alarm, and the label its events carry. Null for any other check.
struct HygieneDetector {
    const char* key;
    std::string spec;
    const char* alarm_label;
    const char* event_label;
};
std::optional<HygieneDetector> hygiene_detector(const config::Gateway& cfg, const std::string& check);

// One error per detector that cannot serve, naming the key and the file; empty when all can.
// Loads each network once (a fraction of a second per model).
std::vector<config::ConfigError> check_detectors(const config::Gateway& cfg);

// load_file() and then check_detectors(): throws config::ConfigInvalid with every error.
config::Gateway load_and_check(const std::string& path);

}  // namespace kg::app
