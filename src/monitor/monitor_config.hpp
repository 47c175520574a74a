#pragma once
// kitchen-monitor's typed configuration and its YAML loader. Errors reuse the gateway's
// ConfigError/ConfigInvalid, so both programs report problems the same way: FILE:LINE:COL: KEY: MESSAGE,
// every problem at once.

#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/config_loader.hpp"
#include "monitor/retention.hpp"

namespace kg::monitor {

using Duration = std::chrono::milliseconds;

struct MqttSettings {
    std::string url;        // tcp://, ssl://, mqtt://, mqtts://
    std::string client_id;  // required: unique per monitor instance (the broker keeps its session)
    std::string username;
    std::string password;
    std::optional<config::Tls> tls;
    std::string topic_prefix = "kitchen";
    // Non-empty: the event streams (events, snapshots, clip reports, roll-ups) are read through
    // `$share/<share_group>/...`, so the instances of one group split them.
    std::string share_group;
    bool clean_session = false;  // false: the broker queues QoS 1 messages while we are away
    Duration keepalive{std::chrono::seconds(30)};
    Duration reconnect_min{std::chrono::milliseconds(500)};
    Duration reconnect_max{std::chrono::seconds(30)};
};

// An operator of the monitoring room: signs in with a password (dashboard, HTTP Basic) or calls
// the API with a bearer token. At least one of the two is set.
struct Operator {
    std::string name;
    std::string password;
    std::string token;
};

struct HttpSettings {
    std::string listen = "127.0.0.1:8090";
    std::vector<Operator> operators;
    Duration session_ttl{std::chrono::hours(12)};
    // The reverse proxy in front: its X-Forwarded-For names the client that passwords are counted for.
    std::vector<std::string> trusted_proxies;
};

// How long an alert of one tier may stay unacknowledged / unclosed, counted from when the
// monitoring room received it. Unset: no deadline.
struct Deadline {
    std::optional<Duration> acknowledge;
    std::optional<Duration> close;
};

// Replay requests for missing sequence numbers (docs/mqtt.md, "Sequence numbers and replay").
struct ReplaySettings {
    // Unset in the file: on without mqtt.share_group, off with one (each instance of a group sees
    // only part of every stream, unless they share one database).
    bool enabled = true;
    Duration after{std::chrono::seconds(60)};  // a number missing this long is asked for
    Duration every{std::chrono::minutes(5)};   // and again this often while it stays missing
    // A number missing this long (since first missed) is given up: counted as lost, no longer asked
    // for (a gateway offline for good, one that cannot read its replay topic, a message the room
    // refuses before reading its number).
    Duration give_up{std::chrono::hours(24)};
};

// Where alerts are pushed as they arrive (docs/monitor.md, "Notifications"): a duty officer's
// WeCom or DingTalk group, or any HTTP endpoint taking JSON. The room's own queue keeps each
// notification until the target takes it, across restarts, once per alert and kind.
struct NotifyTarget {
    enum class Format { json, wecom, dingtalk };
    std::string name;  // in logs, metrics and the queue
    std::string url;   // http:// or https://
    Format format = Format::json;
    std::string secret;   // dingtalk: the robot's signing secret ("SEC..."), when it has one
    std::string ca_file;  // https: trust this CA instead of the system's
    std::vector<int> severities{1, 2, 3};
    std::vector<std::string> checks;  // empty: every check
    std::vector<std::string> labels;  // empty: every label (a sensor threshold's `leak`, `too_warm`)
    std::vector<std::string> sites;   // empty: every site
    bool on_open = true;              // an alert arrives (its first message)
    bool on_again =
        true;  // an open alert repeats (another disinfection window missed); json: only when in `on`
    bool on_end = false;  // the gateway ends it
    Duration timeout{std::chrono::seconds(10)};
    Duration give_up{std::chrono::hours(24)};  // a notification not taken this long is dropped
};

struct NotifySettings {
    // The dashboard's address as operators open it: messages link to the alert. Empty: no link.
    std::string dashboard_url;
    std::vector<NotifyTarget> targets;
};

struct MonitorConfig {
    std::string source_file;
    // Legal but most likely not meant ("FILE:LINE:COL: KEY: MESSAGE"): logged at start, printed by
    // --check-config.
    std::vector<config::ConfigError> warnings;
    MqttSettings mqtt;
    std::string db_path;
    HttpSettings http;
    // Index = severity - 1. Defaults from the regulators' tiers: tier 1 immediate, tier 2 within a
    // deadline (a rectification plan within 2 hours, re-checked after 72 hours), tier 3 routine.
    std::array<Deadline, 3> deadlines{{
        {Duration{std::chrono::minutes(15)}, Duration{std::chrono::hours(2)}},
        {Duration{std::chrono::hours(2)}, Duration{std::chrono::hours(72)}},
        {std::nullopt, std::nullopt},
    }};
    Retention retention;
    ReplaySettings replay;
    NotifySettings notify;
    // Sites' numbered streams are followed (missing and lost counts) with requests on, or without a
    // share group; an instance of a group on its own database would see most numbers as missing.
    bool track_sequences() const { return replay.enabled || mqtt.share_group.empty(); }
    // A site that says it is online but sent nothing for this long is shown as silent.
    Duration heartbeat_timeout{std::chrono::seconds(60)};
    std::string log_level = "info";
    bool log_json = false;
};

// Throws config::ConfigInvalid (also for an unreadable file or a YAML syntax error).
MonitorConfig load_monitor_config(const std::string& path);
MonitorConfig load_monitor_config_string(const std::string& yaml, const std::string& source_name);

}  // namespace kg::monitor
