#pragma once
// The sensor side of the gateway: inputs (MQTT, Modbus) -> readings -> rules -> events, into the
// same outbox as the cameras'; current values as retained state and per-minute roll-ups.

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <vector>

#include "app/camera_pipeline.hpp"
#include "outbox/outbox.hpp"
#include "publish/mqtt_link.hpp"
#include "publish/topics.hpp"
#include "sensors/inputs.hpp"
#include "sensors/rollup.hpp"
#include "sensors/sensor_rules.hpp"

namespace kg::app {

class SensorHub {
public:
    SensorHub(const SiteContext& site, outbox::Outbox& outbox, publish::MqttLink& link,
              const publish::Topics& topics);
    ~SensorHub();

    void start();
    void stop();
    // Reading from any input thread.
    void on_reading(const sensors::Reading& reading);
    // Supervisor: staleness, disinfection windows, roll-ups of quiet minutes, state reports.
    void tick(TimePoint now, bool publish_states);

    std::size_t size() const { return entries_.size(); }
    // Current state of every sensor, for the local API and the metrics.
    nlohmann::json states(TimePoint now);

private:
    struct Entry {
        std::unique_ptr<sensors::SensorRules> rules;
        sensors::Roller roller;
        std::vector<std::string> last_conditions;
    };
    void deliver(std::vector<events::Event>& events);
    void publish_rollup(const config::Sensor& sensor, const sensors::Rollup& r);
    // `running` false: the gateway stops reading the sensor (a stop or a reload), so not online.
    void publish_state(const Entry& e, TimePoint now, bool running = true);

    const SiteContext& site_;
    outbox::Outbox& outbox_;
    publish::MqttLink& link_;
    const publish::Topics& topics_;
    std::shared_ptr<spdlog::logger> log_;

    std::mutex mutex_;  // readings arrive on input threads, ticks on the supervisor
    std::map<std::string, Entry> entries_;
    std::vector<events::Event> pending_;
    bool stopped_ = false;  // stop() ran: the destructor's call does nothing more

    std::unique_ptr<sensors::MqttSensorInput> mqtt_;
    std::vector<std::unique_ptr<sensors::ModbusPoller>> modbus_;
};

}  // namespace kg::app
