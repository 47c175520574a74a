#include "sensors/inputs.hpp"

#include <modbus/modbus.h>
#include <mqtt/async_client.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/backoff.hpp"
#include "common/json_depth.hpp"
#include "common/mqtt_topic.hpp"
#include "common/time.hpp"
#include "common/url_text.hpp"
#include "config/config_loader.hpp"
#include "publish/mqtt_link.hpp"
#include "sensors/decode.hpp"

namespace kg::sensors {

namespace {

// Deeper than any device's payload (Zigbee2MQTT's nest three or four levels).
constexpr std::size_t kMaxPayloadDepth = 32;
// A reading's payload is a few hundred bytes (Zigbee2MQTT's with every attribute, about 1 KiB). One of
// megabytes, queued, took memory the process kept: 60 of 4 MB raised it from 90 MB to 340 MB for good
// (the sensors review), and the local broker allows 256 MB a message.
constexpr std::size_t kMaxPayloadBytes = 64 * 1024;

// libmodbus takes the timeout as seconds and microseconds.
void set_response_timeout(modbus_t* ctx, Duration timeout) {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
    modbus_set_response_timeout(ctx, static_cast<std::uint32_t>(us / 1000000),
                                static_cast<std::uint32_t>(us % 1000000));
}

// A Modbus exception (illegal address, device busy...) is a whole, matching answer: the exchange is
// over. Anything else (timeout, garbled or mismatched frame, connection error) may leave an answer
// in flight.
bool device_answered(int err) { return err >= EMBXILFUN && err <= EMBXGTAR; }

bool connection_lost(int err) {
    return err == EBADF || err == ECONNRESET || err == EPIPE || err == ECONNREFUSED || err == EIO;
}

// The unit gave no answer: none came, the connection was lost, or a serial gateway says its unit did
// not answer (exceptions 0x0A and 0x0B).
bool unit_silent(int err) {
    return err == ETIMEDOUT || connection_lost(err) || err == EMBXGPATH || err == EMBXGTAR;
}

}  // namespace

void SilenceCauses::failed(const std::string& sensor, events::EventCause cause) {
    std::lock_guard lock(mutex_);
    causes_[sensor] = std::move(cause);
}

void SilenceCauses::answered(const std::string& sensor) {
    std::lock_guard lock(mutex_);
    causes_.erase(sensor);
}

std::optional<events::EventCause> SilenceCauses::of(const std::string& sensor) const {
    std::lock_guard lock(mutex_);
    const auto it = causes_.find(sensor);
    return it == causes_.end() ? std::nullopt : std::optional<events::EventCause>(it->second);
}

MqttSensorInput::MqttSensorInput(config::BrokerAccount broker, std::string client_id,
                                 const std::vector<const config::Sensor*>& sensors, ReadingHandler handler,
                                 std::shared_ptr<spdlog::logger> log)
    : broker_(std::move(broker)),
      url_(broker_.url),
      client_id_(std::move(client_id)),
      handler_(std::move(handler)),
      log_(std::move(log)),
      rejected_by_(std::make_unique<std::atomic<std::uint64_t>[]>(sensors.size())),
      dropped_by_(std::make_unique<std::atomic<std::uint64_t>[]>(sensors.size())) {
    for (const auto* sensor : sensors) sensors_.push_back(*sensor);
    client_ = std::make_unique<mqtt::async_client>(publish::paho_uri(url_), client_id_);
    client_->set_message_callback([this](const mqtt::const_message_ptr& msg) {
        receive({msg->get_topic(), msg->to_string(), msg->is_retained(), std::nullopt});
    });
    client_->set_connection_lost_handler([this](const std::string&) {
        // A broker closes a connection at once when another client connects with the same id (two
        // boxes from one SD card image): named, as the uplink names its own.
        const auto lasted = std::chrono::steady_clock::now() -
                            std::chrono::steady_clock::time_point(
                                std::chrono::steady_clock::duration(connected_since_.load()));
        broker_failed("the connection to the sensor broker was lost");
        this->log()->warn(
            "sensor broker {} lost{}; reconnecting", url_,
            lasted < std::chrono::seconds(10)
                ? fmt::format(" {:.1f} s after it was made (is another client using the client id '{}'?)",
                              std::chrono::duration<double>(lasted).count(), client_id_)
                : std::string());
        thread_.wake();
    });
}

MqttSensorInput::~MqttSensorInput() { stop(); }

void MqttSensorInput::add_counts(SensorCounts& out) const {
    std::lock_guard lock(queue_mutex_);
    for (std::size_t i = 0; i < sensors_.size(); ++i) {
        auto& c = out[sensors_[i].id];
        c.rejected += rejected_by_[i].load();
        c.dropped += dropped_by_[i].load();
    }
}

void MqttSensorInput::start() {
    if (detached_.exchange(false)) {
        // After a hand-over: the new run's subscriptions, on the input thread.
        std::lock_guard lock(queue_mutex_);
        rebind_ = true;
    }
    if (!handling_.running()) handling_.start([this] { handle_messages(); });
    if (!thread_.running()) thread_.start([this] { run(); });
    thread_.wake();
}

void MqttSensorInput::detach() {
    detached_ = true;
    const auto before = received_.load();
    detaching_ = true;
    handling_.stop();
    detaching_ = false;
    // What was queued before the detach is this run's (its sensors, its carried readings): the
    // handling thread left it at the end of its batch, so it is handled here, in order.
    std::deque<Message> mine;
    {
        std::lock_guard lock(queue_mutex_);
        const auto since = static_cast<std::size_t>(received_.load() - before);
        const auto count = queue_.size() > since ? queue_.size() - since : 0;
        for (std::size_t i = 0; i < count; ++i) {
            mine.push_back(std::move(queue_.front()));
            queue_.pop_front();
        }
    }
    for (const auto& m : mine) handle(m);
}

void MqttSensorInput::attach(const std::vector<const config::Sensor*>& sensors, ReadingHandler handler,
                             std::shared_ptr<spdlog::logger> log) {
    {
        std::lock_guard lock(queue_mutex_);
        // A sensor read by both runs keeps its counts (drops while no run handled are likeliest).
        auto rejected = std::make_unique<std::atomic<std::uint64_t>[]>(sensors.size());
        auto dropped = std::make_unique<std::atomic<std::uint64_t>[]>(sensors.size());
        for (std::size_t i = 0; i < sensors.size(); ++i) {
            for (std::size_t j = 0; j < sensors_.size(); ++j) {
                if (sensors_[j].id != sensors[i]->id) continue;
                rejected[i] = rejected_by_[j].load();
                dropped[i] = dropped_by_[j].load();
            }
        }
        sensors_.clear();
        for (const auto* sensor : sensors) sensors_.push_back(*sensor);
        rejected_by_ = std::move(rejected);
        dropped_by_ = std::move(dropped);
    }
    handler_ = std::move(handler);
    {
        std::lock_guard lock(log_mutex_);
        log_ = std::move(log);  // the new run's level and format
    }
    // What the last run's sensors were warned about is said again for this run's.
    clock_warned_.clear();
    retained_warned_.clear();
    time_warned_.clear();
    rejected_logs_.clear();
}

void MqttSensorInput::stop() {
    thread_.stop();
    try {
        if (client_->is_connected()) client_->disconnect()->wait_for(std::chrono::seconds(2));
    } catch (const mqtt::exception&) {
        // shutting down anyway
    }
    // After the disconnect, so what the broker delivered before it is still handled (a reading
    // Paho acknowledged is not dropped at a reload).
    handling_.stop();
}

void MqttSensorInput::receive(Message message) {
    // A bound against a flood (a device publishing in a loop) while the handler waits on a disk:
    // the oldest readings go first, as the newest say most about now.
    constexpr std::size_t kMaxQueued = 10000;
    std::uint64_t dropped = 0;
    if (message.payload.size() > kMaxPayloadBytes) {
        message.oversize = message.payload.size();
        std::string().swap(message.payload);  // counted and said where it is handled
    }
    {
        std::lock_guard lock(queue_mutex_);
        if (queue_.size() >= kMaxQueued) {
            for (std::size_t i = 0; i < sensors_.size(); ++i)
                if (topic_matches(sensors_[i].source.topic, queue_.front().topic)) ++dropped_by_[i];
            queue_.pop_front();
            dropped = ++dropped_;
        }
        if (detached_) message.arrived.emplace(Clock::now(), std::chrono::steady_clock::now());
        queue_.push_back(std::move(message));
        ++received_;
    }
    if (dropped == 1 || (dropped != 0 && dropped % 10000 == 0)) {
        log()->warn("sensor broker {}: readings arrive faster than they are handled; {} dropped so far", url_,
                    dropped);
    }
    handling_.wake();
}

void MqttSensorInput::handle(const Message& m) {
    try {
        on_message(m);
    } catch (const std::exception& e) {
        // Not expected (parsing does not throw, the outbox keeps what it cannot store), but one
        // message must not end the process: the thread is ours, not Paho's.
        log()->error("sensor broker {}: a message on {} could not be handled: {}", url_, m.topic, e.what());
    }
}

void MqttSensorInput::handle_messages() {
    std::deque<Message> batch;
    for (;;) {
        {
            std::lock_guard lock(queue_mutex_);
            batch.swap(queue_);
        }
        for (const auto& m : batch) handle(m);
        batch.clear();
        // Handed over to the next run: what comes from now on is its to handle.
        if (handling_.stopping() && detaching_) return;
        if (handling_.stopping()) {
            std::lock_guard lock(queue_mutex_);
            if (queue_.empty()) return;  // else: what came during the last batch, then out
        } else {
            handling_.wait_for(std::chrono::seconds(1));
        }
    }
}

void MqttSensorInput::run() {
    constexpr auto kConnectTimeout = std::chrono::seconds(10);
    Backoff backoff(std::chrono::seconds(1), std::chrono::seconds(30));
    bool announce = false, was_connected = false;
    while (!thread_.stopping()) {
        if (!client_->is_connected()) {
            if (was_connected) {
                // Lost: waited for as after a failed attempt, so that a broker closing every
                // connection at once is not reconnected to in a tight loop.
                was_connected = false;
                thread_.wait_for(backoff.next());
                continue;
            }
            try {
                auto builder = mqtt::connect_options_builder()
                                   .clean_session(true)
                                   .keep_alive_interval(std::chrono::seconds(30))
                                   // As the uplink's: Paho's default falls back to 3.1, and a connect
                                   // racing that fallback was seen never to complete.
                                   .mqtt_version(MQTTVERSION_3_1_1)
                                   .connect_timeout(kConnectTimeout);
                if (!broker_.username.empty()) builder.user_name(broker_.username);
                if (!broker_.password.empty()) builder.password(broker_.password);
                publish::apply_tls(builder, broker_.url, broker_.tls, &tls_errors_);
                // A clean session: every subscription went with the previous connection. Listed
                // before the attempt, not after its success: an attempt that outlives our wait may
                // still connect, and is then found connected at the next turn.
                pending_.clear();
                granted_.clear();
                unsubscribe_.clear();
                {
                    std::lock_guard lock(queue_mutex_);
                    for (const auto& s : sensors_)
                        pending_.push_back({s.id, s.source.topic, std::chrono::steady_clock::now()});
                    rebind_ = false;  // the list above is the new sensors' already
                }
                announce = true;
                if (!client_->connect(builder.finalize())
                         ->wait_for(kConnectTimeout + std::chrono::seconds(1))) {
                    broker_failed("the sensor broker did not answer the connect within 10 s");
                    if (const auto v = connect_failures_.failed("no answer"); v.log)
                        log()->warn("sensor broker {} did not answer the connect within 10 s; retrying{}",
                                    url_, connect_failures_.note(v));
                    thread_.wait_for(backoff.next());
                    continue;
                }
            } catch (const mqtt::exception& e) {
                const auto why = publish::connect_failure(e.get_return_code(), e.what(), &tls_errors_);
                broker_failed("cannot connect to the sensor broker: " + why);
                if (const auto v = connect_failures_.failed(why); v.log)
                    log()->warn("sensor broker {}: {}{}{}", url_, why,
                                publish::tcp_failure_detail(url_, e.what()), connect_failures_.note(v));
                thread_.wait_for(backoff.next());
                continue;
            }
            backoff.connected();
            if (const auto tries = connect_failures_.succeeded(); tries > 0)
                log()->info("sensor broker {} connected after {} failed tries", url_, tries);
            was_connected = true;
            connected_since_ = std::chrono::steady_clock::now().time_since_epoch().count();
            {
                std::lock_guard lock(broker_failure_mutex_);
                broker_failure_.reset();
            }
        }
        bool rebound = false;
        {
            std::lock_guard lock(queue_mutex_);
            rebound = std::exchange(rebind_, false);
        }
        if (rebound) {
            rebind();
            announce = true;
        }
        subscribe_pending();
        // The topics no sensor reads now, once those it reads are subscribed: a filter replaced by a
        // narrower one (z/# by z/kitchen) loses nothing in between.
        if (!unsubscribe_.empty() && client_->is_connected()) unsubscribe_stale();
        // Said once the broker granted the subscriptions, not at the connect: a message published
        // before then is not delivered, and installers (and the tests) take this line as "live".
        if (announce && client_->is_connected()) {
            std::size_t count = 0;
            {
                std::lock_guard lock(queue_mutex_);
                count = sensors_.size();
            }
            const std::size_t waiting = pending_.size();
            const char* kept = rebound ? " (the connection kept across the reload)" : "";
            if (waiting == 0) {
                log()->info("reading {} MQTT sensors from {}{}", count, url_, kept);
            } else {
                log()->warn("reading {} of {} MQTT sensors from {}{}; the others' subscriptions are retried",
                            count - std::min(count, waiting), count, url_, kept);
            }
            announce = false;
        }
        thread_.wait_for(std::chrono::seconds(1));
    }
}

void MqttSensorInput::rebind() {
    // Every sensor's topic subscribed again, not only the new ones: a subscription made again gets
    // the topic's retained message anew (MQTT 3.1.1, 3.8.4), as a new connection did, so a sensor
    // added on a device's topic (its humidity beside its temperature) has the device's last message.
    std::set<std::string> wanted;
    pending_.clear();
    {
        std::lock_guard lock(queue_mutex_);
        for (const auto& s : sensors_) {
            wanted.insert(s.source.topic);
            pending_.push_back({s.id, s.source.topic, std::chrono::steady_clock::now()});
        }
    }
    unsubscribe_.clear();
    for (const auto& topic : granted_)
        if (!wanted.count(topic)) unsubscribe_.push_back(topic);
}

void MqttSensorInput::unsubscribe_stale() {
    for (const auto& topic : unsubscribe_) {
        // Not waited for long, nor retried: a filter left subscribed only brings messages that match
        // no sensor, and the next connection (a clean session) drops it anyway.
        try {
            if (!client_->unsubscribe(topic)->wait_for(std::chrono::seconds(5)))
                log()->warn("sensor broker {}: no answer to the end of the subscription to '{}'", url_,
                            topic);
        } catch (const mqtt::exception& e) {
            log()->warn("sensor broker {}: the subscription to '{}' could not be ended: {}", url_, topic,
                        e.what());
        }
        granted_.erase(topic);
    }
    unsubscribe_.clear();
}

void MqttSensorInput::broker_failed(std::string why) {
    std::lock_guard lock(broker_failure_mutex_);
    broker_failure_ = fmt::format("{} ({})", why, without_password(url_));
}

void MqttSensorInput::subscription_refused(const std::string& sensor, std::string why) {
    std::lock_guard lock(broker_failure_mutex_);
    refused_subscriptions_[sensor] = std::move(why);
}

std::optional<events::EventCause> MqttSensorInput::silence_cause(const std::string& sensor) const {
    {
        std::lock_guard lock(broker_failure_mutex_);
        if (broker_failure_) return events::EventCause{"unreachable", *broker_failure_};
        // Not `silent`: nothing the device does would reach the gateway (the review of the 65th
        // session's sensor causes).
        if (const auto r = refused_subscriptions_.find(sensor); r != refused_subscriptions_.end())
            return events::EventCause{"error", r->second};
    }
    std::lock_guard lock(queue_mutex_);
    for (const auto& s : sensors_) {
        if (s.id == sensor)
            return events::EventCause{"silent", fmt::format("connected to the sensor broker; nothing usable "
                                                            "on {} (the device, its battery or its radio)",
                                                            s.source.topic)};
    }
    return std::nullopt;
}

void MqttSensorInput::subscribe_pending() {
    // One sensor at a time: a filter the broker refuses (an ACL) must not keep the others silent.
    constexpr auto kRetry = std::chrono::seconds(30);
    const auto now = std::chrono::steady_clock::now();
    for (auto it = pending_.begin(); it != pending_.end() && !thread_.stopping();) {
        if (now < it->retry_at) {
            ++it;
            continue;
        }
        const auto& s = *it;
        try {
            auto token = client_->subscribe(s.topic, 1);
            if (token->wait_for(std::chrono::seconds(5))) {
                // MQTT 3.1.1 refuses a filter in the SUBACK itself (0x80), which Paho may report as
                // a success: without this the sensor would wait for readings that never come.
                const auto codes = token->get_subscribe_response().get_reason_codes();
                if (codes.empty() || codes.front() < 0x80) {
                    granted_.insert(s.topic);
                    {
                        std::lock_guard lock(broker_failure_mutex_);
                        refused_subscriptions_.erase(s.sensor);
                    }
                    it = pending_.erase(it);
                    continue;
                }
                subscription_refused(s.sensor, fmt::format("the sensor broker refused the subscription to '{}' "
                                                           "(its ACL for this account?)",
                                                           s.topic));
                log()->warn(
                    "sensor {}: the broker {} refused the subscription to '{}' (its ACL?); retrying in {} s",
                    s.sensor, url_, s.topic, kRetry.count());
            } else {
                log()->warn("sensor {}: the broker {} did not answer the subscription to '{}'; retrying",
                            s.sensor, url_, s.topic);
            }
        } catch (const mqtt::exception& e) {
            if (!client_->is_connected()) return;  // the connection went: the loop reconnects
            log()->warn("sensor {}: the broker {} refused the subscription to '{}' ({}); retrying in {} s",
                        s.sensor, url_, s.topic, e.what(), kRetry.count());
            subscription_refused(s.sensor, fmt::format("the sensor broker refused the subscription to '{}' ({})",
                                                       s.topic, e.what()));
        }
        it->retry_at = now + kRetry;
        ++it;
    }
}

std::optional<TimePoint> MqttSensorInput::reading_time(const config::Sensor& s, const nlohmann::json& doc,
                                                       bool retained, TimePoint arrival) {
    // A device's clock is believed only near the arrival: ahead of it, or (for a live message) far
    // behind it, it is a clock never set or drifting, and would turn off offline detection or raise
    // offline events with negative durations. A little behind is a device that batches readings.
    constexpr auto kAhead = std::chrono::seconds(5);
    constexpr auto kBehind = std::chrono::minutes(5);
    std::optional<TimePoint> own;
    if (!s.source.time_path.empty()) {
        own = time_at(doc, s.source.time_path);
        // Tasmota's "Time" is local time with no offset: which zone is the device's setting. Said
        // once, or a configured time would be ignored without a word.
        const auto* node = own ? nullptr : node_at(doc, s.source.time_path);
        if (node != nullptr && time_warned_.insert(s.id).second) {
            log()->warn(
                "sensor {}: its time at '{}' ({:.40}) is not ISO 8601 with Z or an offset, nor epoch "
                "seconds, milliseconds, microseconds or nanoseconds of 1970-2200; its readings are timed "
                "by their arrival",
                s.id, s.source.time_path, node->dump());
        }
    }
    if (retained) {
        // The broker's copy of the last message, handed out on every subscribe: without its own
        // time it says nothing of whether the sensor is alive now (a dead Zigbee2MQTT sensor's last
        // value would read as fresh after each reconnect or reload).
        const auto horizon = s.silence_limit();
        if (own && *own <= arrival + kAhead && arrival - *own < horizon) return std::min(*own, arrival);
        if (retained_warned_.insert(s.id).second) {
            log()->info(
                "sensor {}: retained messages on {} are not counted as readings ({})", s.id, s.source.topic,
                own ? "their own time is not recent" : "the payload has no usable time at source.time_path");
        }
        return std::nullopt;
    }
    if (!own) return arrival;
    if (*own > arrival + kAhead || arrival - *own > kBehind) {
        if (clock_warned_.insert(s.id).second) {
            log()->warn("sensor {}: its clock is {} s off ({}); its readings are timed by their arrival",
                        s.id, std::chrono::duration_cast<std::chrono::seconds>(*own - arrival).count(),
                        iso8601_utc(*own));
        }
        return arrival;
    }
    return std::min(*own, arrival);
}

void MqttSensorInput::on_message(const Message& message) {
    const auto& topic = message.topic;
    const auto& payload = message.payload;
    const bool retained = message.retained;
    // Stamped here, not in Paho's callback: a supervisor tick between the two would otherwise judge
    // the sensor stale at a `now` later than this reading's arrival, or close its minute first. But
    // a message that came during a hand-over is timed by its arrival: the gap between the runs may
    // be seconds (the next run loading its models), and no tick judges the sensor meanwhile.
    const auto arrival = message.arrived ? message.arrived->first : Clock::now();
    const auto arrived_steady = message.arrived ? message.arrived->second : std::chrono::steady_clock::now();
    // Printing a value recurses once per level: a payload of nested brackets would overflow the
    // stack where the warning below shows its time.
    const bool too_deep = json_nested_deeper_than(payload, kMaxPayloadDepth);
    nlohmann::json doc = too_deep ? nlohmann::json(nlohmann::json::value_t::discarded)
                                  : nlohmann::json::parse(payload, nullptr, false);
    for (std::size_t i = 0; i < sensors_.size(); ++i) {
        const auto* s = &sensors_[i];
        if (!topic_matches(s->source.topic, topic)) continue;
        auto value =
            doc.is_discarded() || message.oversize ? std::nullopt : number_at(doc, s->source.value_path);
        // true/false is a contact's or a detector's state, not a measurement: {"temperature": true}
        // was taken as 1.0 degC, into the day's curve (the sensors review).
        const bool flag = value && boolean_at(doc, s->source.value_path);
        // Only where the field is the measurement's own: a sensor left at the default kind that
        // reads a detector's field (`value: gas`) takes its true/false as before.
        const bool measured_field = (s->kind == "temperature" || s->kind == "humidity" || s->kind == "co2") &&
                                    s->source.value_path == s->kind;
        const bool flag_refused = flag && measured_field;
        if (flag_refused) value.reset();
        if (!value) {
            // A device that says it has no measurement (ESPHome's "nan" when a probe does not
            // answer, a null value): it is alive, its probe is not. An invalid reading, as an
            // impossible value is; dropped, it made the sensor offline, late.
            if (!flag_refused && !message.oversize &&
                says_no_measurement(doc, payload, s->source.value_path)) {
                const auto time = reading_time(*s, doc, retained, arrival);
                if (time) handler_(Reading{s->id, std::nan(""), *time, arrival, false, arrived_steady});
                continue;
            }
            // Garbage is counted and logged with what was wrong, and the sensor keeps its last value.
            ++rejected_;
            const auto n = ++rejected_by_[i];
            if (const auto lines = rejected_logs_.try_emplace(s->id).first->second.pass()) {
                log()->warn(
                    "sensor {}: payload on {} has no number at '{}'{} ({} rejected so far{}): {:.120}", s->id,
                    topic, s->source.value_path,
                    message.oversize ? fmt::format(": {} bytes, over the {} KiB a reading may take",
                                                   message.oversize, kMaxPayloadBytes / 1024)
                    : too_deep       ? fmt::format(": nested over {} levels", kMaxPayloadDepth)
                    : flag_refused   ? fmt::format(": true/false is not a {}", s->kind)
                                     : "",
                    n, lines > 1 ? fmt::format("; {} of this sensor's since its last line", lines) : "",
                    payload);
            }
            continue;
        }
        const auto time = reading_time(*s, doc, retained, arrival);
        if (!time) continue;
        handler_(Reading{s->id, *value, *time, arrival, flag, arrived_steady});
    }
}

ModbusPoller::ModbusPoller(std::string device, std::vector<const config::Sensor*> sensors,
                           ReadingHandler handler, std::shared_ptr<spdlog::logger> log)
    : device_(std::move(device)),
      sensors_(std::move(sensors)),
      handler_(std::move(handler)),
      log_(std::move(log)),
      read_failures_(std::make_unique<std::atomic<std::uint64_t>[]>(sensors_.size())) {}

namespace {

// The level of the n-th failure in a row (from 0): the first, and every 1000th after, as a warning.
spdlog::level::level_enum repeat_level(std::uint64_t n) {
    return n % 1000 == 0 ? spdlog::level::warn : spdlog::level::debug;
}

// Said with the first failure of a run (`count` after it): what the log will and will not repeat.
std::string repeat_note(std::uint64_t count) {
    if (count == 1) return " (further failures in a row at debug level, every 1000th as a warning)";
    if (count % 1000 == 1) return fmt::format(" ({} failures in a row)", count);
    return {};
}

}  // namespace

ModbusPoller::~ModbusPoller() { stop(); }

void ModbusPoller::add_counts(SensorCounts& out) const {
    for (std::size_t i = 0; i < sensors_.size(); ++i)
        out[sensors_[i]->id].read_failures += read_failures_[i].load();
}

void ModbusPoller::start() {
    thread_.start([this] { run(); });
}

void ModbusPoller::request_stop() { thread_.request_stop(); }

void ModbusPoller::stop() { thread_.stop(); }

namespace {

// A connection quiet for this long that gives no answer is made again and the read tried at once.
constexpr Duration kIdleBeforeRetry = std::chrono::seconds(1);

// How long after its `silences`-th unanswered read in a row (2 or more) a unit is tried again.
Duration silent_retry(Duration interval, std::uint32_t silences) {
    constexpr Duration kLongest = std::chrono::minutes(2);
    Duration wait = interval;
    for (std::uint32_t k = 1; k < silences && wait < kLongest; ++k) wait *= 2;
    return std::max(interval, std::min(wait, kLongest));
}

}  // namespace

std::string ModbusPoller::sensor_ids() const {
    std::string ids;
    for (const auto* s : sensors_) ids += (ids.empty() ? "" : ", ") + s->id;
    return ids;
}

void ModbusPoller::run() {
    struct ModbusFree {
        void operator()(modbus_t* m) const {
            modbus_close(m);
            modbus_free(m);
        }
    };
    using Modbus = std::unique_ptr<modbus_t, ModbusFree>;
    const auto& src = sensors_.front()->source;  // one device: one connection's parameters
    Duration period = sensors_.front()->interval;
    for (const auto* s : sensors_) period = std::min(period, s->interval);
    std::vector<std::chrono::steady_clock::time_point> due(sensors_.size(), std::chrono::steady_clock::now());
    // Where a round starts: after the sensor whose failed read last dropped the connection. A unit
    // that never answers, read first again after each reconnect, would keep the others unread.
    std::size_t first = 0;
    // Failed reads in a row, per sensor, and failed connects: a device that stays dead is logged when
    // it fails and when it comes back, not at every poll for the months it may stay so.
    std::vector<std::uint64_t> failing(sensors_.size(), 0);
    std::vector<bool> no_measurement(sensors_.size(), false);
    // Reads in a row the unit did not answer at all (timed out, the connection lost), per sensor.
    std::vector<std::uint32_t> silent(sensors_.size(), 0);
    // At most one unit that has stopped answering is tried at a time, a round of the others between
    // two: each costs its timeout (twice on a serial line), and two or three unpowered units on one
    // line held the healthy ones past their offline limit at every round (a review: a fridge offline
    // every 40 s). Kept across reconnects: over TCP each silence ends its round.
    auto silent_gate = std::chrono::steady_clock::time_point::min();
    // Whether each unit has answered in this run: one that has not may be silent too, and is held by
    // the gate after a silence (at a start or reload, each silent unit was tried in turn).
    std::vector<bool> answered(sensors_.size(), false);
    std::uint64_t connect_failing = 0;
    // The connection was dropped for a read that has failed before: its reconnect is a matter of
    // routine, every poll for as long as the unit stays silent behind a live TCP gateway.
    bool routine_reconnect = false;
    // A read has been answered on this connection: one found closed after it was closed by the
    // device while it lay idle (many TCP devices and serial gateways close a connection idle for a
    // few seconds, shorter than a poll interval), not a failed read.
    bool answered_here = false;
    bool said_idle_close = false;
    // Since when the connection has carried nothing (made, or last answered), and the sensor whose
    // read is retried at once on a new connection after an idle one gave no answer.
    auto active_since = std::chrono::steady_clock::now();
    constexpr std::size_t kNoRetry = static_cast<std::size_t>(-1);
    std::size_t retry_sensor = kNoRetry;
    bool said_idle_silence = false;
    // A failed read of sensor i, whatever failed: counted, and logged when it starts failing and at
    // every 1000th after. Returns how many failed in a row before this one.
    const auto read_failed = [&](std::size_t i, const std::string& what, const char* kind = "error") {
        ++failures_;
        ++read_failures_[i];
        silences_.failed(sensors_[i]->id, {kind, what});
        const auto streak = failing[i]++;
        log_->log(repeat_level(streak), "sensor {}: {}{}", sensors_[i]->id, what, repeat_note(streak + 1));
        return streak;
    };
    Modbus ctx;
    Backoff backoff(std::chrono::seconds(1), std::chrono::seconds(30));
    const bool tcp = device_.rfind("tcp://", 0) == 0;

    while (!thread_.stopping()) {
        if (!ctx) {
            modbus_t* m = nullptr;
            if (tcp) {
                const auto [host, port] = config::modbus_host_port(device_.substr(6));
                // The _pi form resolves with getaddrinfo: a host name or an IPv6 address, where
                // modbus_new_tcp takes a dotted IPv4 address only.
                m = modbus_new_tcp_pi(host.c_str(), port.c_str());
            } else {
                m = modbus_new_rtu(device_.substr(4).c_str(), src.baud, src.parity, src.data_bits,
                                   src.stop_bits);
            }
            if (m == nullptr) {
                const int err = errno;
                const auto streak = connect_failing++;
                log_->log(repeat_level(streak), "Modbus device {}: cannot set up a connection: {}{}", device_,
                          modbus_strerror(err), repeat_note(streak + 1));
            } else {
                set_response_timeout(m, src.response_timeout);
                if (modbus_connect(m) == 0) {
                    ctx.reset(m);
                    log_->log(routine_reconnect && connect_failing == 0 ? spdlog::level::debug
                                                                        : spdlog::level::info,
                              "connected to Modbus device {}{}", device_,
                              connect_failing > 0 ? fmt::format(" after {} failed attempts", connect_failing)
                                                  : std::string());
                    routine_reconnect = false;
                    answered_here = false;
                    active_since = std::chrono::steady_clock::now();
                    connect_failing = 0;
                    backoff.reset();
                } else {
                    const int err = errno;
                    const auto streak = connect_failing++;
                    // libmodbus gives up a TCP connect after its response timeout with errno as the
                    // non-blocking connect left it: "Operation now in progress" said nothing useful.
                    const auto why =
                        tcp && (err == EINPROGRESS || err == ETIMEDOUT)
                            ? fmt::format(
                                  "no answer within {:.1f} s (a wrong address, a device switched off, or "
                                  "one at its limit of connections)",
                                  std::chrono::duration<double>(src.response_timeout).count())
                            : std::string(modbus_strerror(err));
                    log_->log(repeat_level(streak), "Modbus device {} (sensors {}): cannot connect: {}{}",
                              device_, sensor_ids(), why, repeat_note(streak + 1));
                    for (const auto* sensor : sensors_)
                        silences_.failed(sensor->id, {"unreachable", fmt::format("cannot connect to Modbus "
                                                                                 "device {}: {}",
                                                                                 device_, why)});
                    modbus_free(m);
                }
            }
            if (!ctx) {
                ++failures_;
                ++connect_failures_;
                thread_.wait_for(backoff.next());
                continue;
            }
        }
        const auto now = std::chrono::steady_clock::now();
        for (std::size_t k = 0; k < sensors_.size() && !thread_.stopping(); ++k) {
            // A stop asked between reads: on a line of unpowered units each read waits its whole
            // timeout (up to a minute), and a reload would wait for all of them.
            const std::size_t i = (first + k) % sensors_.size();
            if (now < due[i]) continue;
            const auto* s = sensors_[i];
            const bool retried = retry_sensor == i;
            if ((silent[i] > 0 || !answered[i]) && !retried && now < silent_gate) {
                due[i] = std::max(due[i], silent_gate);
                continue;
            }
            if (retried) retry_sensor = kNoRetry;
            // On the sensor's own beat, not `interval` after whenever this round came round: readings
            // then arrive `interval` apart, as `stale_after` counts them. A round late by a whole
            // interval (a slow line) starts the beat again from now.
            due[i] += s->interval;
            if (due[i] <= now) due[i] = now + s->interval;
            std::vector<std::uint16_t> regs(static_cast<std::size_t>(register_count(s->source.type)));
            // Refused (the configuration checks the range, but libmodbus is the judge), it keeps the
            // unit set before: the read would give another unit's value as this sensor's.
            if (modbus_set_slave(ctx.get(), s->source.unit_id) != 0) {
                const int err = errno;
                read_failed(i, fmt::format("libmodbus refuses unit_id {} on {}: {}", s->source.unit_id,
                                           device_, modbus_strerror(err)));
                continue;
            }
            set_response_timeout(ctx.get(), s->source.response_timeout);
            const auto idle = std::chrono::steady_clock::now() - active_since;
            const int n = s->source.input_register
                              ? modbus_read_input_registers(ctx.get(), s->source.address,
                                                            static_cast<int>(regs.size()), regs.data())
                              : modbus_read_registers(ctx.get(), s->source.address,
                                                      static_cast<int>(regs.size()), regs.data());
            if (n != static_cast<int>(regs.size())) {
                const int err = n < 0 ? errno : EMBMDATA;  // before the log can change it
                if (tcp && answered_here && (err == ECONNRESET || err == EPIPE)) {
                    // Closed by the device while idle: connect again and read at once. Once: a read
                    // that fails on the new connection too is a failed read.
                    log_->log(said_idle_close ? spdlog::level::debug : spdlog::level::info,
                              "Modbus device {} closed the connection since the last read ({}): reconnecting "
                              "before each read it closes{}",
                              device_, modbus_strerror(err),
                              said_idle_close ? ""
                                              : " (devices and serial gateways often close an idle "
                                                "connection; said once)");
                    said_idle_close = true;
                    routine_reconnect = true;
                    ctx.reset();
                    due[i] = now;
                    first = i;
                    break;
                }
                // Not for a unit known silent: it would never be counted silent, nor backed off.
                if (tcp && err == ETIMEDOUT && !retried && silent[i] == 0 && idle >= kIdleBeforeRetry) {
                    // No answer on a connection idle for a while: a NAT router or firewall on the
                    // way may have dropped it without a word, and every read after an interval of
                    // quiet would time out (the sensor offline for good, its device answering a
                    // new connection at once). Connect again and read at once. Once: a read that
                    // times out on the new connection too is a failed read.
                    log_->log(said_idle_silence ? spdlog::level::debug : spdlog::level::info,
                              "Modbus device {} gave no answer on a connection idle for {:.1f} s: connecting "
                              "again and reading at once{}",
                              device_, std::chrono::duration<double>(idle).count(),
                              said_idle_silence ? ""
                                                : " (a router or firewall on the way may drop idle "
                                                  "connections; said once)");
                    said_idle_silence = true;
                    routine_reconnect = true;
                    retry_sensor = i;
                    ctx.reset();
                    due[i] = now;
                    first = i;
                    break;
                }
                if (device_answered(err)) active_since = std::chrono::steady_clock::now();
                const auto streak =
                    read_failed(i,
                                fmt::format("Modbus read of {} unit {} register {} failed: {}{}", device_,
                                            s->source.unit_id, s->source.address, modbus_strerror(err),
                                            unit_silent(err) ? " (no answer from the unit: its unit_id, its "
                                                               "wiring or its power)"
                                                             : ""),
                                unit_silent(err) ? "no_answer" : "error");
                // A unit silent again and again is tried less often (its interval, doubled at each
                // silence, up to 2 minutes): it is offline already, and each try holds up the units
                // that answer. A unit switched back on is read within that time. Silent: no answer,
                // or its serial gateway's "target failed to respond" (after the gateway's own wait);
                // a garbled answer is an answer (a noisy line), and is tried at its interval.
                if (unit_silent(err)) {
                    if (silent[i]++ > 0)
                        due[i] = std::chrono::steady_clock::now() + silent_retry(s->interval, silent[i]);
                    // No other unit that may be silent until a round of the others has gone (and,
                    // on a serial line, the drain below), from the end of this one's wait.
                    silent_gate = std::chrono::steady_clock::now() + period +
                                  (tcp ? Duration::zero() : s->source.response_timeout);
                } else {
                    silent[i] = 0;
                    answered[i] = true;
                }
                if (!device_answered(err)) {
                    // The answer may still come, and would be read as the answer to the next request:
                    // Modbus TCP would then never match a transaction id again.
                    if (tcp || connection_lost(err)) {
                        // As often as the failed read itself is: said when it starts failing.
                        routine_reconnect = streak > 0;
                        log_->log(streak % 1000 == 0 ? spdlog::level::info : spdlog::level::debug,
                                  "Modbus device {}: reconnecting{}", device_,
                                  tcp ? ", so that a late answer is not read as the next" : "");
                        ctx.reset();
                        first = (i + 1) % sensors_.size();
                        break;
                    }
                    // A serial line cannot be reset: let a late answer arrive, then discard it.
                    thread_.wait_for(s->source.response_timeout);
                    modbus_flush(ctx.get());
                }
                continue;
            }
            const double value = decode_registers(regs, s->source);
            // float32 NaN is how many devices say "no measurement": the device answers, its probe
            // does not. An invalid reading (sensor_health/invalid), as an impossible value is; as a
            // failed read it made the sensor offline, sending the operator to the network.
            if (!std::isfinite(value) && !no_measurement[i]) {
                log_->warn("sensor {}: {} register {} holds no number ({}): the device has no measurement",
                           s->id, device_, s->source.address, value);
            } else if (std::isfinite(value) && no_measurement[i]) {
                log_->info("sensor {}: {} register {} holds a number again", s->id, device_,
                           s->source.address);
            }
            no_measurement[i] = !std::isfinite(value);
            answered_here = true;
            answered[i] = true;
            active_since = std::chrono::steady_clock::now();
            silent[i] = 0;
            if (failing[i] > 0) {
                log_->info("sensor {}: {} register {} read again after {} failed reads", s->id, device_,
                           s->source.address, failing[i]);
                failing[i] = 0;
            }
            silences_.answered(s->id);
            handler_({s->id, value, Clock::now(), std::nullopt, false, std::chrono::steady_clock::now()});
        }
        // Until the next sensor is due. A connection dropped after a timeout is made again at once:
        // the sensors after the one that timed out are due now.
        if (ctx) {
            const auto next = *std::min_element(due.begin(), due.end());
            const auto wait = next - std::chrono::steady_clock::now();
            if (wait > Duration::zero())
                thread_.wait_for(std::min<std::chrono::steady_clock::duration>(wait, period));
        }
    }
}

}  // namespace kg::sensors
