#include "monitor/monitor_config.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <boost/asio/ssl/context.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "common/listen_address.hpp"
#include "common/mqtt_topic.hpp"
#include "config/yaml_reader.hpp"
#include "monitor/http_post.hpp"

namespace kg::monitor {
namespace {

namespace fs = std::filesystem;
using config::describe;
using config::join;

const std::regex kIdPattern("^[A-Za-z0-9_-]{1,64}$");
// A client id is also a topic-safe name in the broker's logs and ACLs.
const std::regex kClientIdPattern("^[A-Za-z0-9_.-]{1,128}$");
constexpr std::size_t kMinPasswordLength = 8;
// The sensor kinds docs/config.md names (`sensors[].kind` is free text): words an operator may take
// for a check's name in a notification filter.
const std::set<std::string> kSensorKinds{"temperature", "humidity", "gas", "smoke", "door", "leak", "power"};

// kitchen-monitor's typed values keep their own messages, which its tests and operators match on.
// Every value goes through text(), so ${NAME} works in all of them, as the gateway's do.
class Reader : public config::YamlReader {
public:
    using YamlReader::YamlReader;

    bool string(const YAML::Node& node, const std::string& path, std::string& out) {
        return text(node, path, "a text value", out);
    }

    void optional_string(const YAML::Node& parent, const std::string& path, const char* key,
                         std::string& out) {
        if (const auto node = parent[key]; node) string(node, join(path, key), out);
    }

    void boolean(const YAML::Node& parent, const std::string& path, const char* key, bool& out) {
        const auto node = parent[key];
        if (!node) return;
        if (!node.IsScalar()) {
            error(node, join(path, key), fmt::format("expected true or false, not {}", describe(node)));
            return;
        }
        std::string t;
        if (!string(node, join(path, key), t)) return;
        if (!YAML::convert<bool>::decode(YAML::Node(t), out))
            error(node, join(path, key), fmt::format("expected true or false, not '{}'", t));
    }

    // An integer in [min, max]; `what` names what was expected in the error.
    bool integer(const YAML::Node& node, const std::string& path, int min, int max, const char* what,
                 int& out) {
        if (!node.IsScalar()) {
            error(node, path, fmt::format("expected {}, not {}", what, describe(node)));
            return false;
        }
        std::string t;
        if (!string(node, path, t)) return false;  // said why (an unset variable, not UTF-8)
        if (YAML::convert<int>::decode(YAML::Node(t), out) && out >= min && out <= max) return true;
        error(node, path, fmt::format("expected {}, not '{}'", what, t));
        return false;
    }

    // What is legal but most likely not meant: said at start and by --check-config, with where.
    std::vector<config::ConfigError> warnings;
    void warn(const YAML::Node& at, const std::string& path, std::string message) {
        error(at, path, std::move(message));
        warnings.push_back(std::move(errors.back()));
        errors.pop_back();
    }

    void duration(const YAML::Node& parent, const std::string& path, const char* key, Duration& out) {
        const auto node = parent[key];
        if (!node) return;
        std::string text;
        if (!string(node, join(path, key), text)) return;
        if (!config::parse_duration(text, out) || out.count() <= 0)
            error(node, join(path, key),
                  fmt::format("expected a positive duration like 30s, 15m, 2h, not '{}'", text));
    }

    // A duration that may also be `null`/`none`: no deadline for that tier, kept for ever.
    void duration_or_none(const YAML::Node& parent, const std::string& path, const char* key,
                          std::optional<Duration>& out) {
        const auto node = parent[key];
        if (!node) return;
        if (node.IsNull()) {
            out.reset();
            return;
        }
        std::string text;
        if (!string(node, join(path, key), text)) return;
        if (text == "none") {  // after ${NAME}: `retention.alerts: ${KEEP}` with KEEP=none
            out.reset();
            return;
        }
        Duration d{};
        if (!config::parse_duration(text, d) || d.count() <= 0) {
            error(node, join(path, key),
                  fmt::format("expected a positive duration like 30s, 15m, 2h, or none, not '{}'", text));
            return;
        }
        out = d;
    }

    // An unset path stays unset rather than becoming the config's folder.
    std::string file_path(const std::string& text) const {
        return text.empty() ? text : resolve(text).string();
    }
};

void read_mqtt(Reader& r, const YAML::Node& node, MqttSettings& m) {
    const std::string p = "mqtt";
    if (!r.map(node, p,
               {"url", "client_id", "username", "password", "tls", "topic_prefix", "share_group",
                "clean_session", "keepalive", "reconnect"}))
        return;
    if (!node["url"]) r.error(node, join(p, "url"), "required: the central broker, e.g. ssl://broker:8883");
    r.optional_string(node, p, "url", m.url);
    // A WebSocket listener is usually at a path (wss://broker:443/mqtt), as the gateway's URL may be.
    if (!m.url.empty() &&
        !std::regex_search(m.url, std::regex("^((tcp|ssl|mqtt|mqtts)://[^/]+|(ws|wss)://[^/]+(/.*)?)$")))
        r.error(node["url"], join(p, "url"),
                fmt::format("'{}' is not a broker URL (tcp://host:port, ssl://host:port, mqtt://, mqtts://, "
                            "ws://host:port/path, wss://host:port/path)",
                            m.url));
    if (!node["client_id"])
        r.error(node, join(p, "client_id"), "required: a name unique to this monitor instance");
    r.optional_string(node, p, "client_id", m.client_id);
    if (node["client_id"] && !std::regex_match(m.client_id, kClientIdPattern))
        r.error(node["client_id"], join(p, "client_id"),
                "use letters, digits, '.', '_' and '-' (at most 128)");
    r.optional_string(node, p, "username", m.username);
    r.optional_string(node, p, "password", m.password);
    if (!m.password.empty() && m.username.empty())
        r.error(node["password"], join(p, "password"), "a password needs a username");
    r.optional_string(node, p, "topic_prefix", m.topic_prefix);
    if (const auto problem = topic_prefix_problem(m.topic_prefix); !problem.empty())
        r.error(node["topic_prefix"], join(p, "topic_prefix"),
                fmt::format("'{}': {}", m.topic_prefix, problem));
    r.optional_string(node, p, "share_group", m.share_group);
    if (!m.share_group.empty() && !std::regex_match(m.share_group, kIdPattern))
        r.error(node["share_group"], join(p, "share_group"),
                "use letters, digits, '_' and '-' (a topic level)");
    r.boolean(node, p, "clean_session", m.clean_session);
    r.duration(node, p, "keepalive", m.keepalive);
    if (node["keepalive"] &&
        (m.keepalive < std::chrono::seconds(1) || m.keepalive > std::chrono::seconds(65535)))
        r.error(node["keepalive"], join(p, "keepalive"), "must be from 1s to 65535s (MQTT's 16-bit seconds)");
    if (const auto rc = node["reconnect"]; rc && r.map(rc, join(p, "reconnect"), {"min", "max"})) {
        r.duration(rc, join(p, "reconnect"), "min", m.reconnect_min);
        r.duration(rc, join(p, "reconnect"), "max", m.reconnect_max);
        if (m.reconnect_max < m.reconnect_min) r.error(rc, join(p, "reconnect"), "max is shorter than min");
    }
    if (const auto tls = node["tls"]; tls) {
        const std::string tp = join(p, "tls");
        if (r.map(tls, tp, {"ca_file", "cert_file", "key_file", "verify_server"})) {
            config::Tls t;
            r.optional_string(tls, tp, "ca_file", t.ca_file);
            r.optional_string(tls, tp, "cert_file", t.cert_file);
            r.optional_string(tls, tp, "key_file", t.key_file);
            r.boolean(tls, tp, "verify_server", t.verify_server);
            if (t.cert_file.empty() != t.key_file.empty())
                r.error(tls, tp, "cert_file and key_file go together");
            for (auto [key, f] : {std::pair{"ca_file", &t.ca_file}, std::pair{"cert_file", &t.cert_file},
                                  std::pair{"key_file", &t.key_file}}) {
                *f = r.file_path(*f);
                if (!f->empty() && !fs::exists(*f))
                    r.error(tls[key], join(tp, key), fmt::format("{} does not exist", *f));
            }
            m.tls = t;
        }
        if (const auto problem = tls_settings_problem(m.url, m.url); !m.url.empty() && !problem.empty())
            r.error(tls, tp, problem);
    }
}

void read_http(Reader& r, const YAML::Node& node, HttpSettings& h) {
    const std::string p = "http";
    if (!r.map(node, p, {"listen", "operators", "session_ttl", "trusted_proxies"})) return;
    r.optional_string(node, p, "listen", h.listen);
    if (std::string why; !parse_listen_address(h.listen, &why))
        r.error(node["listen"], join(p, "listen"),
                fmt::format("'{}' is not IP:PORT (or :PORT): {}", h.listen, why));
    r.duration(node, p, "session_ttl", h.session_ttl);
    if (node["trusted_proxies"])
        r.trusted_proxies(node["trusted_proxies"], join(p, "trusted_proxies"), h.trusted_proxies);
    const auto ops = node["operators"];
    // No default operator and no default password: a dashboard nobody configured is not reachable.
    if (!ops || !ops.IsSequence() || ops.size() == 0) {
        r.error(ops ? ops : node, join(p, "operators"),
                "required: a list of operators, each with a name and a password or token");
        return;
    }
    std::set<std::string> names;
    for (std::size_t i = 0; i < ops.size(); ++i) {
        const auto op = ops[i];
        const std::string op_path = fmt::format("{}.operators[{}]", p, i);
        if (!r.map(op, op_path, {"name", "password", "token"})) continue;
        Operator o;
        if (!op["name"]) r.error(op, join(op_path, "name"), "required");
        r.optional_string(op, op_path, "name", o.name);
        if (op["name"] && !std::regex_match(o.name, kIdPattern))
            r.error(op["name"], join(op_path, "name"), "use letters, digits, '_' and '-' (at most 64)");
        if (!o.name.empty() && !names.insert(o.name).second)
            r.error(op["name"], join(op_path, "name"), fmt::format("operator '{}' is listed twice", o.name));
        const bool password_read =
            op["password"] && r.string(op["password"], join(op_path, "password"), o.password);
        const bool token_read = op["token"] && r.string(op["token"], join(op_path, "token"), o.token);
        if (!op["password"] && !op["token"]) r.error(op, op_path, "give a password or a token (or both)");
        // The messages never repeat the secret itself: config errors end up in logs.
        if (password_read && o.password.size() < kMinPasswordLength)
            r.error(op["password"], join(op_path, "password"),
                    fmt::format("too short: at least {} characters", kMinPasswordLength));
        if (token_read && o.token.size() < 16)
            r.error(op["token"], join(op_path, "token"), "too short: at least 16 characters");
        h.operators.push_back(std::move(o));
    }
}

void read_deadlines(Reader& r, const YAML::Node& node, std::array<Deadline, 3>& out) {
    if (!r.map(node, "deadlines", {"severity_1", "severity_2", "severity_3"})) return;
    for (int s = 1; s <= 3; ++s) {
        const std::string key = fmt::format("severity_{}", s);
        const auto tier = node[key];
        if (!tier) continue;
        const std::string p = join("deadlines", key);
        if (!r.map(tier, p, {"acknowledge", "close"})) continue;
        auto& d = out[static_cast<std::size_t>(s - 1)];
        r.duration_or_none(tier, p, "acknowledge", d.acknowledge);
        r.duration_or_none(tier, p, "close", d.close);
        if (d.acknowledge && d.close && *d.close < *d.acknowledge)
            r.error(tier, p, "close is shorter than acknowledge");
    }
}

void read_retention(Reader& r, const YAML::Node& node, Retention& out) {
    if (!r.map(node, "retention", {"alerts", "snapshots", "rollups"})) return;
    for (auto [key, value] : {std::pair{"alerts", &out.alerts}, std::pair{"snapshots", &out.snapshots},
                              std::pair{"rollups", &out.rollups}}) {
        r.duration_or_none(node, "retention", key, *value);
        // A unit slip (30m for 30d) would delete nearly everything at the next start.
        if (*value && *value < std::chrono::hours(24))
            r.error(node[key], join("retention", key),
                    "shorter than a day: is the unit right? (30d, not 30m)");
    }
}

void read_replay(Reader& r, const YAML::Node& node, const std::string& share_group, ReplaySettings& out) {
    out.enabled = share_group.empty();
    if (!node) return;
    if (!r.map(node, "replay", {"enabled", "after", "every", "give_up"})) return;
    r.boolean(node, "replay", "enabled", out.enabled);
    r.duration(node, "replay", "after", out.after);
    r.duration(node, "replay", "every", out.every);
    r.duration(node, "replay", "give_up", out.give_up);
    // Judged whichever of the two the file sets: `after: 48h` beside the default give_up gave every
    // gap up before it was ever asked for.
    if (out.enabled && (node["give_up"] || node["after"]) && out.give_up <= out.after) {
        const bool own = node["give_up"].IsDefined();
        r.error(own ? node["give_up"] : node["after"], join("replay", own ? "give_up" : "after"),
                own ? fmt::format("not longer than replay.after ({} s): nothing would be asked for",
                                  out.after.count() / 1000.0)
                    : fmt::format("not shorter than replay.give_up ({} s, the default): nothing would be "
                                  "asked for; set give_up longer too",
                                  out.give_up.count() / 1000.0));
    }
    // The gateway answers through its outbox, behind what is queued: asking faster only repeats.
    for (auto [key, value] : {std::pair{"after", out.after}, std::pair{"every", out.every}}) {
        if (node[key] && value.count() > 0 && value < std::chrono::seconds(1))
            r.error(node[key], join("replay", key), "shorter than 1s: the gateway needs time to answer");
    }
}

// Where and how a target is posted to: url, format, secret, ca_file.
void read_notify_endpoint(Reader& r, const YAML::Node& node, const std::string& p, NotifyTarget& t) {
    if (!node["url"]) r.error(node, join(p, "url"), "required: where the notifications are posted");
    r.optional_string(node, p, "url", t.url);
    // The URL of a WeCom robot holds its key: never repeated in a message.
    if (node["url"] && !parse_web_url(t.url))
        r.error(node["url"], join(p, "url"), "not an http:// or https:// URL (http://host[:port]/path)");
    std::string format = "json";
    r.optional_string(node, p, "format", format);
    if (format == "json") {
        t.format = NotifyTarget::Format::json;
    } else if (format == "wecom") {
        t.format = NotifyTarget::Format::wecom;
    } else if (format == "dingtalk") {
        t.format = NotifyTarget::Format::dingtalk;
    } else {
        r.error(node["format"], join(p, "format"),
                fmt::format("expected json, wecom or dingtalk, not '{}'", format));
    }
    r.optional_string(node, p, "secret", t.secret);
    if (node["secret"] && t.format != NotifyTarget::Format::dingtalk)
        r.error(node["secret"], join(p, "secret"), "only a dingtalk robot signs with a secret");
    r.optional_string(node, p, "ca_file", t.ca_file);
    t.ca_file = r.file_path(t.ca_file);
    if (!t.ca_file.empty() && !fs::exists(t.ca_file))
        r.error(node["ca_file"], join(p, "ca_file"), fmt::format("{} does not exist", t.ca_file));
    if (!t.ca_file.empty() && t.url.rfind("https://", 0) != 0)
        r.error(node["ca_file"], join(p, "ca_file"), "a CA is for an https:// URL");
    if (!t.ca_file.empty() && fs::exists(t.ca_file)) {
        // Read now: a file that is not a PEM certificate would fail every attempt for a day.
        try {
            boost::asio::ssl::context ctx(boost::asio::ssl::context::tls_client);
            ctx.load_verify_file(t.ca_file);
        } catch (const std::exception& e) {
            r.error(node["ca_file"], join(p, "ca_file"),
                    fmt::format("{} cannot be read as PEM certificates: {}", t.ca_file, e.what()));
        }
    }
}

// Which alerts a target takes: severities, checks, labels, sites, on.
void read_notify_filters(Reader& r, const YAML::Node& node, const std::string& p, NotifyTarget& t) {
    if (const auto sev = node["severities"]) {
        t.severities.clear();
        if (!sev.IsSequence() || sev.size() == 0) {
            r.error(sev, join(p, "severities"), "expected a list of severities, e.g. [1, 2]");
        } else {
            for (std::size_t i = 0; i < sev.size(); ++i) {
                int v = 0;
                if (r.integer(sev[i], fmt::format("{}.severities[{}]", p, i), 1, 3, "1, 2 or 3", v))
                    t.severities.push_back(v);
            }
        }
    }
    for (auto [key, list] :
         {std::pair{"checks", &t.checks}, std::pair{"labels", &t.labels}, std::pair{"sites", &t.sites}}) {
        const auto n = node[key];
        if (!n) continue;
        if (!n.IsSequence() || n.size() == 0) {
            r.error(n, join(p, key), fmt::format("expected a list of {} (leave it out for all)", key));
            continue;
        }
        for (std::size_t i = 0; i < n.size(); ++i) {
            std::string v;
            const auto at = fmt::format("{}.{}[{}]", p, key, i);
            if (!r.string(n[i], at, v)) continue;
            // A sensor's kind as a check matches none of its alerts: a gas leak's notification
            // would never go out, and nothing would say so. Not an error: a user model's manifest
            // may name a check so (`smoke`).
            if (list == &t.checks && kSensorKinds.contains(v)) {
                r.warn(n[i], at,
                       fmt::format("'{}' is a kind of sensor, and no built-in check: a sensor's alerts have "
                                   "the check sensor (its thresholds, picked by their label with labels: "
                                   "[...]), sensor_health or disinfection; only a model's check named '{}' "
                                   "would match",
                                   v, v));
            }
            list->push_back(v);
        }
    }
    if (const auto on = node["on"]) {
        t.on_open = t.on_again = t.on_end = false;
        if (!on.IsSequence() || on.size() == 0) {
            r.error(on, join(p, "on"), "expected a list of open, again and/or end");
        } else {
            for (std::size_t i = 0; i < on.size(); ++i) {
                std::string v;
                if (!r.string(on[i], fmt::format("{}.on[{}]", p, i), v)) continue;
                if (v == "open") {
                    t.on_open = true;
                } else if (v == "again") {
                    t.on_again = true;
                } else if (v == "end") {
                    t.on_end = true;
                } else {
                    r.error(on[i], fmt::format("{}.on[{}]", p, i),
                            fmt::format("expected open, again or end, not '{}'", v));
                }
            }
        }
    }
}

void read_notify_target(Reader& r, const YAML::Node& node, const std::string& p, NotifyTarget& t) {
    if (!r.map(node, p,
               {"name", "url", "format", "secret", "ca_file", "severities", "checks", "labels", "sites", "on",
                "timeout", "give_up"}))
        return;
    if (!node["name"]) r.error(node, join(p, "name"), "required: a name for logs and metrics");
    r.optional_string(node, p, "name", t.name);
    if (node["name"] && !std::regex_match(t.name, kIdPattern))
        r.error(node["name"], join(p, "name"), "use letters, digits, '_' and '-' (at most 64)");
    read_notify_endpoint(r, node, p, t);
    read_notify_filters(r, node, p, t);
    // `again` by default where people read the messages (a WeCom or DingTalk group); a JSON
    // endpoint is a program written to the kinds it knew ("open", "end"), told of it by `on`.
    if (!node["on"]) t.on_again = t.format != NotifyTarget::Format::json;
    r.duration(node, p, "timeout", t.timeout);
    // Bounded: a stop waits for the attempt in progress, and systemd's patience is 90 s.
    if (node["timeout"] && (t.timeout < std::chrono::seconds(1) || t.timeout > std::chrono::seconds(60)))
        r.error(node["timeout"], join(p, "timeout"), "expected 1s to 60s");
    r.duration(node, p, "give_up", t.give_up);
    if (node["give_up"] && t.give_up < std::chrono::minutes(1))
        r.error(node["give_up"], join(p, "give_up"),
                "shorter than a minute: a target down briefly would lose alerts");
}

void read_notify(Reader& r, const YAML::Node& node, NotifySettings& out) {
    if (!r.map(node, "notify", {"dashboard_url", "targets"})) return;
    r.optional_string(node, "notify", "dashboard_url", out.dashboard_url);
    if (!out.dashboard_url.empty() && !parse_web_url(out.dashboard_url))
        r.error(node["dashboard_url"], "notify.dashboard_url", "not an http:// or https:// URL");
    const auto targets = node["targets"];
    if (!targets || !targets.IsSequence() || targets.size() == 0) {
        r.error(targets ? targets : node, "notify.targets",
                "required: a list of targets, each with a name and a url");
        return;
    }
    std::set<std::string> names;
    for (std::size_t i = 0; i < targets.size(); ++i) {
        const std::string p = fmt::format("notify.targets[{}]", i);
        NotifyTarget t;
        read_notify_target(r, targets[i], p, t);
        if (!t.name.empty() && !names.insert(t.name).second)
            r.error(targets[i]["name"], join(p, "name"), fmt::format("target '{}' is listed twice", t.name));
        out.targets.push_back(std::move(t));
    }
}

MonitorConfig read(const YAML::Node& root, const std::string& source, const fs::path& base) {
    Reader r(source, base);
    MonitorConfig cfg;
    cfg.source_file = source;
    if (!root.IsMap()) {
        r.error(root, "", fmt::format("expected a map of sections, not {}", describe(root)));
        throw config::ConfigInvalid(r.errors);
    }
    r.map(root, "",
          {"mqtt", "db", "http", "deadlines", "retention", "replay", "notify", "heartbeat_timeout", "log"});
    if (const auto n = root["mqtt"]) {
        read_mqtt(r, n, cfg.mqtt);
    } else {
        r.error(root, "mqtt", "required: the central broker (url, client_id)");
    }
    if (const auto n = root["db"]; n && r.map(n, "db", {"path"})) {
        r.optional_string(n, "db", "path", cfg.db_path);
        cfg.db_path = r.file_path(cfg.db_path);
    }
    if (cfg.db_path.empty())
        r.error(root["db"] ? root["db"] : root, "db.path", "required: the SQLite database file");
    if (const auto n = root["http"]) {
        read_http(r, n, cfg.http);
    } else {
        r.error(root, "http", "required: listen address and operators");
    }
    if (const auto n = root["deadlines"]) read_deadlines(r, n, cfg.deadlines);
    if (const auto n = root["retention"]) read_retention(r, n, cfg.retention);
    read_replay(r, root["replay"], cfg.mqtt.share_group, cfg.replay);
    if (const auto n = root["notify"]) read_notify(r, n, cfg.notify);
    r.duration(root, "", "heartbeat_timeout", cfg.heartbeat_timeout);
    if (const auto n = root["log"]; n && r.map(n, "log", {"level", "json"})) {
        r.optional_string(n, "log", "level", cfg.log_level);
        static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error"};
        if (!levels.count(cfg.log_level))
            r.error(n["level"], "log.level", "expected trace, debug, info, warn or error");
        r.boolean(n, "log", "json", cfg.log_json);
    }
    if (!r.errors.empty()) {
        config::sort_by_place(r.errors);
        throw config::ConfigInvalid(r.errors);
    }
    cfg.warnings = std::move(r.warnings);
    return cfg;
}

}  // namespace

MonitorConfig load_monitor_config_string(const std::string& yaml, const std::string& source_name) {
    YAML::Node root;
    try {
        root = YAML::Load(yaml);
    } catch (const YAML::Exception& e) {
        throw config::ConfigInvalid({{source_name, e.mark.line >= 0 ? e.mark.line + 1 : 0,
                                      e.mark.column >= 0 ? e.mark.column + 1 : 0, "", e.msg}});
    }
    if (auto unclosed = config::unclosed_quote(yaml, {root}, source_name))
        throw config::ConfigInvalid({std::move(*unclosed)});
    return read(root, source_name, fs::path(source_name).parent_path());
}

MonitorConfig load_monitor_config(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec))
        throw config::ConfigInvalid({{path, 0, 0, "", "cannot read the file: it is a folder"}});
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw config::ConfigInvalid(
            {{path, 0, 0, "", fmt::format("cannot read the file: {}", std::strerror(errno))}});
    }
    std::stringstream text;
    text << in.rdbuf();
    return load_monitor_config_string(text.str(), path);
}

}  // namespace kg::monitor
