#pragma once
// The readers of the configuration's parts, each defined in the read_*.cpp file named for what it
// reads; config_loader.cpp reads the document with them (nothing outside src/config includes it).

#include <yaml-cpp/yaml.h>

#include <array>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "config/read_helpers.hpp"

namespace kg::config::detail {

// read_cameras.cpp: what every camera starts from (`defaults`), and each camera.
struct CameraDefaults {
    Input input;
    Analysis analysis;
    Health health;
    Scene scene;
    std::vector<std::string> checks{"camera_health"};
    std::map<std::string, Rule> rules;
};
void read_defaults(Reader& r, const YAML::Node& n, CameraDefaults& d);
void read_camera(Reader& r, const YAML::Node& n, const std::string& path, const CameraDefaults& d,
                 Camera& cam);

// read_sensors.cpp: each sensor, its MQTT or Modbus source, its thresholds and disinfection; the
// sensor kinds the gateway treats apart (for doubts()).
extern const std::array<std::string_view, 8> kKnownKinds;
bool known_kind(const std::string& kind);
void read_sensor(Reader& r, const YAML::Node& n, const std::string& path, Sensor& s);

// read_schedules.cpp: the named schedules.
void read_schedules(Reader& r, const YAML::Node& n, std::vector<Schedule>& schedules);

// read_links.cpp: the MQTT broker, the sensors' broker, the public side and the local API.
void read_mqtt(Reader& r, const YAML::Node& n, Mqtt& m);
void read_sensors_broker(Reader& r, const YAML::Node& n, std::optional<BrokerAccount>& out);
void read_public(Reader& r, const YAML::Node& p, Public& pub);
void read_api(Reader& r, const YAML::Node& a, Api& api);
void check_listeners_apart(Reader& r, const YAML::Node& root, const Gateway& g);

// read_storage.cpp: the outbox, evidence and training frames.
void read_outbox(Reader& r, const YAML::Node& n, Outbox& o);
void read_evidence(Reader& r, const YAML::Node& n, Evidence& e);
void read_training_frames(Reader& r, const YAML::Node& n, TrainingFrames& t);

// cross_references.cpp: the rules that need the whole document.
void check_references(Reader& r, const YAML::Node& root, Gateway& g);

}  // namespace kg::config::detail
