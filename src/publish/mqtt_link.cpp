#include "publish/mqtt_link.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <mqtt/async_client.h>

#include "common/backoff.hpp"
#include "common/mqtt_topic.hpp"
#include "common/tcp_probe.hpp"

namespace kg::publish {
namespace {

constexpr int kQos1 = 1;
constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr auto kConnectedCheck = std::chrono::seconds(5);
// How long an optional subscription is held after its SUBACK. The broker queues its stored messages
// for the new subscription right behind the SUBACK, on the same connection, so they arrive within
// a few round trips of it (tens of QoS 1 messages for a site, 20 in flight at a time by Mosquitto's
// default): 5 s covers round trips of over a second on a loaded LTE link, and costs at most one copy
// of each state the link publishes meanwhile (the connection's first republish, at the next tick).
constexpr auto kRetainedWindow = std::chrono::seconds(5);

}  // namespace

struct MqttLink::Listener : mqtt::iaction_listener {
    explicit Listener(std::function<void(const mqtt::token&, bool)> f) : done(std::move(f)) {}
    void on_success(const mqtt::token& token) override { done(token, true); }
    void on_failure(const mqtt::token& token) override { done(token, false); }
    std::function<void(const mqtt::token&, bool)> done;
};

void TlsErrors::add(const std::string& error) {
    std::lock_guard lock(mutex_);
    last_ = error;
}

std::string TlsErrors::take() {
    std::lock_guard lock(mutex_);
    std::string out;
    out.swap(last_);
    return out;
}

std::string connect_failure(int return_code, const std::string& what, TlsErrors* tls, bool* refused) {
    // MQTT 3.1.1's CONNACK return codes (section 3.2.2.3), which Paho passes on as they are.
    const char* meaning = nullptr;
    switch (return_code) {
        case 1:
            meaning = "the broker does not accept MQTT 3.1.1";
            break;
        case 2:
            meaning = "the broker refused the client id (check mqtt.client_id)";
            break;
        case 3:
            meaning = "the broker says it is unavailable";
            break;
        case 4:
            meaning = "bad user name or password (mqtt.username, mqtt.password)";
            break;
        case 5:
            meaning = "not authorised: the broker refused these credentials, or none were given";
            break;
        default:
            break;
    }
    if (refused != nullptr) *refused = return_code == 4 || return_code == 5;
    std::string out = what;
    if (meaning != nullptr) out += fmt::format(" ({})", meaning);
    if (tls != nullptr) {
        if (const auto reason = tls->take(); !reason.empty()) out += fmt::format(" (TLS: {})", reason);
    }
    return out;
}

std::string tcp_failure_detail(const std::string& url, const std::string& what) {
    if (what.find("TCP/TLS connect failure") == std::string::npos) return "";
    const auto [host, port] = broker_host_port(url);
    return fmt::format(" (TCP: {})", tcp_probe(host, port, std::chrono::seconds(2)));
}

void apply_tls(mqtt::connect_options_builder& builder, const std::string& url,
               const std::optional<config::Tls>& given, TlsErrors* errors) {
    // A TLS URL without a `tls` block is TLS with the system's trust store: Paho refuses an ssl://
    // URI without SSL options ("Invalid (NULL) parameter" at every connect, for as long as it ran).
    if (!given && !tls_broker_url(url)) return;
    const config::Tls tls = given.value_or(config::Tls{});
    auto ssl =
        mqtt::ssl_options_builder().enable_server_cert_auth(tls.verify_server).verify(tls.verify_server);
    if (!tls.ca_file.empty()) ssl.trust_store(tls.ca_file);
    if (!tls.cert_file.empty()) ssl.key_store(tls.cert_file);
    if (!tls.key_file.empty()) ssl.private_key(tls.key_file);
    if (errors != nullptr) ssl.error_handler([errors](const std::string& e) { errors->add(e); });
    builder.ssl(ssl.finalize());
}

std::string paho_uri(const std::string& url) {
    if (url.rfind("mqtt://", 0) == 0) return "tcp://" + url.substr(7);
    if (url.rfind("mqtts://", 0) == 0) return "ssl://" + url.substr(8);
    return url;
}

MqttLink::MqttLink(config::Mqtt cfg, std::string availability_topic, std::shared_ptr<spdlog::logger> log)
    : cfg_(std::move(cfg)), availability_topic_(std::move(availability_topic)), log_(std::move(log)) {
    // No Paho persistence: what must survive a restart lives in the gateway's own outbox.
    client_ = std::make_unique<mqtt::async_client>(paho_uri(cfg_.url), cfg_.client_id);
    subscribed_ = std::make_unique<Listener>(
        [this](const mqtt::token& token, bool ok) { optional_answered(token, ok); });
    unsubscribed_ = std::make_unique<Listener>([this](const mqtt::token&, bool ok) {
        std::lock_guard lock(mutex_);
        if (optional_.step != Optional::Step::leaving) return;  // the connection ended meanwhile
        optional_held_ = false;
        optional_.step = Optional::Step::none;
        if (!ok)
            log_->warn("cannot unsubscribe from {}: its messages come until the connection ends",
                       fmt::join(optional_.granted, " and "));
    });
    client_->set_connection_lost_handler([this](const std::string& cause) {
        std::chrono::steady_clock::duration lasted{};
        bool given_up = false;
        {
            // Under the lock so that run() cannot miss the wake-up between its check and its wait.
            std::lock_guard lock(mutex_);
            connected_ = false;
            ++losses_;
            lasted = std::chrono::steady_clock::now() - connected_since_;
            given_up = optional_lost();
        }
        // A broker closes a connection at once when another client connects with the same id: two
        // boxes from one SD card image, each taking the session from the other.
        log_->warn(
            "connection to {} lost{}{}{}", cfg_.url, cause.empty() ? "" : ": ", cause,
            lasted < std::chrono::seconds(10)
                ? fmt::format(" {:.1f} s after it was made (is another client using the client id '{}'{}?)",
                              std::chrono::duration<double>(lasted).count(), cfg_.client_id,
                              // A broker that names sessions by account (deploy/mosquitto's) takes
                              // any second connection of the account for the same client.
                              cfg_.username.empty()
                                  ? std::string()
                                  : fmt::format(", or the account '{}' on a broker that holds "
                                                "one connection per account",
                                                cfg_.username))
                : std::string());
        if (given_up) say_optional_given_up();
        cv_.notify_all();
    });
    // Behind a broker cluster (bridged brokers, a load balancer), the node this gateway left can
    // publish its last will after the gateway reconnected to another: the retained `offline` then
    // reached the room after this connection's `online`, and the room showed a live site offline
    // for good (the 55th session's review). Watching its own topic, the gateway says `online` again.
    subscriptions_.push_back(
        {availability_topic_, [this](const Message& m) { on_own_availability(m); }, Need::watch});
}

void MqttLink::on_own_availability(const Message& m) {
    if (!m.retained && m.payload == "online") {
        // This link's own `online` back: the broker takes what it publishes.
        {
            std::lock_guard lock(mutex_);
            online_echo_ = true;
        }
        cv_.notify_all();
        return;
    }
    // Retained: what the broker held before this connection's `online` (the last run's will). Its
    // own `offline` at a clean stop comes with stop_ set.
    if (m.retained || m.payload != "offline" || stop_) return;
    {
        // After this connection's `online` came back: the broker hands a client its messages in
        // the order it took them, so this `offline` came later, whether or not the link is marked
        // up yet (it is, a moment after the echo).
        std::lock_guard lock(mutex_);
        if (!connected_ && !online_echo_) return;
    }
    try {
        client_->publish(availability_topic_, std::string("online"), kQos1, true);
    } catch (const mqtt::exception& e) {
        log_->warn("cannot publish online again on {}: {}", availability_topic_, e.what());
        return;
    }
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now().time_since_epoch())
                         .count();
    auto last = availability_said_.load();
    if ((last == 0 || now - last >= 60000) && availability_said_.compare_exchange_strong(last, now)) {
        log_->warn(
            "the broker published {} offline while this gateway is connected (a broker shutting down sends "
            "its clients' last wills, Mosquitto does; or the last will of a connection it no longer has, on "
            "another node of a broker cluster): said online again",
            availability_topic_);
    }
}

MqttLink::~MqttLink() { stop(); }

void MqttLink::on_connected(std::function<void()> hook) { hooks_.push_back(std::move(hook)); }

void MqttLink::subscribe(std::string filter, std::function<void(const Message&)> handler, Need need) {
    subscriptions_.push_back({std::move(filter), std::move(handler), need});
}

void MqttLink::start() {
    if (!subscriptions_.empty()) {
        // Set once, before the first connect: the list does not change while the client runs.
        client_->set_message_callback([this](const mqtt::const_message_ptr& message) {
            const Message m{message->get_topic(), message->to_string(), message->is_retained()};
            for (const auto& s : subscriptions_) {
                if (topic_matches(s.filter, m.topic)) s.handler(m);
            }
        });
    }
    thread_ = std::thread([this] { run(); });
}

bool MqttLink::connect_once() {
    auto builder = mqtt::connect_options_builder()
                       .clean_session(true)
                       .keep_alive_interval(std::chrono::duration_cast<std::chrono::seconds>(cfg_.keepalive))
                       .connect_timeout(kConnectTimeout)
                       .automatic_reconnect(false)
                       // 3.1.1 only: Paho's default falls back to 3.1 after a failed attempt, and a
                       // connect racing that fallback was seen never to complete.
                       .mqtt_version(MQTTVERSION_3_1_1)
                       .will(mqtt::message(availability_topic_, "offline", kQos1, true));
    if (!cfg_.username.empty()) builder.user_name(cfg_.username);
    if (!cfg_.password.empty()) builder.password(cfg_.password);
    apply_tls(builder, cfg_.url, cfg_.tls, &tls_errors_);
    std::uint64_t losses = 0;
    {
        std::lock_guard lock(mutex_);
        losses = losses_;
    }
    try {
        auto token = client_->connect(builder.finalize());
        if (!token->wait_for(kConnectTimeout + std::chrono::seconds(1))) {
            if (const auto v = connect_failures_.failed("timed out"); v.log)
                log_->warn("connect to {} timed out{}", cfg_.url, connect_failures_.note(v));
            return false;
        }
        // The required ones first: a watched one's SUBACK (or a broker's silence) must not hold
        // back what the room waits for.
        bool watching_own = false;  // this connection's subscription to its availability topic
        for (const auto need : {Need::required, Need::watch}) {
            for (auto& s : subscriptions_) {
                if (s.need != need || s.given_up || !client_->is_connected()) continue;
                const bool granted = subscribe_once(s);
                if (s.filter == availability_topic_) watching_own = granted;
                if (s.need == Need::watch && !client_->is_connected()) {
                    s.given_up = true;
                    log_->warn(
                        "the connection was lost while subscribing to {}: not subscribing to it again in "
                        "this run (if the broker closes connections on subscriptions it does not allow, "
                        "its ACL needs it)",
                        s.filter);
                }
            }
        }
        // After the required subscriptions: the room reads `online` as "asks on replay are
        // answered now". Not after the optional ones: a broker that leaves a SUBSCRIBE unanswered
        // would hold back `online`, and with it every alert, for each of them.
        try {
            {
                std::lock_guard lock(mutex_);
                online_echo_ = false;
            }
            if (!client_->publish(availability_topic_, std::string("online"), kQos1, true)
                     ->wait_for(kConnectTimeout)) {
                log_->warn("the broker has not acknowledged {} online within {} s; going on",
                           availability_topic_,
                           std::chrono::duration_cast<std::chrono::seconds>(kConnectTimeout).count());
            } else if (!watching_own) {
                // Not checked on this connection: neither confirmed nor refused (a refusal of a
                // connection before must not keep saying "nothing is sent" while the outbox sends).
                reach_ = Reach::unknown;
            } else if (!online_came_back()) {
                // Every message would be acknowledged and perhaps dropped: kept in the outbox
                // instead, until a later connection sees its `online` come back.
                try {
                    client_->disconnect()->wait_for(std::chrono::seconds(5));
                } catch (const mqtt::exception&) {
                    // Closed already: the next connect starts afresh either way.
                }
                return false;
            }
        } catch (const mqtt::exception& e) {
            // A connection lost meanwhile is said (and made again) just below; otherwise the room
            // would see this gateway `offline` (its last will) for the whole connection.
            if (client_->is_connected()) {
                log_->warn("cannot publish online on {}: {}; connecting again", cfg_.url, e.what());
                return false;
            }
        }
    } catch (const mqtt::exception& e) {
        bool refused = false;
        const auto why = connect_failure(e.get_return_code(), e.what(), &tls_errors_, &refused);
        // A refusal no retry will mend is an error: no alert leaves the box until someone acts.
        // Logged the first few tries in a row, then once every 10 min with their count: a broker
        // down for a week was a line a minute (1 440 a day) pushing the rest out of the journal.
        if (const auto v = connect_failures_.failed(why); v.log)
            log_->log(refused ? spdlog::level::err : spdlog::level::warn, "cannot connect to {}: {}{}{}",
                      cfg_.url, why, tcp_failure_detail(cfg_.url, e.what()), connect_failures_.note(v));
        return false;
    }
    // The connection can drop between the broker's CONNACK and here (a subscribe it answered by
    // closing, a broker restart): the lost handler has then run already, and marking the link up
    // after it would leave it "connected" for good, every send refused, with nothing to reconnect.
    const bool up = client_->is_connected();
    {
        std::lock_guard lock(mutex_);
        if (!up || losses_ != losses) {
            connected_ = false;
            log_->warn("connection to {} lost while it was being set up; connecting again", cfg_.url);
            return false;
        }
        connection_.fetch_add(1);
        announced_ = false;
        connected_ = true;
        connected_since_ = std::chrono::steady_clock::now();
    }
    if (const auto tries = connect_failures_.succeeded(); tries > 0)
        log_->info("connected to {} as {} after {} failed tries", cfg_.url, cfg_.client_id, tries);
    else
        log_->info("connected to {} as {}", cfg_.url, cfg_.client_id);
    for (auto& hook : hooks_) {
        try {
            hook();
        } catch (const std::exception& e) {
            log_->error("after connecting: {}", e.what());  // the connection stays, and the other hooks run
        }
    }
    announced_ = true;
    cv_.notify_all();
    subscribe_optional();
    return true;
}

void MqttLink::subscribe_optional() {
    std::vector<std::string> filters;
    for (const auto& s : subscriptions_)
        if (s.need == Need::optional) filters.push_back(s.filter);
    if (filters.empty()) return;
    {
        std::lock_guard lock(mutex_);
        if (optional_given_up_ || !connected_) return;
        optional_ =
            Optional{Optional::Step::asked, connection_.load(), std::chrono::steady_clock::now(), {}, false};
        ++optional_events_;
    }
    cv_.notify_all();
    try {
        // One SUBSCRIBE: one round trip and one answer to wait for, with a reason code per filter.
        client_->subscribe(mqtt::string_collection::create(filters), std::vector<int>(filters.size(), kQos1),
                           nullptr, *subscribed_);
    } catch (const mqtt::exception& e) {
        std::lock_guard lock(mutex_);
        if (optional_.step == Optional::Step::asked) optional_.step = Optional::Step::none;
        for (auto& s : subscriptions_)
            if (s.need == Need::optional) subscription_missing(s, e.what());
    }
}

void MqttLink::optional_answered(const mqtt::token& token, bool ok) {
    std::vector<mqtt::ReasonCode> codes;
    if (ok) {
        try {
            codes = token.get_subscribe_response().get_reason_codes();
        } catch (const mqtt::exception&) {
            // No response kept: read as granted, as Paho does for 3.1.1.
        }
    }
    const bool up = client_->is_connected();
    bool given_up = false;
    {
        std::lock_guard lock(mutex_);
        if (optional_.step != Optional::Step::asked || optional_.connection != connection_.load()) return;
        if (!ok && (!up || !connected_)) {
            // Failed by the connection's end: the lost handler may not have run yet.
            given_up = optional_lost();
        } else {
            // MQTT 3.1.1 refuses a filter inside the SUBACK (0x80), which Paho reports as a success
            // of the whole SUBSCRIBE when it has more than one filter (and as a failure with one).
            std::size_t i = 0;
            for (auto& s : subscriptions_) {
                if (s.need != Need::optional) continue;
                if (!ok) {
                    subscription_missing(s, "the broker refused it (its ACL?)");
                } else if (i < codes.size() && codes[i] >= 0x80) {
                    subscription_missing(s, fmt::format("the broker refused it (code 0x{:x}; its ACL?)",
                                                        static_cast<int>(codes[i])));
                } else {
                    optional_.granted.push_back(s.filter);
                }
                ++i;
            }
            optional_.step = optional_.granted.empty() ? Optional::Step::none : Optional::Step::granted;
            optional_.since = std::chrono::steady_clock::now();
            optional_held_ = !optional_.granted.empty();
            ++optional_events_;
        }
    }
    if (given_up) say_optional_given_up();
    cv_.notify_all();
}

std::chrono::steady_clock::time_point MqttLink::optional_due(std::chrono::steady_clock::time_point now) {
    std::vector<std::string> leave;
    std::chrono::steady_clock::time_point next = std::chrono::steady_clock::time_point::max();
    {
        std::lock_guard lock(mutex_);
        if (optional_.step == Optional::Step::asked && !optional_.unanswered_said) {
            if (now - optional_.since >= kConnectTimeout) {
                optional_.unanswered_said = true;  // the SUBACK may still come, and is then used
                for (auto& s : subscriptions_)
                    if (s.need == Need::optional)
                        subscription_missing(
                            s,
                            fmt::format(
                                "no answer within {} s",
                                std::chrono::duration_cast<std::chrono::seconds>(kConnectTimeout).count()));
            } else {
                next = optional_.since + kConnectTimeout;
            }
        } else if (optional_.step == Optional::Step::granted) {
            if (now - optional_.since >= kRetainedWindow) {
                optional_.step = Optional::Step::leaving;
                leave = optional_.granted;
            } else {
                next = optional_.since + kRetainedWindow;
            }
        }
    }
    if (!leave.empty()) {
        try {
            client_->unsubscribe(mqtt::string_collection::create(leave), nullptr, *unsubscribed_);
        } catch (const mqtt::exception& e) {
            // Not connected any more (the subscriptions went with the connection), or Paho refused.
            log_->debug("cannot unsubscribe from {}: {}", fmt::join(leave, " and "), e.what());
        }
    }
    return next;
}

bool MqttLink::optional_lost() {
    const bool unanswered = optional_.step == Optional::Step::asked;
    optional_ = Optional{};
    optional_held_ = false;
    ++optional_events_;
    if (!unanswered || optional_given_up_ || stop_) return false;
    optional_given_up_ = true;
    return true;
}

void MqttLink::say_optional_given_up() {
    std::vector<std::string> filters;
    for (const auto& s : subscriptions_)
        if (s.need == Need::optional) filters.push_back(s.filter);
    // A broker that closes the connection on a SUBSCRIBE it does not allow (EMQX with
    // deny_action=disconnect, AWS IoT) would otherwise do so at every connection, for good.
    log_->warn(
        "the connection was lost while subscribing to {}: not subscribing to them again in this run "
        "(if the broker closes connections on subscriptions it does not allow, its ACL needs them)",
        fmt::join(filters, " and "));
}

bool MqttLink::online_came_back() {
    std::unique_lock lock(mutex_);
    // The broker hands the publish to its subscribers as it takes it: within a round trip, but a
    // broker cluster routes through its nodes, so the connect timeout is allowed.
    const bool came =
        cv_.wait_for(lock, kConnectTimeout, [this] { return online_echo_ || stop_.load(); }) && online_echo_;
    lock.unlock();
    if (came || stop_) {
        if (came && reach_.exchange(Reach::confirmed) == Reach::refused)
            log_->info("the broker delivers what this gateway publishes again: the outbox is sent");
        if (came) refused_failures_.succeeded();
        return true;
    }
    if (!client_->is_connected()) return false;  // lost meanwhile: the lost handler says so
    reach_ = Reach::refused;
    // Mosquitto grants a subscription its ACL denies and then delivers nothing on it, so a refused
    // read and a refused write look the same from here; either way nothing tells that the room
    // gets what is sent. (A broker that refuses the subscription itself, in its SUBACK or by
    // closing the connection, says what it refuses: the link goes on without it.)
    const std::string why = fmt::format(
        "the broker acknowledged this gateway's online on {} but never delivered it back to the "
        "gateway's own subscription: either its ACL refuses what this gateway publishes (an MQTT 3.1.1 "
        "broker acknowledges a refused publish as if it took it) or it does not let the gateway read its "
        "own availability topic, and either way nothing tells that the room gets its messages. Nothing "
        "is sent until it does, the outbox keeps every message; the broker must let user '{}' write {} "
        "and read {} (deploy/mosquitto/acl does both, with the username the site id and "
        "mqtt.topic_prefix its own)",
        availability_topic_, cfg_.username,
        availability_topic_.substr(0, availability_topic_.rfind('/')) + "/#", availability_topic_);
    if (const auto v = refused_failures_.failed(why); v.log)
        log_->error("{}{}", why, refused_failures_.note(v));
    return false;
}

std::string MqttLink::reach_problem() const {
    if (reach_.load() != Reach::refused) return {};
    return fmt::format(
        "nothing is sent: this gateway's own online on {} did not come back from the broker (its ACL drops "
        "what the gateway publishes, or hides that topic from it); the outbox keeps every message",
        availability_topic_);
}

bool MqttLink::subscribe_once(Subscription& s) {
    // No MQTT 5 no-local option: the link speaks 3.1.1 (connect_once), so a handler also gets this
    // link's own publishes on its filter, never flagged retained (and an optional subscription,
    // which would get every one, is therefore dropped once the stored messages came).
    try {
        auto sub = client_->subscribe(s.filter, kQos1);
        if (!sub->wait_for(kConnectTimeout)) {
            subscription_missing(s, "subscribing timed out");
        } else if (const auto codes = sub->get_subscribe_response().get_reason_codes();
                   !codes.empty() && codes.front() >= 0x80) {
            subscription_missing(s, "the broker refused it (its ACL?)");
        } else {
            return true;
        }
    } catch (const mqtt::exception& e) {
        // Publishing goes on without it: alerts matter more than answering replay requests.
        subscription_missing(s, e.what());
    }
    return false;
}

void MqttLink::subscription_missing(Subscription& s, const std::string& why) {
    if (s.need == Need::required) {
        log_->error("cannot subscribe to {}: {}: its messages are not received on this connection", s.filter,
                    why);
    } else if (!s.missing_said) {
        s.missing_said = true;
        log_->warn("cannot subscribe to {}: {}; going on without it (said once)", s.filter, why);
    }
}

void MqttLink::run() {
    hooks_thread_ = std::this_thread::get_id();
    Backoff backoff(cfg_.reconnect_min, cfg_.reconnect_max);
    bool first = true, was_up = false;  // was_up: the last attempt connected (and the link was lost since)
    while (!stop_) {
        if (!connected_) {
            // Also after a lost connection, not only after a failed attempt: Paho is still closing
            // the old one when its connection-lost handler runs, and a connect then is ignored
            // (MQTT error -18), which left the client in a state no later connect completed from.
            if (!first) {
                const auto wait = backoff.next();
                if (was_up) log_->info("connecting to {} again in {} ms", cfg_.url, wait.count());
                std::unique_lock lock(mutex_);
                cv_.wait_for(lock, wait, [this] { return stop_.load(); });
                if (stop_) break;
            }
            first = false;
            was_up = connect_once();
            if (was_up) backoff.connected();
            continue;
        }
        const auto now = std::chrono::steady_clock::now();
        const auto until = std::min(now + kConnectedCheck, optional_due(now));
        std::unique_lock lock(mutex_);
        const auto events = optional_events_;
        cv_.wait_until(lock, until,
                       [&] { return stop_.load() || !connected_.load() || optional_events_ != events; });
        lock.unlock();
        // The lost handler is what ends a connection here; Paho's own view is checked now and then
        // too, so that a loss it never reported cannot hold every alert back until a restart.
        if (!stop_ && connected_ && !client_->is_connected()) {
            log_->warn("connection to {} found closed; connecting again", cfg_.url);
            bool given_up = false;
            {
                std::lock_guard relock(mutex_);
                connected_ = false;
                given_up = optional_lost();
            }
            if (given_up) say_optional_given_up();
        }
    }
}

void MqttLink::stop(bool say_offline) {
    if (!thread_.joinable()) return;
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    if (connected_) {
        try {
            // The clean-shutdown counterpart of the last will; at a reload that goes on, `online`
            // again, as retained (a clean disconnect drops the will). Either way a QoS 1 message
            // whose PUBACK is waited for: Mosquitto 2.0 takes a socket closed before a PUBACK went
            // out for a lost connection and sends the last will, so what is in flight (the last
            // states) is acknowledged first. Not by a disconnect timeout: in CI, Paho's send thread
            // called a null callback after one (a reload while the link was connecting).
            client_
                ->publish(availability_topic_, std::string(say_offline ? "offline" : "online"), kQos1, true)
                ->wait_for(std::chrono::seconds(5));
            client_->disconnect()->wait_for(std::chrono::seconds(5));
        } catch (const mqtt::exception& e) {
            log_->warn("clean disconnect failed: {}", e.what());
        }
        connected_ = false;
    }
    // Paho's threads may still call in (a connection that did not close within the wait, a
    // message arriving meanwhile), and the client outlives this object's mutex and handlers.
    try {
        client_->disable_callbacks();
    } catch (const mqtt::exception& e) {
        // Paho refuses while a disconnect is still in progress; nothing more can be done here.
        log_->warn("cannot detach from the MQTT client: {}", e.what());
    }
    log_->info("disconnected");
}

bool MqttLink::wait_connected(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [this] { return stop_.load() || connected_.load(); }) &&
           connected_.load();
}

Delivery::State Delivery::wait_for(std::chrono::milliseconds timeout) {
    try {
        if (!token_->wait_for(timeout)) return State::pending;
        return token_->get_return_code() == 0 ? State::acknowledged : State::failed;
    } catch (const mqtt::exception&) {
        return State::failed;  // Paho gave up on it (connection lost, client stopping)
    }
}

std::optional<Delivery> MqttLink::send(const std::string& topic, const std::string& payload, int qos,
                                       bool retain) {
    const auto connection = connection_.load();
    if (!connected_) return std::nullopt;
    try {
        return Delivery(client_->publish(topic, payload.data(), payload.size(), qos, retain), connection);
    } catch (const mqtt::exception& e) {
        log_->debug("publish to {} failed: {}", topic, e.what());
        return std::nullopt;
    }
}

bool MqttLink::publish(const std::string& topic, const std::string& payload, int qos, bool retain) {
    if (!connected_) return false;
    if (!announced_ && std::this_thread::get_id() != hooks_thread_.load()) return false;
    try {
        client_->publish(topic, payload.data(), payload.size(), qos, retain);
        return true;
    } catch (const mqtt::exception& e) {
        log_->debug("publish to {} failed: {}", topic, e.what());
        return false;
    }
}

}  // namespace kg::publish
