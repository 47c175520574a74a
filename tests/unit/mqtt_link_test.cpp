// The gateway's MQTT link against a real Mosquitto: what a new connection publishes first.
#include "publish/mqtt_link.hpp"

#include <gtest/gtest.h>
#include <mqtt/async_client.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/logging.hpp"
#include "test_broker.hpp"

namespace {

// Every topic published under kitchen/s/, in the order the broker hands them on.
class Recorder : public mqtt::callback {
public:
    explicit Recorder(const std::string& url) : client_(url, "mqtt-link-test-recorder") {
        client_.set_callback(*this);
        client_.connect(mqtt::connect_options_builder().clean_session(true).finalize())->wait();
        client_.subscribe("kitchen/s/#", 1)->wait();
    }
    ~Recorder() override {
        try {
            client_.disconnect()->wait();
        } catch (const mqtt::exception&) {
        }
    }
    std::vector<std::string> topics() {
        std::lock_guard lock(mutex_);
        return topics_;
    }

private:
    void message_arrived(mqtt::const_message_ptr msg) override {
        std::lock_guard lock(mutex_);
        topics_.push_back(msg->get_topic());
    }
    mqtt::async_client client_;
    std::mutex mutex_;
    std::vector<std::string> topics_;
};

}  // namespace

// A camera added by a reload: its state published on the new connection before the gateway message
// that lists it was ignored by the room, as a camera the site does not have, until the next state
// interval. The link holds such publishes until the connection's hooks (the gateway message) ran.
TEST(MqttLink, ANewConnectionsHooksPublishBeforeAnyState) {
    if (!kg::test::TestBroker::available())
        GTEST_SKIP() << "needs Mosquitto (" << kg::test::TestBroker::kMosquitto << ")";
    kg::test::TestBroker broker;
    Recorder recorder(broker.url());
    kg::config::Mqtt cfg;
    cfg.url = broker.url();
    cfg.client_id = "mqtt-link-test";
    kg::publish::MqttLink link(cfg, "kitchen/s/availability", kg::Logging::null_logger());
    link.on_connected([&] {
        // A slow hook: the states keep coming meanwhile, as the gateway's tick sends them.
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        EXPECT_TRUE(link.publish("kitchen/s/gateway", "{}", 1, true));
        EXPECT_FALSE(link.announced());
    });
    std::atomic<bool> stop{false};
    std::atomic<int> refused{0};
    std::thread states([&] {
        while (!stop) {
            // Counted only while connected: refused then means held for the hooks.
            if (!link.publish("kitchen/s/cameras/c/state", "{}", 1, false) && link.connected()) ++refused;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    });
    link.start();
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    const auto count = [&](const std::string& topic) {
        const auto t = recorder.topics();
        return std::count(t.begin(), t.end(), topic);
    };
    while (count("kitchen/s/cameras/c/state") < 5 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    stop = true;
    states.join();
    EXPECT_TRUE(link.announced());
    link.stop();
    const auto topics = recorder.topics();
    const auto first_state = std::find(topics.begin(), topics.end(), "kitchen/s/cameras/c/state");
    const auto gateway = std::find(topics.begin(), topics.end(), "kitchen/s/gateway");
    ASSERT_NE(first_state, topics.end()) << "no state arrived";
    ASSERT_NE(gateway, topics.end()) << "no gateway message arrived";
    EXPECT_LT(gateway - topics.begin(), first_state - topics.begin())
        << "a state came before the gateway message";
    EXPECT_GT(refused.load(), 10);  // held while the hook ran, not queued
}
