#pragma once
// The gateway's one connection to its MQTT broker (Paho). Keeps itself connected with capped
// back-off, sets the retained `offline` last will, publishes `online` on every connect, subscribes
// to the topics it was asked to (the room's replay requests, the site's retained states) and runs the
// on-connect hooks (retained state republished), and publishes `offline` on a clean stop.

#include <spdlog/logger.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/log_throttle.hpp"
#include "config/config.hpp"

namespace mqtt {
class async_client;
class connect_options_builder;
class delivery_token;
class token;
}  // namespace mqtt

namespace kg::publish {

// Paho C accepts tcp:// and ssl://; mqtt:// and mqtts:// are the spellings users know.
std::string paho_uri(const std::string& url);

// TLS of a broker connection from the config (trust store, client certificate, server check), or
// the defaults (the system's trust store, the server checked) for a TLS URL without any; shared by
// the gateway's link, its sensor broker and kitchen-monitor's client.
// With `errors`, OpenSSL's reason for a failed handshake ("certificate verify failed") is kept
// there; Paho itself says only "TCP/TLS connect failure", the same as for a broker that is down.
class TlsErrors {
public:
    void add(const std::string& error);  // from Paho's thread
    std::string take();                  // the last one since the last take, or empty

private:
    std::mutex mutex_;
    std::string last_;
};
void apply_tls(mqtt::connect_options_builder& builder, const std::string& url,
               const std::optional<config::Tls>& tls, TlsErrors* errors = nullptr);

// A failed connect as an installer can act on it: Paho's text ("MQTT error [5]: CONNACK return
// code"), what the broker's refusal means (bad user name or password, not authorised, ...), and
// the TLS error kept in `tls`. `refused` is set when the broker itself refused (the credentials or
// the ACL: no retry will mend it).
std::string connect_failure(int return_code, const std::string& what, TlsErrors* tls,
                            bool* refused = nullptr);
// For Paho's "TCP/TLS connect failure" to `url`: what one TCP connect of our own finds (refused,
// no answer, no route, or made: the failure is in TLS or MQTT), as " (TCP: ...)"; else empty. Takes
// up to 2 s: called where a failure is logged, not at every retry.
std::string tcp_failure_detail(const std::string& url, const std::string& what);

// One message handed to the broker, awaited through its delivery token. Waiting again on the
// same delivery (rather than publishing again) is what keeps a slow PUBACK from producing copies.
class Delivery {
public:
    enum class State { pending, acknowledged, failed };
    // Waits up to `timeout` for the broker's acknowledgement (PUBACK for QoS 1).
    State wait_for(std::chrono::milliseconds timeout);
    // The number of the link's connection it was sent on (MqttLink::connection()).
    std::uint64_t connection() const { return connection_; }

private:
    friend class MqttLink;
    Delivery(std::shared_ptr<mqtt::delivery_token> token, std::uint64_t connection)
        : token_(std::move(token)), connection_(connection) {}
    std::shared_ptr<mqtt::delivery_token> token_;
    std::uint64_t connection_;
};

class MqttLink {
public:
    MqttLink(config::Mqtt cfg, std::string availability_topic, std::shared_ptr<spdlog::logger> log);
    ~MqttLink();
    MqttLink(const MqttLink&) = delete;
    MqttLink& operator=(const MqttLink&) = delete;

    // A message on a subscribed topic.
    struct Message {
        std::string topic;
        std::string payload;
        // Stored by the broker and sent because of the subscription (MQTT sets the flag on nothing
        // else), not a publish that came while subscribed.
        bool retained = false;
    };
    // Whether the gateway does its work without a subscription. A required one is made before
    // `online` and the hooks, and held for the connection. An optional one only reads what the
    // broker has stored: the optional filters go in one SUBSCRIBE after the hooks, awaited by
    // nothing, and are unsubscribed kRetainedWindow after the SUBACK, since held they would bring
    // back every message the link publishes on them (3.1.1 has no no-local). Its refusal is a
    // warning once per run, and a connection lost while it is unanswered ends them for the run.
    // A watched one is made and held as a required one, but done without: its refusal is a warning
    // once per run, and a connection lost while it is made ends it for the run (a broker that
    // closes connections on a SUBSCRIBE its ACL denies would otherwise keep every alert back).
    enum class Need { required, optional, watch };

    // Hooks run on the link's thread after each successful connect, in registration order.
    void on_connected(std::function<void()> hook);
    // Subscribes (QoS 1) to `filter` (wildcards allowed) on every connect, as `need` says (the
    // session is clean, so the broker forgets it with each connection). `handler` gets each message
    // matching it on Paho's callback thread: it must not block, and publish() refuses there until
    // the hooks have run. Before start().
    void subscribe(std::string filter, std::function<void(const Message&)> handler,
                   Need need = Need::required);
    // This connection's optional subscriptions are granted and not yet unsubscribed (tests).
    bool optional_held() const { return optional_held_.load(); }

    void start();
    // Publishes `offline` (retained) if connected, disconnects, joins. Without `say_offline` (a
    // reload whose next run connects to the same broker as the same site) it disconnects without:
    // the room would see the site offline for the seconds the reload takes, as at a restart.
    void stop(bool say_offline = true);

    bool connected() const { return connected_.load(); }
    // Whether the broker is seen to take what this link publishes: its own `online` comes back to
    // its subscription to its availability topic. An MQTT 3.1.1 broker acknowledges a publish its
    // ACL refuses as if it took it (Mosquitto 2.0), so the acknowledgement alone proves nothing.
    // Unknown before the first connect, and on a connection where it could not be checked (the
    // broker refused the subscription itself, or did not answer it).
    enum class Reach { unknown, confirmed, refused };
    Reach reach() const { return reach_.load(); }
    // Why nothing is sent while connected to the broker (for /readyz), or empty.
    std::string reach_problem() const;
    // Connected, and this connection's on_connected hooks have run: publish() takes anything.
    bool announced() const { return connected_.load() && announced_.load(); }
    // Blocks until connected, stopped or `timeout`; true if connected.
    bool wait_connected(std::chrono::milliseconds timeout);

    // Counts successful connects: a delivery sent on an older connection than this one was cut
    // off by a connection loss.
    std::uint64_t connection() const { return connection_.load(); }

    // Hands the message to the broker without waiting; nullopt (logged at debug) if not connected
    // or refused at once. The caller keeps the message until the delivery is acknowledged.
    std::optional<Delivery> send(const std::string& topic, const std::string& payload, int qos, bool retain);
    // Publishes without waiting (retained state). False if not connected, and, on a new connection,
    // until its on_connected hooks have run, unless called from them: the room learns what the site
    // has (the gateway message a hook publishes) before a state of a camera or sensor it would not
    // know yet. send() is not held: an alert does not wait.
    bool publish(const std::string& topic, const std::string& payload, int qos, bool retain);

private:
    struct Listener;
    void run();
    bool connect_once();
    struct Subscription;
    // True when the broker granted it.
    bool subscribe_once(Subscription& s);
    // After `online` was acknowledged on a new connection: waits for it to come back on the link's
    // own subscription (granted on this connection). False (said) when it does not: the broker
    // drops what this link publishes, or hides its own topic from it.
    bool online_came_back();
    // Says why a subscription is not there: at every connect if it is needed, else once (under
    // mutex_ for an optional one: Paho's thread says it too).
    void subscription_missing(Subscription& s, const std::string& why);
    // After the hooks: asks for the optional subscriptions without waiting for the answer.
    void subscribe_optional();
    // On Paho's thread: the SUBACK (or a failure) of this connection's optional subscriptions.
    void optional_answered(const mqtt::token& token, bool ok);
    // On the link's thread: what is due for them at `now` (a warning, the UNSUBSCRIBE), and when
    // the next step is due.
    std::chrono::steady_clock::time_point optional_due(std::chrono::steady_clock::time_point now);
    // Under mutex_, the connection having ended: true if an optional SUBSCRIBE was unanswered then
    // (the caller says, once, that they are not asked again).
    bool optional_lost();
    void say_optional_given_up();
    // On Paho's thread: a message on this gateway's own availability topic.
    void on_own_availability(const Message& m);

    config::Mqtt cfg_;
    std::string availability_topic_;
    std::shared_ptr<spdlog::logger> log_;
    TlsErrors tls_errors_;              // OpenSSL's reason for a failed handshake
    RepeatedFailure connect_failures_;  // connect attempts failed in a row, for the log
    // Paho's listeners of the optional SUBSCRIBE and UNSUBSCRIBE: before client_, so that they
    // outlive whatever of its threads still calls them.
    std::unique_ptr<Listener> subscribed_, unsubscribed_;
    std::unique_ptr<mqtt::async_client> client_;
    std::vector<std::function<void()>> hooks_;
    struct Subscription {
        std::string filter;
        std::function<void(const Message&)> handler;
        Need need;
        bool missing_said = false;  // on the link's thread: an optional one's absence was logged
        bool given_up = false;      // on the link's thread: a watched one, not made again this run
    };
    std::vector<Subscription> subscriptions_;
    // Under mutex_: this connection's optional subscriptions.
    struct Optional {
        enum class Step { none, asked, granted, leaving } step = Step::none;
        std::uint64_t connection = 0;                 // the connection they were asked on
        std::chrono::steady_clock::time_point since;  // of the step
        std::vector<std::string> granted;             // the filters the SUBACK granted
        bool unanswered_said = false;
    } optional_;
    bool optional_given_up_ = false;     // under mutex_: a connection was lost while one was unanswered
    std::uint64_t optional_events_ = 0;  // under mutex_: counts the answers, so that run() wakes
    std::atomic<bool> optional_held_{false};

    std::atomic<bool> connected_{false};
    std::atomic<bool> announced_{false};           // this connection's hooks have run
    std::atomic<std::thread::id> hooks_thread_{};  // where they run: the link's thread
    std::atomic<std::uint64_t> connection_{0};
    std::uint64_t losses_ = 0;                               // under mutex_: connection-lost callbacks so far
    std::chrono::steady_clock::time_point connected_since_;  // under mutex_
    std::atomic<bool> stop_{false};
    std::atomic<std::int64_t> availability_said_{0};  // steady ms when a stale `offline` was last logged
    std::atomic<Reach> reach_{Reach::unknown};
    bool online_echo_ = false;          // under mutex_: this connection's `online` came back
    RepeatedFailure refused_failures_;  // connections whose `online` never came back, for the log
    std::mutex mutex_;
    std::condition_variable cv_;
    std::thread thread_;
};

}  // namespace kg::publish
