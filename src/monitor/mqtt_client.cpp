#include "monitor/mqtt_client.hpp"

#include <mqtt/async_client.h>

#include "common/backoff.hpp"
#include "publish/mqtt_link.hpp"

namespace kg::monitor {
namespace {

constexpr int kQos1 = 1;
constexpr auto kConnectTimeout = std::chrono::seconds(10);

}  // namespace

std::vector<std::string> subscription_filters(const MqttSettings& cfg) {
    const std::string& p = cfg.topic_prefix;
    const std::string shared = cfg.share_group.empty() ? "" : "$share/" + cfg.share_group + "/";
    return {
        p + "/+/availability",
        p + "/+/gateway",
        p + "/+/cameras/+/state",
        p + "/+/sensors/+/state",
        shared + p + "/+/events/#",  // events, events/<id>/snapshot, events/<id>/clip
        shared + p + "/+/sensors/+/rollup",
        // Answers to replay requests: with a share group, one instance takes each (the instances that
        // ask share one database, monitor.md).
        shared + p + "/+/lost",
    };
}

int subscription_qos(const std::string& filter) {
    const auto ends_with = [&](std::string_view tail) {
        return filter.size() >= tail.size() &&
               filter.compare(filter.size() - tail.size(), tail.size(), tail) == 0;
    };
    return ends_with("/+/cameras/+/state") || ends_with("/+/sensors/+/state") ? 0 : kQos1;
}

MqttClient::MqttClient(MqttSettings cfg, MessageHandler handler, std::shared_ptr<spdlog::logger> log)
    : cfg_(std::move(cfg)), handler_(std::move(handler)), log_(std::move(log)) {
    // No Paho persistence: what the monitor must keep is in its database, and with a persistent
    // session the broker holds what arrives while the monitor is away.
    client_ = std::make_unique<mqtt::async_client>(publish::paho_uri(cfg_.url), cfg_.client_id);
    client_->set_connection_lost_handler([this](const std::string& cause) {
        connected_ = false;
        losses_.fetch_add(1);
        log_->warn("connection to {} lost{}{}", cfg_.url, cause.empty() ? "" : ": ", cause);
        link_down(cause.empty() ? "connection lost" : "connection lost: " + cause);
        worker_.wake();
    });
    client_->set_message_callback([this](mqtt::const_message_ptr msg) {
        // Runs on Paho's thread; the handler never throws (Ingest::handle), but a stray exception
        // must not unwind into the C library.
        try {
            handler_(msg->get_topic(), msg->get_payload_str(), msg->is_retained());
        } catch (const std::exception& e) {
            log_->error("message on {} not handled: {}", msg->get_topic(), e.what());
        }
    });
}

MqttClient::~MqttClient() { stop(); }

void MqttClient::start() {
    link_.connecting(Clock::now());
    worker_.start([this] { run(); });
}

void MqttClient::link_down(std::string why) { link_.down(Clock::now(), std::move(why)); }

bool MqttClient::connect_once() {
    auto builder = mqtt::connect_options_builder()
                       .clean_session(cfg_.clean_session)
                       .keep_alive_interval(std::chrono::duration_cast<std::chrono::seconds>(cfg_.keepalive))
                       .connect_timeout(kConnectTimeout)
                       .automatic_reconnect(false);
    if (!cfg_.username.empty()) builder.user_name(cfg_.username);
    if (!cfg_.password.empty()) builder.password(cfg_.password);
    publish::apply_tls(builder, cfg_.url, cfg_.tls, &tls_errors_);
    const auto losses = losses_.load();
    try {
        auto token = client_->connect(builder.finalize());
        if (!token->wait_for(kConnectTimeout + std::chrono::seconds(1))) {
            log_->warn("connect to {} timed out", cfg_.url);
            link_down("connecting timed out");
            return false;
        }
        // Subscribed again on every connect: a clean session forgot them, and a persistent one
        // may have been expired by the broker.
        const auto filters = subscription_filters(cfg_);
        auto topics = mqtt::string_collection::create(filters);
        std::vector<int> qos;
        for (const auto& f : filters) qos.push_back(subscription_qos(f));
        auto sub = client_->subscribe(topics, qos);
        if (!sub->wait_for(kConnectTimeout)) {
            log_->warn("subscribe on {} timed out", cfg_.url);
            link_down("subscribing timed out");
            client_->disconnect()->wait_for(std::chrono::seconds(2));
            return false;
        }
        // MQTT 3.1.1 refuses a filter inside the SUBACK (0x80), which Paho reports as a success of
        // the whole subscribe: an ACL without the room's user on events would leave it connected,
        // ready and deaf. (Mosquitto grants what its ACL denies and then sends nothing; EMQX and
        // others refuse.)
        const auto codes = sub->get_subscribe_response().get_reason_codes();
        bool events_refused = false;
        for (std::size_t i = 0; i < filters.size(); ++i) {
            if (i < codes.size() && codes[i] >= 0x80) {
                const bool events = filters[i].find("/+/events/#") != std::string::npos;
                events_refused |= events;
                log_->error("the broker refused the subscription to {} (code 0x{:x}; its ACL?): {}",
                            filters[i], static_cast<int>(codes[i]),
                            events ? "no alerts can be received; connecting again until it is granted"
                                   : "those messages are not received");
            } else {
                log_->debug("subscribed to {}", filters[i]);
            }
        }
        if (events_refused) {
            link_down("the broker refused the subscription to the events (its ACL?)");
            client_->disconnect()->wait_for(std::chrono::seconds(2));
            return false;
        }
    } catch (const mqtt::exception& e) {
        bool refused = false;
        const auto why = publish::connect_failure(e.get_return_code(), e.what(), &tls_errors_, &refused);
        log_->log(refused ? spdlog::level::err : spdlog::level::warn, "cannot connect to {}: {}{}", cfg_.url,
                  why, publish::tcp_failure_detail(cfg_.url, e.what()));
        link_down("cannot connect: " + why);
        return false;
    }
    // A loss after the SUBACK and before this line has already been reported: marked up after it,
    // the client would never reconnect and the room would stop receiving alerts.
    connected_ = true;
    // After the SUBACK: every site's retained state comes from here on. Marked before the look
    // below, as connected_ is, so that a loss from here on leaves the link down.
    link_.up(Clock::now());
    if (losses_.load() != losses || !client_->is_connected()) {
        connected_ = false;
        log_->warn("connection to {} lost while it was being set up; connecting again", cfg_.url);
        link_down("connection lost while it was being set up");
        return false;
    }
    log_->info("connected to {} as {}{}", cfg_.url, cfg_.client_id,
               cfg_.share_group.empty() ? "" : " (share group " + cfg_.share_group + ")");
    if (on_subscribed_) on_subscribed_();
    return true;
}

void MqttClient::run() {
    Backoff backoff(cfg_.reconnect_min, cfg_.reconnect_max);
    bool first = true;
    while (!worker_.stopping()) {
        if (!connected_) {
            // After a loss too, not only after a failed attempt: a broker that closes every
            // connection at once (another monitor with this client id) was reconnected to in a
            // tight loop.
            if (!first) worker_.wait_for(backoff.next());
            first = false;
            if (!worker_.stopping() && connect_once()) backoff.connected();
            continue;
        }
        // Woken by the connection-lost handler or stop(); Paho's own view is checked now and then
        // too, so that a loss it never reported cannot stop the room's intake until a restart.
        worker_.wait_for(std::chrono::seconds(5));
        if (!worker_.stopping() && connected_ && !client_->is_connected()) {
            log_->warn("connection to {} found closed; connecting again", cfg_.url);
            connected_ = false;
            link_down("connection found closed");
        }
    }
}

void MqttClient::stop() {
    worker_.stop();
    if (connected_) {
        try {
            client_->disconnect()->wait_for(std::chrono::seconds(5));
        } catch (const mqtt::exception& e) {
            log_->warn("clean disconnect failed: {}", e.what());
        }
        connected_ = false;
        log_->info("disconnected");
    }
    link_down("the monitor is stopping");
    // Paho's threads may still call in (a disconnect that did not finish within the wait), and
    // the handler they call is destroyed before the client.
    try {
        client_->disable_callbacks();
    } catch (const mqtt::exception& e) {
        // Paho refuses while a disconnect is still in progress; nothing more can be done here.
        log_->warn("cannot detach from the MQTT client: {}", e.what());
    }
}

bool MqttClient::publish_confirmed(const std::string& topic, const std::string& payload, int qos,
                                   std::chrono::milliseconds timeout) {
    if (!connected_) return false;
    try {
        auto token = client_->publish(topic, payload.data(), payload.size(), qos, false);
        if (!token->wait_for(timeout)) return false;
        return token->get_return_code() == 0;
    } catch (const mqtt::exception& e) {
        log_->debug("publish to {} failed: {}", topic, e.what());
        return false;
    }
}

}  // namespace kg::monitor
