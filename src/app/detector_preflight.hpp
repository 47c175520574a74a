#pragma once
// What a configuration needs beyond its own file: every detector and model a camera uses loads
// (its manifest, its network files, in OpenCV), and the detector of each hygiene check reports
// what that check raises on. The loader reads only the YAML; without this, a mistyped model path
// passed --check-config and then stopped the gateway at start, or at a reload took the running
// gateway down, and a mask detector pointed at the head-covering model never raised an alarm.

#include <vector>

#include "config/config.hpp"
#include "config/config_loader.hpp"

namespace kg::app {

// One error per detector that cannot serve, naming the key and the file; empty when all can.
// Loads each network once (a fraction of a second per model).
std::vector<config::ConfigError> check_detectors(const config::Gateway& cfg);

// load_file() and then check_detectors(): throws config::ConfigInvalid with every error.
config::Gateway load_and_check(const std::string& path);

}  // namespace kg::app
