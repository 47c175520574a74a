#include "config/config_loader.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "common/env.hpp"
#include "rules/schedule.hpp"

namespace kg::config {
namespace fs = std::filesystem;

const std::vector<std::string>& known_checks() {
    static const std::vector<std::string> checks{
        "camera_health", "mask",        "head_covering", "after_hours_motion",
        "unattended",    "cleanliness", "bin_lid"};
    return checks;
}

std::string ConfigError::to_string() const {
    std::string where = file;
    if (line > 0) where += fmt::format(":{}:{}", line, column);
    return key.empty() ? fmt::format("{}: {}", where, message)
                       : fmt::format("{}: {}: {}", where, key, message);
}

namespace {

std::string summary(const std::vector<ConfigError>& errors) {
    return errors.empty() ? "invalid configuration" : errors.front().to_string();
}

}  // namespace

ConfigInvalid::ConfigInvalid(std::vector<ConfigError> errs)
    : std::runtime_error(summary(errs)), errors(std::move(errs)) {}

bool parse_duration(const std::string& text, Duration& out) {
    static const std::regex number(R"(^\s*([0-9]+(\.[0-9]+)?)\s*$)");
    static const std::regex part(R"(([0-9]+(\.[0-9]+)?)(ms|s|m|h|d))");
    std::smatch m;
    if (std::regex_match(text, m, number)) {
        out = Duration(static_cast<Duration::rep>(std::llround(std::stod(m[1]) * 1000.0)));
        return true;
    }
    double ms = 0;
    std::size_t consumed = 0;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), part); it != std::sregex_iterator(); ++it) {
        if (static_cast<std::size_t>(it->position()) != consumed) return false;
        consumed += static_cast<std::size_t>(it->length());
        const double v = std::stod((*it)[1]);
        const std::string unit = (*it)[3];
        ms += v * (unit == "ms"  ? 1.0
                   : unit == "s" ? 1e3
                   : unit == "m" ? 60e3
                   : unit == "h" ? 3600e3
                                 : 86400e3);
    }
    if (consumed == 0 || consumed != text.size()) return false;
    out = Duration(static_cast<Duration::rep>(std::llround(ms)));
    return true;
}

bool parse_size(const std::string& text, std::size_t& out) {
    static const std::regex size(
        R"(^\s*([0-9]+(\.[0-9]+)?)\s*(B|k|K|KB|KiB|M|MB|MiB|G|GB|GiB|T|TB|TiB)?\s*$)");
    std::smatch m;
    if (!std::regex_match(text, m, size)) return false;
    const std::string unit = m[3];
    double factor = 1;
    if (unit == "k" || unit == "K" || unit == "KB") factor = 1e3;
    if (unit == "KiB") factor = 1024.0;
    if (unit == "M" || unit == "MB") factor = 1e6;
    if (unit == "MiB") factor = 1024.0 * 1024;
    if (unit == "G" || unit == "GB") factor = 1e9;
    if (unit == "GiB") factor = 1024.0 * 1024 * 1024;
    if (unit == "T" || unit == "TB") factor = 1e12;
    if (unit == "TiB") factor = 1024.0 * 1024 * 1024 * 1024;
    out = static_cast<std::size_t>(std::stod(m[1]) * factor);
    return true;
}

namespace {

const std::regex kIdPattern("^[A-Za-z0-9_-]{1,64}$");

std::size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = up;
        }
    }
    return row[b.size()];
}

std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
}

// Reads one document, collecting every error with where it is.
class Reader {
public:
    Reader(std::string file, fs::path base_dir) : file_(std::move(file)), base_dir_(std::move(base_dir)) {}

    std::vector<ConfigError> errors;

    void error(const YAML::Node& at, const std::string& key, std::string message) {
        const auto mark = at.Mark();
        errors.push_back({file_, mark.line >= 0 ? mark.line + 1 : 0, mark.column >= 0 ? mark.column + 1 : 0,
                          key, std::move(message)});
    }

    // A map with only the allowed keys; reports every unknown key at its own line.
    bool map(const YAML::Node& node, const std::string& path, std::initializer_list<const char*> allowed) {
        if (!node.IsMap()) {
            error(node, path, "expected a map of keys");
            return false;
        }
        for (const auto& kv : node) {
            const auto key = kv.first.as<std::string>();
            if (std::any_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; }))
                continue;
            std::string hint;
            std::size_t best = 3;
            for (const char* a : allowed) {
                const auto d = edit_distance(key, a);
                if (d < best) {
                    best = d;
                    hint = fmt::format(" (did you mean '{}'?)", a);
                }
            }
            error(kv.first, join(path, key), fmt::format("unknown key '{}'{}", key, hint));
        }
        return true;
    }

    bool scalar(const YAML::Node& node, const std::string& path, const char* what) {
        if (node.IsScalar()) return true;
        error(node, path, fmt::format("expected {}", what));
        return false;
    }

    // Strings may refer to the environment as ${NAME}, so secrets stay out of the file.
    bool string(const YAML::Node& node, const std::string& path, std::string& out) {
        if (!scalar(node, path, "a string")) return false;
        std::string missing;
        if (!expand_env(node.as<std::string>(), out, missing)) {
            error(node, path, fmt::format("environment variable '{}' is not set", missing));
            return false;
        }
        return true;
    }

    bool boolean(const YAML::Node& node, const std::string& path, bool& out) {
        if (!scalar(node, path, "true or false")) return false;
        if (!YAML::convert<bool>::decode(node, out)) {
            error(node, path, fmt::format("expected true or false, not '{}'", node.as<std::string>()));
            return false;
        }
        return true;
    }

    bool integer(const YAML::Node& node, const std::string& path, int& out, int min, int max) {
        if (!scalar(node, path, "an integer")) return false;
        long long v = 0;
        if (!YAML::convert<long long>::decode(node, v)) {
            error(node, path, fmt::format("expected an integer, not '{}'", node.as<std::string>()));
            return false;
        }
        if (v < min || v > max) {
            error(node, path, fmt::format("{} is out of range ({}..{})", v, min, max));
            return false;
        }
        out = static_cast<int>(v);
        return true;
    }

    bool number(const YAML::Node& node, const std::string& path, double& out, double min, double max,
                bool min_exclusive = false) {
        if (!scalar(node, path, "a number")) return false;
        double v = 0;
        if (!YAML::convert<double>::decode(node, v) || !std::isfinite(v)) {
            error(node, path, fmt::format("expected a number, not '{}'", node.as<std::string>()));
            return false;
        }
        if (v < min || v > max || (min_exclusive && v == min)) {
            error(node, path,
                  fmt::format("{} is out of range ({}{}..{})", v, min_exclusive ? ">" : "", min, max));
            return false;
        }
        out = v;
        return true;
    }

    bool duration(const YAML::Node& node, const std::string& path, Duration& out, bool allow_zero = false) {
        if (!scalar(node, path, "a duration")) return false;
        Duration d{};
        if (!parse_duration(node.as<std::string>(), d)) {
            error(node, path,
                  fmt::format("'{}' is not a duration (like 500ms, 10s, 5m, 1h30m, 7d)",
                              node.as<std::string>()));
            return false;
        }
        if (!allow_zero && d.count() <= 0) {
            error(node, path, "must be longer than zero");
            return false;
        }
        out = d;
        return true;
    }

    bool size(const YAML::Node& node, const std::string& path, std::size_t& out) {
        if (!scalar(node, path, "a size")) return false;
        std::size_t s = 0;
        if (!parse_size(node.as<std::string>(), s) || s == 0) {
            error(node, path, fmt::format("'{}' is not a size (like 512MiB, 2GB)", node.as<std::string>()));
            return false;
        }
        out = s;
        return true;
    }

    bool strings(const YAML::Node& node, const std::string& path, std::vector<std::string>& out) {
        if (!node.IsSequence()) {
            error(node, path, "expected a list");
            return false;
        }
        std::vector<std::string> values;
        bool ok = true;
        for (std::size_t i = 0; i < node.size(); ++i) {
            std::string v;
            if (string(node[i], fmt::format("{}[{}]", path, i), v)) {
                values.push_back(v);
            } else {
                ok = false;
            }
        }
        if (ok) out = std::move(values);
        return ok;
    }

    bool id(const YAML::Node& node, const std::string& path, std::string& out) {
        if (!string(node, path, out)) return false;
        if (!std::regex_match(out, kIdPattern)) {
            error(node, path,
                  fmt::format("'{}' is not a valid id: use 1-64 letters, digits, '_' or '-'", out));
            return false;
        }
        return true;
    }

    fs::path resolve(const std::string& p) const {
        const fs::path path(p);
        return path.is_absolute() ? path : (base_dir_ / path).lexically_normal();
    }

    const std::string& file() const { return file_; }

private:
    std::string file_;
    fs::path base_dir_;
};

bool starts_with(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }

// Checks host[:port] after a scheme. Returns an error message or "".
std::string check_authority(const std::string& rest) {
    auto end = rest.find_first_of("/?#");
    std::string authority = rest.substr(0, end);
    if (const auto at = authority.rfind('@'); at != std::string::npos) authority = authority.substr(at + 1);
    std::string host = authority, port;
    if (!authority.empty() && authority.front() == '[') {  // [IPv6]:port
        const auto close = authority.find(']');
        if (close == std::string::npos) return "unterminated IPv6 address";
        host = authority.substr(0, close + 1);
        if (close + 1 < authority.size() && authority[close + 1] == ':') port = authority.substr(close + 2);
    } else if (const auto colon = authority.rfind(':'); colon != std::string::npos) {
        host = authority.substr(0, colon);
        port = authority.substr(colon + 1);
        if (port.empty()) return "empty port";
    }
    if (host.empty()) return "no host";
    if (!port.empty()) {
        if (!std::all_of(port.begin(), port.end(), ::isdigit) || port.size() > 5 || std::stoi(port) < 1 ||
            std::stoi(port) > 65535) {
            return fmt::format("port '{}' is not 1..65535", port);
        }
    }
    return "";
}

// Returns an error message or "" and the URL with relative file paths made absolute.
std::string check_camera_url(const Reader& r, const std::string& url, std::string& resolved) {
    if (url.empty()) return "is empty";
    if (std::any_of(url.begin(), url.end(),
                    [](unsigned char c) { return c < 0x20 || c == ' ' || c == 0x7f; })) {
        return "contains spaces or control characters (percent-encode them)";
    }
    for (std::string_view scheme : {"rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://"}) {
        if (starts_with(url, scheme)) {
            const auto problem = check_authority(url.substr(scheme.size()));
            resolved = url;
            return problem.empty() ? "" : fmt::format("'{}': {}", url, problem);
        }
    }
    if (starts_with(url, "v4l2://")) {
        resolved = url;
        return starts_with(url.substr(7), "/dev/") ? ""
                                                   : fmt::format("'{}': expected v4l2:///dev/videoN", url);
    }
    if (starts_with(url, "/dev/")) {
        resolved = url;
        return "";
    }
    if (starts_with(url, "file://")) {
        resolved = "file://" + r.resolve(url.substr(7)).string();
        return url.size() > 7 ? "" : "file:// needs a path";
    }
    if (url.find("://") != std::string::npos) {
        return fmt::format(
            "'{}' is not a supported camera URL: use rtsp://, rtsps://, rtmp://, rtmps://, http://, "
            "https://, "
            "a file path (or file://), or a V4L2 device (/dev/videoN or v4l2:///dev/videoN)",
            url);
    }
    resolved = r.resolve(url).string();  // a plain file path
    return "";
}

void read_site(Reader& r, const YAML::Node& n, Site& site) {
    if (!r.map(n, "site", {"id", "name", "timezone", "holidays"})) return;
    if (n["id"]) {
        r.id(n["id"], "site.id", site.id);
    } else {
        r.error(n, "site.id", "missing required key");
    }
    if (n["name"]) {
        r.string(n["name"], "site.name", site.name);
    } else {
        r.error(n, "site.name", "missing required key");
    }
    if (n["timezone"]) r.string(n["timezone"], "site.timezone", site.timezone);
    if (n["holidays"]) r.strings(n["holidays"], "site.holidays", site.holidays);
}

void check_broker_url(Reader& r, const YAML::Node& at, const std::string& key, const std::string& url) {
    for (std::string_view scheme : {"tcp://", "mqtt://", "ssl://", "mqtts://", "ws://", "wss://"}) {
        if (starts_with(url, scheme)) {
            const auto problem = check_authority(url.substr(scheme.size()));
            if (!problem.empty()) r.error(at, key, fmt::format("'{}': {}", url, problem));
            return;
        }
    }
    r.error(
        at, key,
        fmt::format("'{}' is not a broker URL: use tcp://, mqtt://, ssl://, mqtts://, ws:// or wss://", url));
}

void read_mqtt(Reader& r, const YAML::Node& n, Mqtt& m) {
    if (!r.map(n, "mqtt",
               {"url", "client_id", "topic_prefix", "username", "password", "tls", "keepalive", "reconnect",
                "state_interval"})) {
        return;
    }
    if (n["url"] && r.string(n["url"], "mqtt.url", m.url)) check_broker_url(r, n["url"], "mqtt.url", m.url);
    if (n["client_id"]) r.string(n["client_id"], "mqtt.client_id", m.client_id);
    if (n["topic_prefix"] && r.string(n["topic_prefix"], "mqtt.topic_prefix", m.topic_prefix)) {
        if (m.topic_prefix.find_first_of("#+") != std::string::npos || starts_with(m.topic_prefix, "/") ||
            (!m.topic_prefix.empty() && m.topic_prefix.back() == '/')) {
            r.error(n["topic_prefix"], "mqtt.topic_prefix",
                    "must not contain '#' or '+' nor start or end with '/'");
        }
    }
    if (n["username"]) r.string(n["username"], "mqtt.username", m.username);
    if (n["password"]) r.string(n["password"], "mqtt.password", m.password);
    if (n["keepalive"]) r.duration(n["keepalive"], "mqtt.keepalive", m.keepalive);
    if (n["state_interval"]) r.duration(n["state_interval"], "mqtt.state_interval", m.state_interval);
    if (const auto rc = n["reconnect"]; rc && r.map(rc, "mqtt.reconnect", {"min", "max"})) {
        if (rc["min"]) r.duration(rc["min"], "mqtt.reconnect.min", m.reconnect_min);
        if (rc["max"]) r.duration(rc["max"], "mqtt.reconnect.max", m.reconnect_max);
        if (m.reconnect_min > m.reconnect_max) r.error(rc, "mqtt.reconnect", "min is longer than max");
    }
    if (const auto t = n["tls"];
        t && r.map(t, "mqtt.tls", {"ca_file", "cert_file", "key_file", "verify_server"})) {
        Tls tls;
        for (auto [key, field] : {std::pair{"ca_file", &tls.ca_file}, std::pair{"cert_file", &tls.cert_file},
                                  std::pair{"key_file", &tls.key_file}}) {
            if (t[key] && r.string(t[key], join("mqtt.tls", key), *field) && !field->empty()) {
                *field = r.resolve(*field).string();
            }
        }
        if (t["verify_server"]) r.boolean(t["verify_server"], "mqtt.tls.verify_server", tls.verify_server);
        if (tls.cert_file.empty() != tls.key_file.empty()) {
            r.error(t, "mqtt.tls", "cert_file and key_file go together");
        }
        m.tls = tls;
    }
}

void read_input(Reader& r, const YAML::Node& n, const std::string& path, Input& in) {
    if (!r.map(n, path, {"transport", "timeout", "reconnect", "loop", "realtime"})) return;
    if (n["transport"]) {
        std::string t;
        if (r.string(n["transport"], path + ".transport", t)) {
            if (t == "tcp") {
                in.transport = Transport::tcp;
            } else if (t == "udp") {
                in.transport = Transport::udp;
            } else {
                r.error(n["transport"], path + ".transport", fmt::format("'{}' is not tcp or udp", t));
            }
        }
    }
    if (n["timeout"]) r.duration(n["timeout"], path + ".timeout", in.timeout);
    if (const auto rc = n["reconnect"]; rc && r.map(rc, path + ".reconnect", {"min", "max"})) {
        if (rc["min"]) r.duration(rc["min"], path + ".reconnect.min", in.reconnect_min);
        if (rc["max"]) r.duration(rc["max"], path + ".reconnect.max", in.reconnect_max);
        if (in.reconnect_min > in.reconnect_max) r.error(rc, path + ".reconnect", "min is longer than max");
    }
    if (n["loop"]) r.boolean(n["loop"], path + ".loop", in.loop);
    if (n["realtime"]) r.boolean(n["realtime"], path + ".realtime", in.realtime);
}

void read_analysis(Reader& r, const YAML::Node& n, const std::string& path, Analysis& a) {
    if (!r.map(n, path, {"fps", "width", "height", "keyframes_only"})) return;
    if (n["fps"]) r.number(n["fps"], path + ".fps", a.fps, 0.0, 30.0, true);
    for (auto [key, field, max] :
         {std::tuple{"width", &a.width, 3840}, std::tuple{"height", &a.height, 2160}}) {
        if (n[key] && r.integer(n[key], join(path, key), *field, 32, max) && *field % 2 != 0) {
            r.error(n[key], join(path, key), fmt::format("{} must be even", *field));
        }
    }
    if (n["keyframes_only"]) r.boolean(n["keyframes_only"], path + ".keyframes_only", a.keyframes_only);
}

void read_health(Reader& r, const YAML::Node& n, const std::string& path, Health& h) {
    if (!r.map(n, path,
               {"offline_after", "black_luma", "blank_stddev", "covered_fraction", "frozen_after",
                "frozen_diff", "confirm", "clear"})) {
        return;
    }
    if (n["offline_after"]) r.duration(n["offline_after"], path + ".offline_after", h.offline_after);
    if (n["black_luma"]) r.number(n["black_luma"], path + ".black_luma", h.black_luma, 0, 255);
    if (n["blank_stddev"]) r.number(n["blank_stddev"], path + ".blank_stddev", h.blank_stddev, 0, 128);
    if (n["covered_fraction"])
        r.number(n["covered_fraction"], path + ".covered_fraction", h.covered_fraction, 0, 1, true);
    if (n["frozen_after"]) r.duration(n["frozen_after"], path + ".frozen_after", h.frozen_after);
    if (n["frozen_diff"]) r.number(n["frozen_diff"], path + ".frozen_diff", h.frozen_diff, 0, 255);
    if (n["confirm"]) r.duration(n["confirm"], path + ".confirm", h.confirm, true);
    if (n["clear"]) r.duration(n["clear"], path + ".clear", h.clear, true);
}

// "model:<name>" checks name a user model declared under `models`; they are checked once the whole
// document is read (check_references), so here any model:<id> passes.
bool known_check(const std::string& name) {
    if (name.rfind("model:", 0) == 0) return std::regex_match(name.substr(6), kIdPattern);
    const auto& k = known_checks();
    return std::find(k.begin(), k.end(), name) != k.end();
}

void read_checks(Reader& r, const YAML::Node& n, const std::string& path, std::vector<std::string>& checks) {
    std::vector<std::string> names;
    if (!r.strings(n, path, names)) return;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (!known_check(names[i])) {
            std::string list;
            for (const auto& k : known_checks()) list += (list.empty() ? "" : ", ") + k;
            r.error(n[i], fmt::format("{}[{}]", path, i),
                    fmt::format("unknown check '{}' (known: {})", names[i], list));
        }
    }
    checks = names;
}

void read_rule(Reader& r, const YAML::Node& n, const std::string& path, Rule& rule) {
    if (!r.map(n, path,
               {"severity", "confirm", "clear", "cooldown", "threshold", "median_window", "schedule"})) {
        return;
    }
    if (n["severity"]) r.integer(n["severity"], path + ".severity", rule.severity, 1, 3);
    if (n["confirm"]) r.duration(n["confirm"], path + ".confirm", rule.confirm, true);
    if (n["clear"]) r.duration(n["clear"], path + ".clear", rule.clear, true);
    if (n["cooldown"]) r.duration(n["cooldown"], path + ".cooldown", rule.cooldown, true);
    if (n["threshold"]) r.number(n["threshold"], path + ".threshold", rule.threshold, 0, 1);
    if (n["median_window"])
        r.integer(n["median_window"], path + ".median_window", rule.median_window, 1, 100);
    if (n["schedule"]) r.string(n["schedule"], path + ".schedule", rule.schedule);
}

// Per check name; a check's built-in rule is overridden by defaults.rules, then by the camera's.
void read_rules(Reader& r, const YAML::Node& n, const std::string& path, std::map<std::string, Rule>& rules) {
    if (!n.IsMap()) {
        r.error(n, path, "expected a map of check names to rules");
        return;
    }
    for (const auto& kv : n) {
        const auto check = kv.first.as<std::string>();
        const auto key = join(path, check);
        if (!known_check(check)) {
            r.error(kv.first, key, fmt::format("unknown check '{}'", check));
            continue;
        }
        read_rule(r, kv.second, key, rules[check]);
    }
}

std::vector<Point> read_polygon(Reader& r, const YAML::Node& n, const std::string& path) {
    std::vector<Point> points;
    if (!n.IsSequence() || n.size() < 3) {
        r.error(n, path, "expected a polygon: a list of at least 3 [x, y] points, normalised 0..1");
        return points;
    }
    for (std::size_t i = 0; i < n.size(); ++i) {
        const auto p = n[i];
        const auto key = fmt::format("{}[{}]", path, i);
        double x = 0, y = 0;
        if (!p.IsSequence() || p.size() != 2) {
            r.error(p, key, "expected a point [x, y]");
            continue;
        }
        if (r.number(p[0], key, x, 0, 1) && r.number(p[1], key, y, 0, 1)) {
            points.push_back({static_cast<float>(x), static_cast<float>(y)});
        }
    }
    return points;
}

void read_zones(Reader& r, const YAML::Node& n, const std::string& path, std::vector<Zone>& zones) {
    if (!n.IsMap()) {
        r.error(n, path, "expected a map of zone names to zones");
        return;
    }
    for (const auto& kv : n) {
        Zone z;
        z.name = kv.first.as<std::string>();
        const auto key = join(path, z.name);
        if (!std::regex_match(z.name, kIdPattern)) {
            r.error(kv.first, key,
                    fmt::format("'{}' is not a valid zone name: use letters, digits, '_' or '-'", z.name));
        }
        if (!r.map(kv.second, key, {"polygon", "checks"})) continue;
        if (kv.second["polygon"]) {
            z.polygon = read_polygon(r, kv.second["polygon"], key + ".polygon");
        } else {
            r.error(kv.second, key + ".polygon", "missing required key");
        }
        if (kv.second["checks"]) read_checks(r, kv.second["checks"], key + ".checks", z.checks);
        zones.push_back(std::move(z));
    }
}

struct CameraDefaults {
    Input input;
    Analysis analysis;
    Health health;
    Scene scene;
    std::vector<std::string> checks{"camera_health"};
    std::map<std::string, Rule> rules;
};

// Regulators' tiers: 1 immediate (rodents), 2 fix within a deadline (camera faults, bin lid),
// 3 routine (mask, hat, cleanliness).
Rule builtin_rule(const std::string& check) {
    Rule rule;
    if (check == "camera_health" || check == "bin_lid" || check == "unattended") rule.severity = 2;
    if (check == "after_hours_motion") rule.severity = 1;
    if (check == "cleanliness" || check == "bin_lid") rule.confirm = std::chrono::seconds(60);
    if (check == "after_hours_motion") {
        rule.confirm = std::chrono::seconds(1);
        rule.median_window = 1;
    }
    if (check == "unattended") {
        rule.confirm = Duration(0);  // scene.unattended_after already is the delay
        rule.median_window = 1;
    }
    return rule;
}

void read_scene(Reader& r, const YAML::Node& n, const std::string& path, Scene& s) {
    if (!r.map(n, path, {"reference", "min_area", "unattended_after", "detect_refresh"})) return;
    if (n["reference"] && r.string(n["reference"], path + ".reference", s.reference) &&
        !s.reference.empty()) {
        s.reference = r.resolve(s.reference).string();
    }
    if (n["min_area"]) r.number(n["min_area"], path + ".min_area", s.min_area, 0, 1, true);
    if (n["unattended_after"])
        r.duration(n["unattended_after"], path + ".unattended_after", s.unattended_after);
    if (n["detect_refresh"]) r.duration(n["detect_refresh"], path + ".detect_refresh", s.detect_refresh);
}

void read_defaults(Reader& r, const YAML::Node& n, CameraDefaults& d) {
    if (!r.map(n, "defaults", {"input", "analysis", "health", "scene", "checks", "rules"})) return;
    if (n["scene"]) read_scene(r, n["scene"], "defaults.scene", d.scene);
    if (n["input"]) read_input(r, n["input"], "defaults.input", d.input);
    if (n["analysis"]) read_analysis(r, n["analysis"], "defaults.analysis", d.analysis);
    if (n["health"]) read_health(r, n["health"], "defaults.health", d.health);
    if (n["checks"]) read_checks(r, n["checks"], "defaults.checks", d.checks);
    if (n["rules"]) read_rules(r, n["rules"], "defaults.rules", d.rules);
}

void read_camera(Reader& r, const YAML::Node& n, const std::string& path, const CameraDefaults& d,
                 Camera& cam) {
    cam.input = d.input;
    cam.analysis = d.analysis;
    cam.health = d.health;
    cam.scene = d.scene;
    cam.checks = d.checks;
    cam.source_line = n.Mark().line + 1;
    if (!r.map(n, path,
               {"id", "name", "url", "public", "enabled", "checks", "input", "analysis", "health", "scene",
                "zones", "masks", "rules"})) {
        return;
    }
    if (n["id"]) {
        r.id(n["id"], path + ".id", cam.id);
    } else {
        r.error(n, path + ".id", "missing required key");
    }
    if (n["name"]) r.string(n["name"], path + ".name", cam.name);
    if (cam.name.empty()) cam.name = cam.id;
    if (n["url"]) {
        std::string url;
        if (r.string(n["url"], path + ".url", url)) {
            const auto problem = check_camera_url(r, url, cam.url);
            if (!problem.empty()) r.error(n["url"], path + ".url", problem);
        }
    } else {
        r.error(n, path + ".url", "missing required key");
    }
    if (n["public"]) r.boolean(n["public"], path + ".public", cam.is_public);
    if (n["enabled"]) r.boolean(n["enabled"], path + ".enabled", cam.enabled);
    if (n["checks"]) read_checks(r, n["checks"], path + ".checks", cam.checks);
    if (n["input"]) read_input(r, n["input"], path + ".input", cam.input);
    if (n["analysis"]) read_analysis(r, n["analysis"], path + ".analysis", cam.analysis);
    if (n["health"]) read_health(r, n["health"], path + ".health", cam.health);
    if (n["scene"]) read_scene(r, n["scene"], path + ".scene", cam.scene);
    if (n["zones"]) read_zones(r, n["zones"], path + ".zones", cam.zones);
    if (const auto m = n["masks"]) {
        if (!m.IsSequence()) {
            r.error(m, path + ".masks", "expected a list of polygons");
        } else {
            for (std::size_t i = 0; i < m.size(); ++i) {
                cam.masks.push_back(read_polygon(r, m[i], fmt::format("{}.masks[{}]", path, i)));
            }
        }
    }
    // camera_health's rule always exists: offline detection runs on every camera.
    std::vector<std::string> ruled = cam.checks;
    if (std::find(ruled.begin(), ruled.end(), "camera_health") == ruled.end())
        ruled.push_back("camera_health");
    for (const auto& check : ruled) {
        Rule rule = builtin_rule(check);
        if (auto it = d.rules.find(check); it != d.rules.end()) rule = it->second;
        cam.rules[check] = rule;
    }
    if (const auto rules = n["rules"]) {
        if (rules.IsMap()) {
            for (const auto& kv : rules) {
                const auto check = kv.first.as<std::string>();
                const auto key = join(path + ".rules", check);
                if (!known_check(check)) {
                    r.error(kv.first, key, fmt::format("unknown check '{}'", check));
                } else if (!cam.rules.count(check)) {
                    r.error(kv.first, key, fmt::format("check '{}' is not in this camera's checks", check));
                } else {
                    read_rule(r, kv.second, key, cam.rules[check]);
                }
            }
        } else {
            r.error(rules, path + ".rules", "expected a map of check names to rules");
        }
    }
}

void read_schedules(Reader& r, const YAML::Node& n, std::vector<Schedule>& schedules) {
    if (!n.IsMap()) {
        r.error(n, "schedules", "expected a map of schedule names to schedules");
        return;
    }
    // Inverted schedules refer to others by name, so resolve them after all are read.
    std::vector<std::pair<std::string, YAML::Node>> inversions;
    for (const auto& kv : n) {
        Schedule s;
        s.name = kv.first.as<std::string>();
        const auto key = join("schedules", s.name);
        if (!r.map(kv.second, key, {"days", "times", "on_holidays", "not"})) continue;
        if (kv.second["not"]) {
            if (kv.second["days"] || kv.second["times"]) {
                r.error(kv.second, key, "'not' takes no 'days' or 'times' of its own");
            }
            inversions.emplace_back(s.name, kv.second["not"]);
            continue;
        }
        if (kv.second["days"]) {
            std::string days;
            if (r.string(kv.second["days"], key + ".days", days)) {
                try {
                    s.days = rules::parse_days(days);
                } catch (const std::invalid_argument& e) {
                    r.error(kv.second["days"], key + ".days", e.what());
                }
            }
        }
        if (kv.second["times"]) {
            if (r.strings(kv.second["times"], key + ".times", s.times)) {
                for (std::size_t i = 0; i < s.times.size(); ++i) {
                    try {
                        rules::parse_window(s.times[i]);
                    } catch (const std::invalid_argument& e) {
                        r.error(kv.second["times"][i], fmt::format("{}.times[{}]", key, i), e.what());
                    }
                }
            }
        } else {
            r.error(kv.second, key + ".times", "missing required key");
        }
        if (kv.second["on_holidays"])
            r.boolean(kv.second["on_holidays"], key + ".on_holidays", s.on_holidays);
        schedules.push_back(std::move(s));
    }
    for (const auto& [name, target] : inversions) {
        std::string of;
        if (!r.string(target, join("schedules", name) + ".not", of)) continue;
        auto it =
            std::find_if(schedules.begin(), schedules.end(), [&](const Schedule& s) { return s.name == of; });
        if (it == schedules.end()) {
            r.error(target, join("schedules", name) + ".not", fmt::format("no schedule named '{}'", of));
            continue;
        }
        Schedule inverted = *it;
        inverted.name = name;
        inverted.inverted = true;
        schedules.push_back(std::move(inverted));
    }
}

void read_outbox(Reader& r, const YAML::Node& n, Outbox& o) {
    if (!r.map(n, "outbox", {"path", "max_messages", "max_size"})) return;
    if (n["path"] && r.string(n["path"], "outbox.path", o.path) && o.path != ":memory:") {
        o.path = r.resolve(o.path).string();
    }
    if (n["max_messages"]) {
        int v = 0;
        if (r.integer(n["max_messages"], "outbox.max_messages", v, 10, 100000000))
            o.max_messages = static_cast<std::size_t>(v);
    }
    if (n["max_size"]) r.size(n["max_size"], "outbox.max_size", o.max_bytes);
}

void read_evidence(Reader& r, const YAML::Node& n, Evidence& e) {
    if (!r.map(n, "evidence",
               {"path", "max_size", "max_age", "clip_pre", "clip_post", "jpeg_quality", "mqtt_snapshots"})) {
        return;
    }
    if (n["path"] && r.string(n["path"], "evidence.path", e.path)) e.path = r.resolve(e.path).string();
    if (n["max_size"]) r.size(n["max_size"], "evidence.max_size", e.max_bytes);
    if (n["max_age"]) r.duration(n["max_age"], "evidence.max_age", e.max_age);
    if (n["clip_pre"]) r.duration(n["clip_pre"], "evidence.clip_pre", e.clip_pre, true);
    if (n["clip_post"]) r.duration(n["clip_post"], "evidence.clip_post", e.clip_post, true);
    if (n["jpeg_quality"]) r.integer(n["jpeg_quality"], "evidence.jpeg_quality", e.jpeg_quality, 10, 100);
    if (n["mqtt_snapshots"]) r.boolean(n["mqtt_snapshots"], "evidence.mqtt_snapshots", e.mqtt_snapshots);
}

// Cross-field rules that need the whole document, each with a message naming the camera.
void check_references(Reader& r, const YAML::Node& root, Gateway& g) {
    if (root["site"] && root["site"].IsMap()) {
        try {
            rules::Calendar(g.site.timezone, {});
        } catch (const std::invalid_argument& e) {
            r.error(root["site"]["timezone"] ? root["site"]["timezone"] : root["site"], "site.timezone",
                    e.what());
        }
        if (const auto h = root["site"]["holidays"]; h && h.IsSequence()) {
            for (std::size_t i = 0; i < g.site.holidays.size() && i < h.size(); ++i) {
                try {
                    rules::Calendar("UTC", {g.site.holidays[i]});
                } catch (const std::invalid_argument& e) {
                    r.error(h[i], fmt::format("site.holidays[{}]", i), e.what());
                }
            }
        }
    }
    auto schedule_known = [&](const std::string& name) {
        return std::any_of(g.schedules.begin(), g.schedules.end(),
                           [&](const Schedule& s) { return s.name == name; });
    };
    const auto sensors = root["sensors"];
    for (std::size_t i = 0; i < g.sensors.size(); ++i) {
        const YAML::Node at = sensors && sensors.IsSequence() && i < sensors.size() ? sensors[i] : root;
        for (std::size_t t = 0; t < g.sensors[i].thresholds.size(); ++t) {
            const auto& name = g.sensors[i].thresholds[t].schedule;
            if (!name.empty() && !schedule_known(name)) {
                r.error(at, fmt::format("sensors[{}].thresholds[{}].schedule", i, t),
                        fmt::format("sensor '{}': no schedule named '{}'", g.sensors[i].id, name));
            }
        }
        if (g.sensors[i].disinfection && !g.sensors[i].disinfection->schedule.empty() &&
            !schedule_known(g.sensors[i].disinfection->schedule)) {
            r.error(at, fmt::format("sensors[{}].disinfection.schedule", i),
                    fmt::format("sensor '{}': no schedule named '{}'", g.sensors[i].id,
                                g.sensors[i].disinfection->schedule));
        }
    }
    const auto cams = root["cameras"];
    for (std::size_t i = 0; i < g.cameras.size(); ++i) {
        for (std::size_t c = 0; c < g.cameras[i].checks.size(); ++c) {
            const auto& check = g.cameras[i].checks[c];
            if (check.rfind("model:", 0) == 0 && !g.models.count(check.substr(6))) {
                const YAML::Node at = cams && cams.IsSequence() && i < cams.size() ? cams[i] : root;
                r.error(at, fmt::format("cameras[{}].checks", i),
                        fmt::format("camera '{}': no model named '{}' under models", g.cameras[i].id,
                                    check.substr(6)));
            }
        }
        for (const auto& [check, rule] : g.cameras[i].rules) {
            if (rule.schedule.empty()) continue;
            const bool known = std::any_of(g.schedules.begin(), g.schedules.end(),
                                           [&](const Schedule& s) { return s.name == rule.schedule; });
            if (!known) {
                const YAML::Node at = cams && cams.IsSequence() && i < cams.size() ? cams[i] : root;
                r.error(at, fmt::format("cameras[{}].rules.{}.schedule", i, check),
                        fmt::format("camera '{}': no schedule named '{}'", g.cameras[i].id, rule.schedule));
            }
        }
    }
}

void read_source(Reader& r, const YAML::Node& n, const std::string& path, SensorSource& src) {
    if (!r.map(n, path, {"mqtt", "modbus"})) return;
    if (n["mqtt"] && n["modbus"]) r.error(n, path, "one of mqtt or modbus, not both");
    if (const auto m = n["mqtt"]) {
        src.kind = SensorSource::Kind::mqtt;
        if (!r.map(m, path + ".mqtt", {"topic", "value", "time"})) return;
        if (m["topic"]) {
            r.string(m["topic"], path + ".mqtt.topic", src.topic);
        } else {
            r.error(m, path + ".mqtt.topic", "missing required key");
        }
        if (m["value"]) r.string(m["value"], path + ".mqtt.value", src.value_path);
        if (m["time"]) r.string(m["time"], path + ".mqtt.time", src.time_path);
    } else if (const auto b = n["modbus"]) {
        src.kind = SensorSource::Kind::modbus;
        if (!r.map(b, path + ".modbus",
                   {"device", "baud", "parity", "data_bits", "stop_bits", "unit_id", "address", "register",
                    "type", "word_order", "scale", "offset"})) {
            return;
        }
        const auto p = path + ".modbus";
        if (!b["device"]) {
            r.error(b, p + ".device", "missing required key");
        } else if (r.string(b["device"], p + ".device", src.device)) {
            if (src.device.rfind("tcp://", 0) == 0) {
                const auto problem = check_authority(src.device.substr(6));
                if (!problem.empty())
                    r.error(b["device"], p + ".device", fmt::format("'{}': {}", src.device, problem));
            } else if (src.device.rfind("rtu:", 0) != 0 || src.device.size() <= 4) {
                r.error(b["device"], p + ".device",
                        fmt::format("'{}' is not tcp://host:port or rtu:/dev/ttyXXX", src.device));
            }
        }
        if (b["baud"]) r.integer(b["baud"], p + ".baud", src.baud, 300, 1000000);
        if (b["parity"]) {
            std::string parity;
            if (r.string(b["parity"], p + ".parity", parity)) {
                if (parity != "N" && parity != "E" && parity != "O") {
                    r.error(b["parity"], p + ".parity", "expected N, E or O");
                } else {
                    src.parity = parity[0];
                }
            }
        }
        if (b["data_bits"]) r.integer(b["data_bits"], p + ".data_bits", src.data_bits, 5, 8);
        if (b["stop_bits"]) r.integer(b["stop_bits"], p + ".stop_bits", src.stop_bits, 1, 2);
        if (b["unit_id"]) r.integer(b["unit_id"], p + ".unit_id", src.unit_id, 0, 247);
        if (b["address"]) {
            r.integer(b["address"], p + ".address", src.address, 0, 65535);
        } else {
            r.error(b, p + ".address", "missing required key");
        }
        if (b["register"]) {
            std::string reg;
            if (r.string(b["register"], p + ".register", reg)) {
                if (reg != "holding" && reg != "input")
                    r.error(b["register"], p + ".register", "expected holding or input");
                src.input_register = reg == "input";
            }
        }
        if (b["type"]) {
            std::string type;
            if (r.string(b["type"], p + ".type", type)) {
                static const std::map<std::string, SensorSource::Type> types{
                    {"int16", SensorSource::Type::int16},
                    {"uint16", SensorSource::Type::uint16},
                    {"int32", SensorSource::Type::int32},
                    {"uint32", SensorSource::Type::uint32},
                    {"float32", SensorSource::Type::float32}};
                if (auto it = types.find(type); it != types.end()) {
                    src.type = it->second;
                } else {
                    r.error(b["type"], p + ".type",
                            fmt::format("'{}' is not int16, uint16, int32, uint32 or float32", type));
                }
            }
        }
        if (b["word_order"]) {
            std::string order;
            if (r.string(b["word_order"], p + ".word_order", order)) {
                if (order != "big" && order != "little")
                    r.error(b["word_order"], p + ".word_order", "expected big or little");
                src.low_word_first = order == "little";
            }
        }
        if (b["scale"]) r.number(b["scale"], p + ".scale", src.scale, -1e9, 1e9);
        if (b["offset"]) r.number(b["offset"], p + ".offset", src.offset, -1e9, 1e9);
    } else {
        r.error(n, path, "expected mqtt or modbus");
    }
}

void read_sensor(Reader& r, const YAML::Node& n, const std::string& path, Sensor& s) {
    s.source_line = n.Mark().line + 1;
    if (!r.map(n, path,
               {"id", "name", "kind", "location", "unit", "interval", "stale_after", "valid_range", "source",
                "thresholds", "disinfection"})) {
        return;
    }
    if (n["id"]) {
        r.id(n["id"], path + ".id", s.id);
    } else {
        r.error(n, path + ".id", "missing required key");
    }
    if (n["name"]) r.string(n["name"], path + ".name", s.name);
    if (s.name.empty()) s.name = s.id;
    if (n["kind"]) r.string(n["kind"], path + ".kind", s.kind);
    if (n["location"]) r.string(n["location"], path + ".location", s.location);
    if (n["unit"]) r.string(n["unit"], path + ".unit", s.unit);
    if (n["interval"]) r.duration(n["interval"], path + ".interval", s.interval);
    if (n["stale_after"]) r.integer(n["stale_after"], path + ".stale_after", s.stale_after, 1, 1000);
    if (const auto v = n["valid_range"]) {
        double lo = 0, hi = 0;
        if (!v.IsSequence() || v.size() != 2) {
            r.error(v, path + ".valid_range", "expected [min, max]");
        } else if (r.number(v[0], path + ".valid_range", lo, -1e9, 1e9) &&
                   r.number(v[1], path + ".valid_range", hi, -1e9, 1e9)) {
            if (lo >= hi) r.error(v, path + ".valid_range", "min must be below max");
            s.min_valid = lo;
            s.max_valid = hi;
        }
    }
    if (n["source"]) {
        read_source(r, n["source"], path + ".source", s.source);
    } else {
        r.error(n, path + ".source", "missing required key");
    }
    if (const auto t = n["thresholds"]) {
        if (!t.IsSequence()) {
            r.error(t, path + ".thresholds", "expected a list");
        } else {
            for (std::size_t i = 0; i < t.size(); ++i) {
                const auto key = fmt::format("{}.thresholds[{}]", path, i);
                Threshold th;
                if (!r.map(t[i], key,
                           {"label", "above", "below", "hysteresis", "for", "clear_for", "severity",
                            "schedule"})) {
                    continue;
                }
                if (t[i]["above"] && t[i]["below"]) r.error(t[i], key, "one of above or below, not both");
                if (t[i]["above"]) {
                    r.number(t[i]["above"], key + ".above", th.value, -1e9, 1e9);
                } else if (t[i]["below"]) {
                    th.above = false;
                    r.number(t[i]["below"], key + ".below", th.value, -1e9, 1e9);
                } else {
                    r.error(t[i], key, "missing above or below");
                }
                th.label = th.above ? "too_high" : "too_low";
                if (t[i]["label"]) r.string(t[i]["label"], key + ".label", th.label);
                if (t[i]["hysteresis"])
                    r.number(t[i]["hysteresis"], key + ".hysteresis", th.hysteresis, 0, 1e6);
                if (t[i]["for"]) r.duration(t[i]["for"], key + ".for", th.for_time, true);
                if (t[i]["clear_for"]) r.duration(t[i]["clear_for"], key + ".clear_for", th.clear_for, true);
                if (t[i]["severity"]) r.integer(t[i]["severity"], key + ".severity", th.severity, 1, 3);
                if (t[i]["schedule"]) r.string(t[i]["schedule"], key + ".schedule", th.schedule);
                s.thresholds.push_back(th);
            }
        }
    }
    if (const auto d = n["disinfection"];
        d && r.map(d, path + ".disinfection", {"setpoint", "min_time", "schedule", "severity"})) {
        Disinfection dis;
        const auto key = path + ".disinfection";
        if (d["setpoint"]) r.number(d["setpoint"], key + ".setpoint", dis.setpoint, -1e6, 1e6);
        if (d["min_time"]) r.duration(d["min_time"], key + ".min_time", dis.min_time);
        if (d["schedule"]) {
            r.string(d["schedule"], key + ".schedule", dis.schedule);
        } else {
            r.error(d, key + ".schedule",
                    "missing required key: the meal windows after which a cycle is due");
        }
        if (d["severity"]) r.integer(d["severity"], key + ".severity", dis.severity, 1, 3);
        s.disinfection = dis;
    }
}

Gateway read_document(Reader& r, const YAML::Node& root) {
    Gateway g;
    if (!root.IsMap()) {
        r.error(root, "", "the configuration must be a map with site, mqtt and cameras");
        throw ConfigInvalid(r.errors);
    }
    r.map(root, "",
          {"site", "mqtt", "log", "analysis_threads", "defaults", "cameras", "schedules", "outbox",
           "evidence", "detectors", "models", "sensors", "sensors_mqtt", "api", "public"});
    if (const auto p = root["public"]; p && r.map(p, "public", {"listen", "hls_dir", "segment"})) {
        if (p["listen"]) r.string(p["listen"], "public.listen", g.public_side.listen);
        if (p["hls_dir"] && r.string(p["hls_dir"], "public.hls_dir", g.public_side.hls_dir)) {
            g.public_side.hls_dir = r.resolve(g.public_side.hls_dir).string();
        }
        if (p["segment"]) r.duration(p["segment"], "public.segment", g.public_side.segment);
    }
    if (const auto a = root["api"];
        a && r.map(a, "api", {"listen", "token", "header_timeout", "idle_timeout"})) {
        if (a["listen"] && r.string(a["listen"], "api.listen", g.api.listen) && !g.api.listen.empty()) {
            const auto colon = g.api.listen.rfind(':');
            const auto port = colon == std::string::npos ? std::string() : g.api.listen.substr(colon + 1);
            if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit) ||
                std::stoi(port) > 65535) {
                r.error(a["listen"], "api.listen",
                        fmt::format("'{}' is not address:port (e.g. 127.0.0.1:8080)", g.api.listen));
            }
        }
        if (a["token"]) r.string(a["token"], "api.token", g.api.token);
        if (a["header_timeout"]) r.duration(a["header_timeout"], "api.header_timeout", g.api.header_timeout);
        if (a["idle_timeout"]) r.duration(a["idle_timeout"], "api.idle_timeout", g.api.idle_timeout);
    }
    if (root["sensors_mqtt"] && r.string(root["sensors_mqtt"], "sensors_mqtt", g.sensors_mqtt_url)) {
        check_broker_url(r, root["sensors_mqtt"], "sensors_mqtt", g.sensors_mqtt_url);
    }
    if (const auto sensors = root["sensors"]) {
        if (!sensors.IsSequence()) {
            r.error(sensors, "sensors", "expected a list of sensors");
        } else {
            std::map<std::string, int> first_line;
            for (std::size_t i = 0; i < sensors.size(); ++i) {
                Sensor sensor;
                const auto path = fmt::format("sensors[{}]", i);
                read_sensor(r, sensors[i], path, sensor);
                if (!sensor.id.empty()) {
                    if (auto it = first_line.find(sensor.id); it != first_line.end()) {
                        r.error(sensors[i]["id"], path + ".id",
                                fmt::format("duplicate sensor id '{}' (first used on line {})", sensor.id,
                                            it->second));
                    } else {
                        first_line[sensor.id] = sensors[i]["id"].Mark().line + 1;
                    }
                }
                g.sensors.push_back(std::move(sensor));
            }
        }
    }
    if (const auto d = root["detectors"]; d && r.map(d, "detectors", {"mask", "head_covering"})) {
        for (auto [key, field] :
             {std::pair{"mask", &g.mask_detector}, std::pair{"head_covering", &g.head_detector}}) {
            if (!d[key] || !r.string(d[key], join("detectors", key), *field)) continue;
            if (*field != "auto" && field->rfind("classic:", 0) != 0) *field = r.resolve(*field).string();
        }
    }
    if (const auto m = root["models"]) {
        if (!m.IsMap()) {
            r.error(m, "models", "expected a map of model names to manifest files");
        } else {
            for (const auto& kv : m) {
                const auto name = kv.first.as<std::string>();
                std::string manifest;
                if (!std::regex_match(name, kIdPattern))
                    r.error(kv.first, join("models", name), "not a valid model name");
                if (r.string(kv.second, join("models", name), manifest))
                    g.models[name] = r.resolve(manifest).string();
            }
        }
    }
    if (root["site"]) {
        read_site(r, root["site"], g.site);
    } else {
        r.error(root, "site", "missing required key");
    }
    if (root["mqtt"]) read_mqtt(r, root["mqtt"], g.mqtt);
    if (g.mqtt.client_id.empty()) g.mqtt.client_id = "kitchen-gateway-" + g.site.id;
    if (const auto log = root["log"]; log && r.map(log, "log", {"level", "json"})) {
        if (log["level"] && r.string(log["level"], "log.level", g.log.level)) {
            static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error"};
            if (!levels.count(g.log.level)) {
                r.error(log["level"], "log.level",
                        fmt::format("'{}' is not one of trace, debug, info, warn, error", g.log.level));
            }
        }
        if (log["json"]) r.boolean(log["json"], "log.json", g.log.json);
    }
    if (root["analysis_threads"])
        r.integer(root["analysis_threads"], "analysis_threads", g.analysis_threads, 0, 256);
    if (root["schedules"]) read_schedules(r, root["schedules"], g.schedules);
    if (root["outbox"]) read_outbox(r, root["outbox"], g.outbox);
    if (root["evidence"]) read_evidence(r, root["evidence"], g.evidence);

    CameraDefaults defaults;
    if (root["defaults"]) read_defaults(r, root["defaults"], defaults);

    const auto cams = root["cameras"];
    if (!cams) {
        if (g.sensors.empty())
            r.error(root, "cameras", "missing required key: at least one camera or sensor");
    } else if (!cams.IsSequence() || cams.size() == 0) {
        r.error(cams, "cameras", "expected a non-empty list of cameras");
    } else {
        std::map<std::string, int> first_line;
        for (std::size_t i = 0; i < cams.size(); ++i) {
            Camera cam;
            const auto path = fmt::format("cameras[{}]", i);
            read_camera(r, cams[i], path, defaults, cam);
            if (!cam.id.empty()) {
                if (auto it = first_line.find(cam.id); it != first_line.end()) {
                    r.error(
                        cams[i]["id"], path + ".id",
                        fmt::format("duplicate camera id '{}' (first used on line {})", cam.id, it->second));
                } else {
                    first_line[cam.id] = cams[i]["id"].Mark().line + 1;
                }
            }
            g.cameras.push_back(std::move(cam));
        }
    }
    check_references(r, root, g);
    return g;
}

}  // namespace

Gateway load_string(const std::string& yaml, const std::string& source_name) {
    Reader reader(source_name, fs::absolute(fs::path(source_name)).parent_path());
    YAML::Node root;
    try {
        root = YAML::Load(yaml);
    } catch (const YAML::ParserException& e) {
        throw ConfigInvalid(
            {{source_name, e.mark.line + 1, e.mark.column + 1, "", "YAML syntax error: " + e.msg}});
    }
    Gateway g;
    try {
        g = read_document(reader, root);
    } catch (const YAML::Exception& e) {
        // A node shape the reader did not expect; still reported with its place.
        reader.errors.push_back({source_name, e.mark.line + 1, e.mark.column + 1, "", e.msg});
    }
    if (!reader.errors.empty()) {
        std::stable_sort(reader.errors.begin(), reader.errors.end(),
                         [](const ConfigError& a, const ConfigError& b) { return a.line < b.line; });
        throw ConfigInvalid(std::move(reader.errors));
    }
    g.source_file = source_name;
    return g;
}

Gateway load_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw ConfigInvalid(
            {{path, 0, 0, "", fmt::format("cannot read the file: {}", std::strerror(errno))}});
    std::stringstream text;
    text << in.rdbuf();
    return load_string(text.str(), path);
}

}  // namespace kg::config
