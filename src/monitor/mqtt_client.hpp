#pragma once
// The monitor's connection to the central broker (Paho): subscribes to the site tree, hands each
// message to a callback on Paho's thread, publishes decisions with PUBACK confirmation, and keeps
// itself connected with capped back-off on its own thread. (The gateway's MqttLink only publishes
// and carries the gateway's availability will, so it does not fit here.)

#include <spdlog/logger.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/worker_thread.hpp"
#include "monitor/broker_link.hpp"
#include "monitor/monitor_config.hpp"
#include "publish/mqtt_link.hpp"

namespace mqtt {
class async_client;
}

namespace kg::monitor {

// The topic filters a monitor reads. With a share group the event streams (events, their
// snapshots and clip reports, sensor roll-ups, `lost` answers) go through `$share/<group>/...` so the
// instances split them; the retained site state (availability, gateway, camera and sensor state) is read by
// every instance, as brokers do not send retained messages to shared subscriptions.
std::vector<std::string> subscription_filters(const MqttSettings& cfg);

// The QoS the monitor asks for on a filter of subscription_filters(): 0 for the camera and sensor
// states, 1 for the rest. A state is retained and superseded every mqtt.state_interval, so a
// persistent session gains nothing by queueing it; queued at QoS 1 they filled the broker's
// max_queued_messages for a room away for minutes (300 sites: 240 a second, 100000 in 7 minutes),
// after which the broker dropped the alerts too. At QoS 0 Mosquitto queues none for an absent
// session (queue_qos0_messages off) nor counts them against the alerts' queue.
int subscription_qos(const std::string& filter);

class MqttClient {
public:
    using MessageHandler =
        std::function<void(const std::string& topic, const std::string& payload, bool retained)>;

    MqttClient(MqttSettings cfg, MessageHandler handler, std::shared_ptr<spdlog::logger> log);
    ~MqttClient();
    MqttClient(const MqttClient&) = delete;
    MqttClient& operator=(const MqttClient&) = delete;

    // Called (on the client's thread) after each connection whose events subscription the broker
    // granted. Set before start().
    void set_on_subscribed(std::function<void()> f) { on_subscribed_ = std::move(f); }

    void start();
    void stop();
    bool connected() const { return connected_.load(); }
    // Connected or not, since when, and the last error: what the sites' states are judged with.
    BrokerLinkState link() const { return link_.state(); }

    // QoS 1: waits for PUBACK; false on any failure or timeout (the caller tries again later).
    bool publish_confirmed(const std::string& topic, const std::string& payload, int qos,
                           std::chrono::milliseconds timeout);

private:
    bool connect_once();
    void run();
    // Tells the link an attempt failed (or the connection was lost) and why: the dashboard says it.
    void link_down(std::string why);

    MqttSettings cfg_;
    MessageHandler handler_;
    std::function<void()> on_subscribed_;
    std::shared_ptr<spdlog::logger> log_;
    publish::TlsErrors tls_errors_;  // OpenSSL's reason for a failed handshake
    std::unique_ptr<mqtt::async_client> client_;
    std::atomic<bool> connected_{false};
    std::atomic<std::uint64_t> losses_{0};  // connection-lost callbacks so far
    BrokerLink link_;
    WorkerThread worker_;
};

}  // namespace kg::monitor
