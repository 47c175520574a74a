#pragma once
// MQTT messages of every site -> the store. Knows the gateway's topic tree and payloads
// (docs/mqtt.md); checks each message before it touches the store, and logs what it refused and
// why (topic, reason, the start of the payload) without ever throwing back to the MQTT client.

#include <spdlog/logger.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/time.hpp"
#include "monitor/store.hpp"

namespace kg::monitor {

// What a message changed, so the dashboard can refresh just that.
struct Change {
    enum class Kind { site, alert, rollup } kind = Kind::site;
    std::string site;
    std::string event_id;  // alerts
};

// Parses and checks an event payload received on <prefix>/<site>/events. nullopt with `error`
// set when it is not a valid event of that site.
std::optional<EventMessage> parse_event(const std::string& topic_site, const std::string& payload,
                                        std::string& error);

// The update sequence encoded in a message_id's suffix: start 0, update-<n> n, end highest.
std::optional<std::int64_t> message_sequence(const std::string& event_id, const std::string& message_id,
                                             const std::string& state);

class Ingest {
public:
    using Notify = std::function<void(const Change&)>;

    Ingest(Store& store, std::string topic_prefix, std::shared_ptr<spdlog::logger> log, Notify notify);

    // Never throws: a bad message is logged and counted. When the database cannot take a message
    // now (disk full, locked), it is tried again, with back-off, until it is stored or stop() is
    // called: the broker has already had its PUBACK, so a dropped message would be lost for good,
    // while a callback that waits makes the broker hold the messages after it.
    void handle(const std::string& topic, const std::string& payload, bool retained, TimePoint now);
    // Ends a wait in handle(): the monitor stops.
    void stop();

    struct Counters {
        std::atomic<std::uint64_t> received{0}, created{0}, updated{0}, duplicates{0}, stale{0}, refused{0},
            store_retries{0}, expired{0};
    };
    const Counters& counters() const { return counters_; }

private:
    void route(const std::string& topic, const std::string& payload, bool retained, TimePoint now);
    void refuse(const std::string& topic, const std::string& payload, const std::string& why);

    Store& store_;
    std::string prefix_;
    std::shared_ptr<spdlog::logger> log_;
    Notify notify_;
    Counters counters_;
    std::mutex stop_mutex_;
    std::condition_variable stop_cv_;
    bool stopping_ = false;
};

}  // namespace kg::monitor
