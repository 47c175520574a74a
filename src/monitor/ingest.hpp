#pragma once
// MQTT messages of every site -> the store. Knows the gateway's topic tree and payloads
// (docs/mqtt.md); checks each message before it touches the store, and logs what it refused and
// why (topic, reason, the start of the payload) without ever throwing back to the MQTT client.

#include <spdlog/logger.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "common/log_throttle.hpp"
#include "common/time.hpp"
#include "monitor/clock_watch.hpp"
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

// The `stream` and `seq` of a numbered message (docs/mqtt.md, "Sequence numbers and replay"): seq
// at least `min_seq` (1 for events and clip reports, 0 in the `gateway` message). nullopt with
// `error` empty when the message has neither (a gateway of an older version), with `error` set
// when they are there but wrong.
std::optional<Sequence> parse_sequence(const nlohmann::json& j, std::int64_t min_seq, std::string& error);

// The update sequence encoded in a message_id's suffix: start 0, update-<n> n, end highest.
std::optional<std::int64_t> message_sequence(const std::string& event_id, const std::string& message_id,
                                             const std::string& state);

class Ingest {
public:
    using Notify = std::function<void(const Change&)>;

    // `track_sequences`: follow each site's numbered stream (off for an instance of a share group
    // with its own database: it sees only part of each stream). `warnings_per_minute`: see
    // kWarningsPerMinute (a test that reads many reasons of one site raises it).
    Ingest(Store& store, std::string topic_prefix, std::shared_ptr<spdlog::logger> log, Notify notify,
           bool track_sequences = true, std::size_t warnings_per_minute = kWarningsPerMinute);

    // Never throws: a bad message is logged and counted. When the database cannot take a message
    // now (disk full, locked), it is tried again, with back-off, until it is stored or stop() is
    // called: the broker has already had its PUBACK, so a dropped message would be lost for good,
    // while a callback that waits makes the broker hold the messages after it.
    void handle(const std::string& topic, const std::string& payload, bool retained, TimePoint now);
    // Ends a wait in handle(): the monitor stops.
    void stop();

    // Warnings caused by one sender's messages logged a minute, the rest counted (see KeyedLogThrottle).
    static constexpr std::size_t kWarningsPerMinute = 5;

    struct Counters {
        std::atomic<std::uint64_t> received{0}, created{0}, updated{0}, duplicates{0}, stale{0}, refused{0},
            store_retries{0}, expired{0}, lost_numbers{0}, found_numbers{0};
    };
    const Counters& counters() const { return counters_; }
    // The room's clock against the sites' (their live states' times).
    const ClockWatch& clock() const { return clock_; }
    // Why the database does not take the message in hand (a transient error, retried: disk full,
    // locked, read-only); empty while it takes what comes. /readyz says it (any thread).
    std::string store_failure() const;

private:
    void route(const std::string& topic, const std::string& payload, bool retained, TimePoint now);
    // What follows a topic whose site level is an id (parts[0] the prefix, [1] the site, [2] the kind).
    void route_site(const std::string& topic, const std::vector<std::string>& parts,
                    const std::string& payload, bool retained, TimePoint now);
    void refuse(const std::string& topic, const std::string& payload, const std::string& why);
    // Who sent a message, for the per-sender throttles: a site the room knows by the topic's site
    // level, everyone else one sender.
    std::string sender_of(const std::string& topic);
    // An empty message on a site's availability or gateway topic: the broker's retained copy was
    // deleted (`mosquitto_pub -r -n`). Said at info (a few a minute per sender), not refused.
    void retained_cleared(const std::string& topic, const std::string& site, const std::string& kind);
    // A retained message (or last will) of a site an operator retired: not stored, said once a site.
    void ignore_retired(const std::string& topic, const std::string& site);
    // A warning caused by one message (a refusal, a field ignored): throttled per sender, a site the
    // room knows or, all together, the rest (see KeyedLogThrottle). Every such message is counted.
    template <typename... Args>
    void warn_of_message(const std::string& topic, fmt::format_string<Args...> format, Args&&... args);
    // What a camera's or sensor's state did (`what`: "camera" or "sensor"): refused, ignored or shown.
    void state_stored(Store::SourceStored stored, const std::string& topic, const std::string& payload,
                      const std::string& site, const char* what, const std::string& id);
    void route_event(const std::string& topic, const std::string& site, const std::string& payload,
                     const nlohmann::json& j, TimePoint now);
    void route_lost(const std::string& topic, const std::string& site, const std::string& payload,
                    const nlohmann::json& j, TimePoint now);
    // The message's stream and seq, to be recorded with it (see parse_sequence for `min_seq`);
    // nullopt when it has none, when they are wrong (logged: the message is still stored) or when
    // this instance does not track sequences.
    std::optional<Sequence> sequence_of(const std::string& topic, const nlohmann::json& j,
                                        std::int64_t min_seq);
    void report(const std::string& site, const std::string& stream, const TrackResult& r, TimePoint now);

    Store& store_;
    std::string prefix_;
    std::shared_ptr<spdlog::logger> log_;
    Notify notify_;
    bool track_sequences_;
    Counters counters_;
    KeyedLogThrottle message_warnings_;
    KeyedLogThrottle clear_lines_;  // retained_cleared's
    std::mutex retired_mutex_;
    std::set<std::string> retired_said_;  // the retired sites ignore_retired spoke of (this run)
    ClockWatch clock_;
    // Per site: when a found number was last logged, and how many were found since.
    struct FoundLog {
        std::optional<TimePoint> last;
        std::uint64_t unlogged = 0;
    };
    std::mutex found_mutex_;
    std::map<std::string, FoundLog> found_logs_;
    std::atomic<bool> store_failing_{false};
    mutable std::mutex failure_mutex_;
    std::string store_failure_;  // under failure_mutex_
    std::mutex stop_mutex_;
    std::condition_variable stop_cv_;
    bool stopping_ = false;
};

}  // namespace kg::monitor
