#pragma once
// The MQTT topic tree (docs/mqtt.md): everything under <prefix>/<site>/.

#include <string>

namespace kg::publish {

class Topics {
public:
    Topics(const std::string& prefix, const std::string& site);

    const std::string& availability() const { return availability_; }  // retained online/offline
    const std::string& gateway() const { return gateway_; }            // retained gateway info
    const std::string& events() const { return events_; }              // QoS 1 event messages
    std::string camera_state(const std::string& camera) const;         // retained camera state
    std::string event_snapshot(const std::string& event_id) const;     // JPEG bytes
    std::string event_clip(const std::string& event_id) const;         // clip report JSON
    std::string sensor_state(const std::string& sensor) const;         // retained current value
    std::string sensor_rollup(const std::string& sensor) const;        // per-minute min/mean/max
    const std::string& replay() const { return replay_; }              // the room's replay requests
    const std::string& lost() const { return lost_; }                  // numbers that cannot be replayed

private:
    std::string base_, availability_, gateway_, events_, replay_, lost_;
};

}  // namespace kg::publish
