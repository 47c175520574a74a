#pragma once
// Operators' decisions -> the site: every recorded action (acknowledge, close, note) is published on
// <prefix>/<site>/decisions/<event id> at QoS 1 (docs/mqtt.md, docs/schemas/decision.schema.json).
// The action is committed to the store first and marked published only after the broker's PUBACK,
// so a broker outage or a restart of the monitor delays a decision but never loses it.

#include <spdlog/logger.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/worker_thread.hpp"
#include "monitor/mqtt_client.hpp"
#include "monitor/store.hpp"

namespace kg::monitor {

std::string decision_topic(const std::string& prefix, const ActionRecord& action);
// decision_id is "<recording instance's client id>-<action seq>": unique across instances and the
// same on every (re)delivery, so the site deduplicates by it.
nlohmann::json decision_payload(const ActionRecord& action, const std::optional<Alert>& alert);

class DecisionPublisher {
public:
    DecisionPublisher(Store& store, MqttClient& mqtt, std::string prefix,
                      std::shared_ptr<spdlog::logger> log);
    ~DecisionPublisher() { stop(); }

    void start();
    void stop() { worker_.stop(); }
    // A new action was recorded: publish it now rather than at the next poll.
    void wake() { worker_.wake(); }

private:
    void run();
    bool publish_pending();  // false when the broker did not take one (wait before retrying)

    Store& store_;
    MqttClient& mqtt_;
    std::string prefix_;
    std::shared_ptr<spdlog::logger> log_;
    WorkerThread worker_;
};

}  // namespace kg::monitor
