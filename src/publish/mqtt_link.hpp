#pragma once
// The gateway's one connection to its MQTT broker (Paho). Keeps itself connected with capped
// back-off, sets the retained `offline` last will, publishes `online` on every connect and runs
// the on-connect hooks (retained state republished), and publishes `offline` on a clean stop.

#include <spdlog/logger.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"

namespace mqtt {
class async_client;
class connect_options_builder;
}  // namespace mqtt

namespace kg::publish {

// Paho C accepts tcp:// and ssl://; mqtt:// and mqtts:// are the spellings users know.
std::string paho_uri(const std::string& url);

// TLS of a broker connection from the config (trust store, client certificate, server check);
// shared by the gateway's link and kitchen-monitor's client.
void apply_tls(mqtt::connect_options_builder& builder, const config::Tls& tls);

class MqttLink {
public:
    MqttLink(config::Mqtt cfg, std::string availability_topic, std::shared_ptr<spdlog::logger> log);
    ~MqttLink();
    MqttLink(const MqttLink&) = delete;
    MqttLink& operator=(const MqttLink&) = delete;

    // Hooks run on the link's thread after each successful connect, in registration order.
    void on_connected(std::function<void()> hook);

    void start();
    // Publishes `offline` (retained) if connected, disconnects, joins.
    void stop();

    bool connected() const { return connected_.load(); }
    // Blocks until connected, stopped or `timeout`; true if connected.
    bool wait_connected(std::chrono::milliseconds timeout);

    // Publishes and waits for the broker's acknowledgement (PUBACK for QoS 1). False on any
    // failure or timeout; the caller keeps the message and tries again.
    bool publish_confirmed(const std::string& topic, const std::string& payload, int qos, bool retain,
                           std::chrono::milliseconds timeout);
    // Publishes without waiting (retained state). False if not connected.
    bool publish(const std::string& topic, const std::string& payload, int qos, bool retain);

private:
    void run();
    bool connect_once();

    config::Mqtt cfg_;
    std::string availability_topic_;
    std::shared_ptr<spdlog::logger> log_;
    std::unique_ptr<mqtt::async_client> client_;
    std::vector<std::function<void()>> hooks_;

    std::atomic<bool> connected_{false};
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::condition_variable cv_;
    std::thread thread_;
};

}  // namespace kg::publish
