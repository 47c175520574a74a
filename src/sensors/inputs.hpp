#pragma once
// Where readings come from: MQTT JSON sensors on the edge box's local broker, and Modbus TCP/RTU
// devices polled on their interval. Each input owns its threads and hands readings to one
// callback; a payload or a register it cannot read is logged and counted, never fatal.

#include <spdlog/logger.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/log_throttle.hpp"
#include "common/worker_thread.hpp"
#include "config/config.hpp"
#include "events/event.hpp"
#include "publish/mqtt_link.hpp"
#include "sensors/reading.hpp"

namespace mqtt {
class async_client;
}

namespace kg::sensors {

using ReadingHandler = std::function<void(const Reading&)>;

// Why an input has given a sensor no reading, as it last found: the cause an offline event says
// (docs/mqtt.md), so that the room can tell a dead broker or a switched-off Modbus gateway, which
// takes every sensor with it, from one sensor's flat battery. Kinds: `unreachable` (no connection
// to the broker or the Modbus device), `no_answer` (a Modbus unit that does not answer), `error`
// (a read the device refused or garbled), `silent` (connected, and the sensor sends nothing).
// Written by the input's threads, read by the supervisor's.
class SilenceCauses {
public:
    void failed(const std::string& sensor, events::EventCause cause);
    void answered(const std::string& sensor);
    std::optional<events::EventCause> of(const std::string& sensor) const;

private:
    mutable std::mutex mutex_;
    std::map<std::string, events::EventCause> causes_;
};

// What an input could not turn into readings, by sensor id (the gateway's /metrics).
struct InputCounts {
    std::uint64_t rejected = 0;       // MQTT: payloads on its topic without a number at its value path
    std::uint64_t dropped = 0;        // MQTT: messages on its topic a flood pushed out before handled
    std::uint64_t read_failures = 0;  // Modbus: reads that failed or held no number
};
using SensorCounts = std::map<std::string, InputCounts>;

class MqttSensorInput {
public:
    // `broker`: where the sensors publish, with the account and TLS to read them with.
    MqttSensorInput(config::BrokerAccount broker, std::string client_id,
                    const std::vector<const config::Sensor*>& sensors, ReadingHandler handler,
                    std::shared_ptr<spdlog::logger> log);
    ~MqttSensorInput();
    // Starts what is not running: both threads at first, the handling thread after a hand-over.
    void start();
    void stop();
    // A reload's hand-over: the connection and its subscriptions stay, so that what the sensors send
    // while the runs change (a gas detector's one "true") is queued instead of lost, as it was in the
    // second a clean session takes to connect and subscribe again. detach() stops handling; what was
    // queued before it is handled first, by the run that stops, and what arrives after waits in the
    // queue, timed by its arrival. attach() gives the next run's sensors, handler and log; start()
    // then subscribes again (the broker sends each topic's retained message anew, as to a new
    // connection), lets go of the topics no sensor reads now, and handles the queue.
    void detach();
    void attach(const std::vector<const config::Sensor*>& sensors, ReadingHandler handler,
                std::shared_ptr<spdlog::logger> log);
    // Whether a run with this broker account and client id would make the same connection. Not with
    // TLS files: a certificate renewed at the same path is read only by a new connection, and a
    // reload is how an installer has it taken.
    bool same_connection(const config::BrokerAccount& broker, const std::string& client_id) const {
        const bool files = broker_.tls && (!broker_.tls->ca_file.empty() || !broker_.tls->cert_file.empty() ||
                                           !broker_.tls->key_file.empty());
        return !files && broker == broker_ && client_id == client_id_;
    }
    std::uint64_t rejected() const { return rejected_.load(); }  // payloads that held no usable value
    std::uint64_t dropped() const { return dropped_.load(); }    // readings a flood pushed out, oldest first
    std::uint64_t received() const { return received_.load(); }  // messages Paho handed over, queued
    // Adds this input's counts of each of its sensors to `out`.
    void add_counts(SensorCounts& out) const;
    // Why `sensor` may have no readings (SilenceCauses): the broker's failure while not connected,
    // else `silent`.
    std::optional<events::EventCause> silence_cause(const std::string& sensor) const;

private:
    void run();
    void subscribe_pending();
    void broker_failed(std::string why);
    void subscription_refused(const std::string& sensor, std::string why);
    // A message as Paho handed it over: copied out of its callback, handled on handling_.
    struct Message {
        std::string topic, payload;
        bool retained;
        // Set for a message that came while no run handled them (a hand-over): its arrival, on both
        // clocks. Otherwise it is timed when it is handled.
        std::optional<std::pair<TimePoint, std::chrono::steady_clock::time_point>> arrived;
        // The size of a payload too large for a reading, dropped on arrival (then `payload` is empty).
        std::size_t oversize = 0;
    };
    void receive(Message message);
    void handle_messages();
    void handle(const Message& message);  // on_message, any exception said
    std::shared_ptr<spdlog::logger> log() const {
        std::lock_guard lock(log_mutex_);
        return log_;
    }
    void on_message(const Message& message);
    // When a reading was taken: its own time when the payload has one that can be believed, else
    // its arrival. Null: the message tells nothing current (a retained message of unknown age).
    std::optional<TimePoint> reading_time(const config::Sensor& sensor, const nlohmann::json& doc,
                                          bool retained, TimePoint arrival);

    struct Pending {
        std::string sensor, topic;
        std::chrono::steady_clock::time_point retry_at;
    };
    // On the input thread, after attach(): the subscriptions the new sensors need, and the end of
    // those no sensor reads now.
    void rebind();
    void unsubscribe_stale();

    config::BrokerAccount broker_;
    std::string url_, client_id_;  // url_: the broker's, as logged
    // When the connection was made (steady clock ticks; read by Paho's connection-lost callback).
    std::atomic<std::int64_t> connected_since_{0};
    // Why the broker is not connected, while it is not (set by run() and Paho's connection-lost
    // callback); none once connected.
    mutable std::mutex broker_failure_mutex_;
    std::optional<std::string> broker_failure_;
    // The sensors whose subscription the broker refused, with its words, until it is granted
    // (under broker_failure_mutex_): their silence is that, not the device's.
    std::map<std::string, std::string> refused_subscriptions_;
    // Owned: a hand-over outlives the configuration of the run that made the input. Replaced by
    // attach() under queue_mutex_ while the handling thread is stopped; read without the lock on that
    // thread, under it elsewhere.
    std::vector<config::Sensor> sensors_;
    ReadingHandler handler_;
    std::shared_ptr<spdlog::logger> log_;
    publish::TlsErrors tls_errors_;         // OpenSSL's reason for a failed handshake
    RepeatedFailure connect_failures_;      // connect attempts failed in a row, for the log
    std::vector<Pending> pending_;          // subscriptions not (yet) granted; input thread only
    std::set<std::string> granted_;         // topics subscribed on this connection; input thread only
    bool rebind_ = false;                   // start() after a hand-over; under queue_mutex_
    std::vector<std::string> unsubscribe_;  // after rebind(), once the new subscriptions are made
    // Sensors already logged about; handling thread only.
    std::set<std::string> clock_warned_, retained_warned_, time_warned_;
    // A device that sends, on every message, one the sensor cannot read (Zigbee2MQTT's partial
    // updates, a humidity-only message on the same topic) is said at most once a minute a sensor.
    std::map<std::string, LogThrottle> rejected_logs_;
    std::atomic<std::uint64_t> rejected_{0};
    // By the index of the sensor in sensors_: a flood's drop counts for each sensor its topic matches.
    std::unique_ptr<std::atomic<std::uint64_t>[]> rejected_by_, dropped_by_;
    // Paho C calls message callbacks on one receive thread shared by every client in the process
    // (the uplink's acknowledgements arrive on it too), holding a mutex they take to publish. So the
    // handler (rules, and an event's outbox commit with its fsync) runs on a thread of its own: the
    // uplink never waits for a sensor's disk write, nor can it deadlock with it.
    mutable std::mutex queue_mutex_;
    std::deque<Message> queue_;
    std::atomic<std::uint64_t> dropped_{0};   // counted under queue_mutex_
    std::atomic<std::uint64_t> received_{0};  // counted under queue_mutex_, once queued
    WorkerThread thread_;                     // connects and subscribes
    WorkerThread handling_;                   // turns messages into readings
    std::atomic<bool> detaching_{false};      // handling_ is stopped for a hand-over
    std::atomic<bool> detached_{false};       // from detach() to start(): arrivals are stamped
    mutable std::mutex log_mutex_;            // log_ is replaced by attach()
    // Last, so destroyed first: a callback Paho still runs while the client goes (a disconnect that
    // failed at stop) finds the queue and the threads whole.
    std::unique_ptr<mqtt::async_client> client_;
};

// Polls every sensor of one Modbus device (one TCP endpoint or one serial line) in turn.
class ModbusPoller {
public:
    ModbusPoller(std::string device, std::vector<const config::Sensor*> sensors, ReadingHandler handler,
                 std::shared_ptr<spdlog::logger> log);
    ~ModbusPoller();
    void start();
    // Asks the poller to stop after the read in progress, without waiting (stop() waits).
    void request_stop();
    void stop();
    std::uint64_t failures() const { return failures_.load(); }
    // Adds the failed reads of each of its sensors to `out` (failed connects are the device's:
    // connect_failures()).
    void add_counts(SensorCounts& out) const;
    std::uint64_t connect_failures() const { return connect_failures_.load(); }
    const std::string& device() const { return device_; }
    // Why `sensor` has had no reading lately (SilenceCauses), if a read or connect failed since
    // its last reading.
    std::optional<events::EventCause> silence_cause(const std::string& sensor) const {
        return silences_.of(sensor);
    }

private:
    void run();
    // "fridge-1, freezer-2": who is without readings when the device cannot be reached.
    std::string sensor_ids() const;

    std::string device_;
    std::vector<const config::Sensor*> sensors_;
    ReadingHandler handler_;
    std::shared_ptr<spdlog::logger> log_;
    std::atomic<std::uint64_t> failures_{0}, connect_failures_{0};
    std::unique_ptr<std::atomic<std::uint64_t>[]> read_failures_;  // by the index in sensors_
    SilenceCauses silences_;
    WorkerThread thread_;
};

}  // namespace kg::sensors
