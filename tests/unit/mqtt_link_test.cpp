// The gateway's MQTT link against a real Mosquitto: what a new connection publishes first.
#include "publish/mqtt_link.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/logging.hpp"
#include "common/tcp_probe.hpp"
#include "test_broker.hpp"

namespace {

// Every topic published under kitchen/s/, in the order the broker hands them on, with its payload.
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
    std::vector<std::string> payloads() {
        std::lock_guard lock(mutex_);
        return payloads_;
    }
    // The first `n` messages, as "topic payload" lines: what a failure shows.
    std::string first(std::size_t n) {
        std::lock_guard lock(mutex_);
        std::string out;
        for (std::size_t i = 0; i < std::min(n, topics_.size()); ++i)
            out += topics_[i] + " " + payloads_[i] + "\n";
        return out;
    }

private:
    void message_arrived(mqtt::const_message_ptr msg) override {
        std::lock_guard lock(mutex_);
        topics_.push_back(msg->get_topic());
        payloads_.push_back(msg->to_string());
    }
    mqtt::async_client client_;
    std::mutex mutex_;
    std::vector<std::string> topics_, payloads_;
};

}  // namespace

// A camera added by a reload: its state published on the new connection before the gateway message
// that lists it was ignored by the room, as a camera the site does not have, until the next state
// interval. The link holds such publishes until the connection's hooks (the gateway message) ran: on
// its first connection, and on the one it makes after the broker restarted.
TEST(MqttLink, ANewConnectionsHooksPublishBeforeAnyState) {
    if (!kg::test::TestBroker::available())
        GTEST_SKIP() << "needs Mosquitto (" << kg::test::TestBroker::kMosquitto << ")";
    kg::test::TestBroker broker;
    auto recorder = std::make_unique<Recorder>(broker.url());
    kg::config::Mqtt cfg;
    cfg.url = broker.url();
    cfg.client_id = "mqtt-link-test";
    cfg.reconnect_min = std::chrono::seconds(1);  // the second recorder subscribes meanwhile
    kg::publish::MqttLink link(cfg, "kitchen/s/availability", kg::Logging::null_logger());
    std::atomic<bool> stop{false};
    std::atomic<int> refused{0};
    // The connection the current recorder was subscribed for: the gateway message is not retained,
    // so a recorder subscribed after it would never see it.
    std::atomic<std::uint64_t> recorder_ready{1};
    const auto wait_until = [](const auto& done) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15);
        while (!done() && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        return done();
    };
    link.on_connected([&] {
        const auto connection = link.connection();
        EXPECT_TRUE(wait_until([&] { return recorder_ready.load() >= connection; }))
            << "no recorder for connection " << connection;
        // A slow hook: the states keep coming meanwhile, as the gateway's tick sends them, and are
        // refused while it runs.
        const int before = refused.load();
        EXPECT_TRUE(wait_until([&] { return refused.load() >= before + 2; }))
            << "no state was refused while the hooks of connection " << connection << " ran";
        // Not retained here: a new subscriber then sees it only in the order it was sent.
        EXPECT_TRUE(link.publish("kitchen/s/gateway", "{}", 1, false));
        EXPECT_FALSE(link.announced());
    });
    std::thread states([&] {
        while (!stop) {
            // Counted only while connected: refused then means held for the hooks. The payload says
            // which connection the link was on when it was published, for a failure to show.
            const auto payload = "{\"connection\": " + std::to_string(link.connection()) + "}";
            if (!link.publish("kitchen/s/cameras/c/state", payload, 1, false) && link.connected()) ++refused;
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    });
    link.start();
    for (std::uint64_t connection = 1; connection <= 2; ++connection) {
        SCOPED_TRACE("connection " + std::to_string(connection));
        if (connection == 2) {
            broker.restart();
            recorder = std::make_unique<Recorder>(broker.url());
            recorder_ready = connection;
        }
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15);
        const auto tag = "{\"connection\": " + std::to_string(connection) + "}";
        const auto states_seen = [&] {  // this connection's
            const auto p = recorder->payloads();
            return std::count(p.begin(), p.end(), tag);
        };
        while (states_seen() < 5 && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        EXPECT_EQ(link.connection(), connection);
        EXPECT_TRUE(link.announced());
        const auto topics = recorder->topics();
        const auto payloads = recorder->payloads();
        // A state published on an earlier connection and not acknowledged before the broker went is
        // sent again by Paho at the reconnect, before any hook: it came after its own connection's
        // gateway message, which is what the room needs. This connection's states must wait for
        // this connection's.
        auto first_state = topics.begin();
        while (first_state != topics.end() &&
               !(*first_state == "kitchen/s/cameras/c/state" &&
                 payloads[static_cast<std::size_t>(first_state - topics.begin())] == tag))
            ++first_state;
        const auto gateway = std::find(topics.begin(), topics.end(), "kitchen/s/gateway");
        // No ASSERT here: the states' thread must be joined before the test returns.
        if (first_state == topics.end() || gateway == topics.end()) {
            ADD_FAILURE() << "no state or no gateway message arrived";
            continue;
        }
        EXPECT_LT(gateway - topics.begin(), first_state - topics.begin())
            << "a state came before the gateway message:\n"
            << recorder->first(static_cast<std::size_t>(gateway - topics.begin()) + 1);
    }
    stop = true;
    states.join();
    link.stop();
    EXPECT_GE(refused.load(), 4);  // held while the hooks ran, twice, not queued
}

// The gateway clears the retained states of cameras it does not have (Gateway::note_state): it needs
// each message's topic, not only its payload, and whether the broker had stored it. What the link
// publishes itself comes back on its own filter too (MQTT 3.1.1 has no no-local), never retained.
TEST(MqttLink, AWildcardSubscriptionSaysTheTopicAndWhetherTheMessageWasStored) {
    if (!kg::test::TestBroker::available())
        GTEST_SKIP() << "needs Mosquitto (" << kg::test::TestBroker::kMosquitto << ")";
    kg::test::TestBroker broker;
    {
        mqtt::async_client before(broker.url(), "mqtt-link-test-before");
        before.connect(mqtt::connect_options_builder().clean_session(true).finalize())->wait();
        before.publish("kitchen/s/cameras/gone/state", std::string("{}"), 1, true)->wait();
        before.disconnect()->wait();
    }
    kg::config::Mqtt cfg;
    cfg.url = broker.url();
    cfg.client_id = "mqtt-link-test";
    kg::publish::MqttLink link(cfg, "kitchen/s/availability", kg::Logging::null_logger());
    std::mutex mutex;
    std::vector<kg::publish::MqttLink::Message> got;  // under mutex
    link.subscribe("kitchen/s/cameras/+/state", [&](const kg::publish::MqttLink::Message& m) {
        std::lock_guard lock(mutex);
        got.push_back(m);
    });
    const auto received = [&] {
        std::lock_guard lock(mutex);
        return got;
    };
    const auto wait_for = [&](std::size_t n) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (received().size() < n && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        return received().size() >= n;
    };
    link.start();
    ASSERT_TRUE(wait_for(1)) << "the stored state never came";
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!link.announced() && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_TRUE(link.publish("kitchen/s/cameras/own/state", "{\"online\":true}", 1, true));
    EXPECT_TRUE(wait_for(2)) << "the link's own publish did not come back";
    link.stop();
    const auto messages = received();
    ASSERT_EQ(messages.size(), 2u);
    EXPECT_EQ(messages[0].topic, "kitchen/s/cameras/gone/state");
    EXPECT_EQ(messages[0].payload, "{}");
    EXPECT_TRUE(messages[0].retained);
    EXPECT_EQ(messages[1].topic, "kitchen/s/cameras/own/state");
    EXPECT_EQ(messages[1].payload, "{\"online\":true}");
    EXPECT_FALSE(messages[1].retained);  // published while subscribed, though retained at the broker
}

// Held for the connection, the gateway's subscription to its site's states brought back every state
// it published (3.1.1 has no no-local): twice the state traffic on a metered link. An optional
// subscription now reads what the broker stored and is dropped a few seconds after the SUBACK.
TEST(MqttLink, AnOptionalSubscriptionIsDroppedOnceTheStoredMessagesCame) {
    if (!kg::test::TestBroker::available())
        GTEST_SKIP() << "needs Mosquitto (" << kg::test::TestBroker::kMosquitto << ")";
    kg::test::TestBroker broker;
    mqtt::async_client other(broker.url(), "mqtt-link-test-other");
    other.connect(mqtt::connect_options_builder().clean_session(true).finalize())->wait();
    other.publish("kitchen/s/cameras/gone/state", std::string("{}"), 1, true)->wait();
    kg::config::Mqtt cfg;
    cfg.url = broker.url();
    cfg.client_id = "mqtt-link-test";
    kg::publish::MqttLink link(cfg, "kitchen/s/availability", kg::Logging::null_logger());
    std::mutex mutex;
    std::vector<std::string> states, replays;  // under mutex
    link.subscribe("kitchen/s/replay", [&](const kg::publish::MqttLink::Message& m) {
        std::lock_guard lock(mutex);
        replays.push_back(m.payload);
    });
    link.subscribe(
        "kitchen/s/cameras/+/state",
        [&](const kg::publish::MqttLink::Message& m) {
            std::lock_guard lock(mutex);
            states.push_back(m.topic + (m.retained ? " retained" : ""));
        },
        kg::publish::MqttLink::Need::optional);
    const auto within = [](std::chrono::seconds limit, const auto& done) {
        const auto until = std::chrono::steady_clock::now() + limit;
        while (!done() && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        return done();
    };
    const auto got = [&](std::vector<std::string>& v) {
        std::lock_guard lock(mutex);
        return v;
    };
    link.start();
    ASSERT_TRUE(within(std::chrono::seconds(10), [&] { return link.optional_held(); })) << "never subscribed";
    ASSERT_TRUE(within(std::chrono::seconds(10), [&] { return !got(states).empty(); }))
        << "nothing stored came";
    // While held, the link's own state comes back: what the subscription cost before.
    ASSERT_TRUE(link.publish("kitchen/s/cameras/own/state", "{\"online\":true}", 1, true));
    ASSERT_TRUE(within(std::chrono::seconds(10), [&] { return got(states).size() == 2; }));
    ASSERT_TRUE(within(std::chrono::seconds(15), [&] { return !link.optional_held(); }))
        << "never unsubscribed";
    // The broker hands one client's messages on in order: once the replay message that followed them
    // came, the states before it would have too.
    EXPECT_TRUE(link.publish("kitchen/s/cameras/own/state", "{\"online\":false}", 1, true));
    other.publish("kitchen/s/cameras/late/state", std::string("{}"), 1, true)->wait();
    EXPECT_TRUE(link.publish("kitchen/s/replay", "after the link's own", 1, false));
    other.publish("kitchen/s/replay", std::string("after the other's"), 1, false)->wait();
    EXPECT_TRUE(within(std::chrono::seconds(10), [&] { return got(replays).size() == 2; }));
    link.stop();
    other.disconnect()->wait();
    EXPECT_EQ(got(states), (std::vector<std::string>{"kitchen/s/cameras/gone/state retained",
                                                     "kitchen/s/cameras/own/state"}));
}

// Behind bridged brokers the node a gateway left publishes its last will after the gateway came back
// through another: the retained `offline` reached the room after the new connection's `online`, and
// the room showed the live site offline for good (the 55th session's review). The link says
// `online` again; a clean stop's own `offline` stays.
TEST(MqttLink, AStaleLastWillWhileConnectedIsAnsweredOnline) {
    if (!kg::test::TestBroker::available())
        GTEST_SKIP() << "needs Mosquitto (" << kg::test::TestBroker::kMosquitto << ")";
    kg::test::TestBroker broker;
    kg::config::Mqtt cfg;
    cfg.url = broker.url();
    cfg.client_id = "mqtt-link-test";
    kg::publish::MqttLink link(cfg, "kitchen/s/availability", kg::Logging::null_logger());
    link.start();
    ASSERT_TRUE(link.wait_connected(std::chrono::seconds(10)));
    const auto retained_availability = [&] {
        // What a dashboard connecting now reads.
        mqtt::async_client reader(broker.url(), "mqtt-link-test-reader");
        std::string value;
        reader.start_consuming();
        reader.connect(mqtt::connect_options_builder().clean_session(true).finalize())->wait();
        reader.subscribe("kitchen/s/availability", 1)->wait();
        if (auto m = reader.try_consume_message_for(std::chrono::seconds(2))) value = m->to_string();
        reader.disconnect()->wait();
        return value;
    };
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (retained_availability() != "online" && std::chrono::steady_clock::now() < until) {
    }
    ASSERT_EQ(retained_availability(), "online");
    {
        mqtt::async_client bridge(broker.url(), "mqtt-link-test-bridge");
        bridge.connect(mqtt::connect_options_builder().clean_session(true).finalize())->wait();
        bridge.publish("kitchen/s/availability", std::string("offline"), 1, true)->wait();
        bridge.disconnect()->wait();
    }
    std::string now;
    const auto fixed_by = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while ((now = retained_availability()) != "online" && std::chrono::steady_clock::now() < fixed_by) {
    }
    EXPECT_EQ(now, "online") << "a live gateway left shown offline";
    link.stop();
    EXPECT_EQ(retained_availability(), "offline") << "a clean stop's offline was answered";
}

// Paho says "TCP/TLS connect failure" alike for a broker that is not running, a firewall and a
// port that is not a broker's: an installer could not tell which to look at (the 61st session's
// installer review). One connect of the gateway's own says which.
TEST(TcpProbe, SaysWhyABrokerCannotBeReached) {
    // A port bound but not listening: connects are refused, as with a broker that is not running.
    const int bound = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(bound, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(bound, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    socklen_t len = sizeof addr;
    ASSERT_EQ(::getsockname(bound, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    const auto port = std::to_string(ntohs(addr.sin_port));
    const auto refused = kg::tcp_probe("127.0.0.1", port, std::chrono::seconds(2));
    EXPECT_NE(refused.find("connection refused by 127.0.0.1 port " + port + ": nothing listens there"),
              std::string::npos)
        << refused;
    // Listening (a port that is not a broker's, or TLS spoken to in plain): the connection is made.
    ASSERT_EQ(::listen(bound, 4), 0);
    const auto made = kg::tcp_probe("127.0.0.1", port, std::chrono::seconds(2));
    EXPECT_NE(made.find("a TCP connection to 127.0.0.1 port " + port + " is made"), std::string::npos)
        << made;
    ::close(bound);
    const auto unknown = kg::tcp_probe("no-such-broker.invalid", "1883", std::chrono::seconds(2));
    EXPECT_NE(unknown.find("cannot resolve 'no-such-broker.invalid'"), std::string::npos) << unknown;

    using HostPort = std::pair<std::string, std::string>;
    EXPECT_EQ(kg::broker_host_port("mqtt://broker.lan"), (HostPort{"broker.lan", "1883"}));
    EXPECT_EQ(kg::broker_host_port("mqtts://u:p@broker.lan"), (HostPort{"broker.lan", "8883"}));
    EXPECT_EQ(kg::broker_host_port("ssl://10.0.0.5:9883"), (HostPort{"10.0.0.5", "9883"}));
    EXPECT_EQ(kg::broker_host_port("tcp://[fe80::1]:1884/"), (HostPort{"fe80::1", "1884"}));
    // Only Paho's TCP failure is probed: a broker that refused the password answered.
    EXPECT_EQ(kg::publish::tcp_failure_detail("tcp://127.0.0.1:1", "MQTT error [5]: CONNACK return code"),
              "");
    EXPECT_NE(
        kg::publish::tcp_failure_detail("tcp://127.0.0.1:" + port, "MQTT error [-1]: TCP/TLS connect failure")
            .find(" (TCP: connection refused"),
        std::string::npos);
}
