#include "config/config_loader.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <tuple>
#include <variant>

#include "common/listen_address.hpp"
#include "common/mqtt_topic.hpp"
#include "common/short_text.hpp"
#include "common/url_text.hpp"
#include "config/yaml_reader.hpp"
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
    if (errors.empty()) return "invalid configuration";
    if (errors.size() == 1) return errors.front().to_string();
    const auto more = errors.size() - 1;
    return fmt::format("{} (and {} more error{})", errors.front().to_string(), more, more == 1 ? "" : "s");
}

}  // namespace

ConfigInvalid::ConfigInvalid(std::vector<ConfigError> errs)
    : std::runtime_error(summary(errs)), errors(std::move(errs)) {}

bool parse_duration(const std::string& text, Duration& out) {
    static const std::regex number(R"(^\s*([0-9]+(\.[0-9]+)?)\s*$)");
    static const std::regex part(R"(([0-9]+(\.[0-9]+)?)(ms|s|m|h|d))");
    std::smatch m;
    // Beyond a century a duration is a typo, and it would overflow the milliseconds.
    constexpr double kMaxMs = 100.0 * 366 * 86400e3;
    if (std::regex_match(text, m, number)) {
        const double ms = std::stod(m[1]) * 1000.0;
        if (ms > kMaxMs) return false;
        out = Duration(static_cast<Duration::rep>(std::llround(ms)));
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
    if (consumed == 0 || consumed != text.size() || ms > kMaxMs) return false;
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
    const double bytes = std::stod(m[1]) * factor;
    if (bytes >= 0x1p60) return false;  // converting past size_t is undefined (20 EB came out as 0)
    out = static_cast<std::size_t>(bytes);
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

// The gateway's typed values and its wording of errors.
class Reader : public YamlReader {
public:
    using YamlReader::YamlReader;

    struct Entry {
        std::string name;
        YAML::Node key, value;
    };
    // The plain-name entries of a map already checked by map_of_names(), first copy of a repeat only.
    static std::vector<Entry> entries(const YAML::Node& node) {
        std::vector<Entry> out;
        std::set<std::string> seen;
        for (const auto& kv : node) {
            if (kv.first.IsScalar() && seen.insert(kv.first.Scalar()).second)
                out.push_back({kv.first.Scalar(), kv.first, kv.second});
        }
        return out;
    }

    // Every scalar goes through text(), so a number or a duration may come from the environment
    // as well as a password.
    bool string(const YAML::Node& node, const std::string& path, std::string& out) {
        return text(node, path, "a string", out);
    }

    // A label or unit that goes out in every event (common/short_text.hpp: the room refuses longer).
    bool short_text(const YAML::Node& node, const std::string& path, std::string& out, std::size_t max_bytes,
                    bool may_be_empty = false) {
        std::string t;
        if (!string(node, path, t)) return false;
        if (!(may_be_empty && t.empty()) && !is_short_text(t, max_bytes)) {
            error(node, path,
                  fmt::format("expected a text of {} to {} bytes without control characters",
                              may_be_empty ? 0 : 1, max_bytes));
            return false;
        }
        out = std::move(t);
        return true;
    }

    bool boolean(const YAML::Node& node, const std::string& path, bool& out) {
        std::string t;
        if (!text(node, path, "true or false", t)) return false;
        if (!YAML::convert<bool>::decode(YAML::Node(t), out)) {
            error(node, path, fmt::format("expected true or false, not '{}'", t));
            return false;
        }
        return true;
    }

    bool integer(const YAML::Node& node, const std::string& path, int& out, int min, int max) {
        std::string t;
        if (!text(node, path, "an integer", t)) return false;
        long long v = 0;
        if (!YAML::convert<long long>::decode(YAML::Node(t), v)) {
            error(node, path, fmt::format("expected an integer, not '{}'", t));
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
        std::string t;
        if (!text(node, path, "a number", t)) return false;
        double v = 0;
        if (!YAML::convert<double>::decode(YAML::Node(t), v) || !std::isfinite(v)) {
            error(node, path, fmt::format("expected a number, not '{}'", t));
            return false;
        }
        if (v < min || v > max || (min_exclusive && v == min)) {
            const auto range =
                min_exclusive ? fmt::format("{} < value <= {}", min, max) : fmt::format("{}..{}", min, max);
            error(node, path, fmt::format("{} is out of range ({})", v, range));
            return false;
        }
        out = v;
        return true;
    }

    // allow_zero: for delays where "at once" is meaningful (confirm, clear, cooldown).
    bool duration(const YAML::Node& node, const std::string& path, Duration& out, bool allow_zero = false) {
        std::string t;
        if (!text(node, path, "a duration", t)) return false;
        Duration d{};
        if (!parse_duration(t, d)) {
            error(node, path,
                  fmt::format("'{}' is not a duration (seconds, or like 500ms, 10s, 5m, 1h30m, 7d)", t));
            return false;
        }
        if (!allow_zero && d.count() <= 0) {
            error(node, path, "must be longer than zero");
            return false;
        }
        out = d;
        return true;
    }

    bool size(const YAML::Node& node, const std::string& path, std::size_t& out, bool allow_zero = false) {
        std::string t;
        if (!text(node, path, "a size", t)) return false;
        std::size_t s = 0;
        if (!parse_size(t, s) || (s == 0 && !allow_zero)) {
            error(node, path, fmt::format("'{}' is not a size (like 512MiB, 2GB; under 1 EiB)", t));
            return false;
        }
        out = s;
        return true;
    }

    bool strings(const YAML::Node& node, const std::string& path, std::vector<std::string>& out) {
        if (!node.IsSequence()) {
            error(node, path, fmt::format("expected a list, not {}", describe(node)));
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
        if (!valid_id(out)) {
            error(node, path,
                  fmt::format("'{}' is not a valid id: use 1-64 letters, digits, '_' or '-'", out));
            return false;
        }
        return true;
    }

protected:
    // Every copy of an unknown key is named, each at its own line.
    void unknown_key(const YAML::Node& at, const std::string& path, const std::string& key,
                     std::initializer_list<const char*> allowed, bool /*repeated*/) override {
        error(at, join(path, key), unknown_key_message(key, allowed));
    }

    std::string unset_variable(const std::string& name) const override {
        return fmt::format("environment variable '{}' is not set", name);
    }

private:
    static std::string unknown_key_message(const std::string& key,
                                           std::initializer_list<const char*> allowed) {
        if (key == "<<")
            return "YAML merge keys ('<<') are not supported: put shared camera settings in 'defaults'";
        std::string hint;
        std::size_t best = 3;  // suggest only within an edit distance of 2
        for (const char* a : allowed) {
            const auto d = edit_distance(key, a);
            if (d < best) {
                best = d;
                hint = fmt::format(" (did you mean '{}'?)", a);
            }
        }
        return fmt::format("unknown key '{}'{}", key, hint);
    }
};

bool starts_with(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }

std::string lower_trimmed(const std::string& text) {
    const auto first = text.find_first_not_of(" \t");
    if (first == std::string::npos) return {};
    std::string out = text.substr(first, text.find_last_not_of(" \t") - first + 1);
    for (auto& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

// The kinds the gateway treats apart: a detector's thresholds (gas, smoke: no `for`; those and door,
// leak: no hysteresis), the parents' page (temperature), the units below. Any other is carried as
// written, with a measurement's defaults.
constexpr std::array<std::string_view, 8> kKnownKinds = {"temperature", "humidity", "gas",   "smoke",
                                                         "door",        "leak",     "power", "co2"};

bool known_kind(const std::string& kind) {
    return std::find(kKnownKinds.begin(), kKnownKinds.end(), kind) != kKnownKinds.end();
}

// A sensor's unit when its configuration gives none: a humidity in degC was what every kind got.
std::string default_unit(const std::string& kind) {
    if (kind == "temperature") return "degC";
    if (kind == "humidity") return "%";
    if (kind == "co2") return "ppm";
    if (kind == "power") return "W";
    return {};
}

// Where an MQTT sensor's number is when its configuration gives no `value`: the field Zigbee2MQTT
// names after the kind. A humidity sensor read its payload's `temperature` (22.5 % said, and a
// false "too dry" raised). Door contacts are left out: Zigbee2MQTT's `contact` is true when closed.
std::string default_value_path(const std::string& kind) {
    if (kind == "humidity" || kind == "co2" || kind == "power" || kind == "gas" || kind == "smoke")
        return kind;
    if (kind == "leak") return "water_leak";
    return "temperature";
}

// The URL as error messages show it: any password replaced, so that logs never carry it, and
// control characters escaped, so that the message stays one readable line.
std::string shown(const std::string& url) {
    const std::string out = without_password(url);
    std::string printable;
    for (const unsigned char c : out) {
        printable +=
            c < 0x20 || c == 0x7f ? fmt::format("\\x{:02x}", c) : std::string(1, static_cast<char>(c));
    }
    return printable;
}

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

constexpr const char* kCameraUrlForms =
    "use rtsp://, rtsps://, rtmp://, rtmps://, http:// or https:// with a host, a file path (or "
    "file://PATH), or a V4L2 device (/dev/videoN or v4l2:///dev/videoN)";

// "rtsp:/host/x" or "ftp://x": a scheme the reader would otherwise take for part of a file name.
bool has_scheme(const std::string& url) {
    static const std::regex scheme("^[A-Za-z][A-Za-z0-9+.-]*:/");
    return std::regex_search(url, scheme);
}

// Returns an error message or "" and the URL with relative file paths made absolute.
std::string check_camera_url(const Reader& r, const std::string& url, std::string& resolved) {
    if (url.empty()) return fmt::format("is empty: {}", kCameraUrlForms);
    const auto display = shown(url);
    if (std::any_of(url.begin(), url.end(),
                    [](unsigned char c) { return c < 0x20 || c == ' ' || c == 0x7f; })) {
        return fmt::format("'{}' contains spaces or control characters (percent-encode them); {}", display,
                           kCameraUrlForms);
    }
    for (std::string_view scheme : {"rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://"}) {
        if (starts_with(url, scheme)) {
            const auto problem = check_authority(url.substr(scheme.size()));
            resolved = url;
            return problem.empty() ? "" : fmt::format("'{}': {}; {}", display, problem, kCameraUrlForms);
        }
    }
    if (starts_with(url, "v4l2://")) {
        resolved = url;
        return starts_with(url.substr(7), "/dev/")
                   ? ""
                   : fmt::format("'{}': expected v4l2:///dev/videoN", display);
    }
    if (starts_with(url, "/dev/")) {
        resolved = url;
        return "";
    }
    if (starts_with(url, "file://")) {
        if (url.size() == 7) return fmt::format("file:// needs a path; {}", kCameraUrlForms);
        resolved = "file://" + r.resolve(url.substr(7)).string();
        return "";
    }
    if (url.find("://") != std::string::npos || has_scheme(url)) {
        return fmt::format("'{}' is not a supported camera URL: {}", display, kCameraUrlForms);
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

// Paho's own defaults apply to a URL without a port (1883, 8883, 80, 443 by scheme).
// A listen address as the HTTP servers read it: an IP literal (IPv6 in brackets) or nothing (every
// address), a colon, a port. A host name or a missing port used to pass here and then keep the
// server from starting, with only a log line to say so.
void check_listen(Reader& r, const YAML::Node& at, const std::string& key, const std::string& text) {
    std::string why;
    if (!parse_listen_address(text, &why)) {
        r.error(at, key,
                fmt::format("'{}' is not address:port with an IP address (e.g. 127.0.0.1:8080, 0.0.0.0:8081, "
                            "[::]:8081): {}",
                            text, why));
    }
}

// The local API and the public side on one port: the second could not bind, and retried for as
// long as the gateway ran, with only a log line to say so.
void check_listeners_apart(Reader& r, const YAML::Node& root, const Gateway& g) {
    if (g.api.listen.empty() || g.public_side.listen.empty()) return;
    const auto api = parse_listen_address(g.api.listen), pub = parse_listen_address(g.public_side.listen);
    if (!api || !pub || api->port == 0 || api->port != pub->port) return;
    auto every = [](const ListenAddress& a) {
        return a.host.empty() || a.host == "0.0.0.0" || a.host == "::";
    };
    if (api->host != pub->host && !every(*api) && !every(*pub)) return;
    const auto at = root["public"] && root["public"]["listen"] ? root["public"]["listen"]
                    : root["api"] && root["api"]["listen"]     ? root["api"]["listen"]
                                                               : root;
    r.error(at, root["public"] && root["public"]["listen"] ? "public.listen" : "api.listen",
            fmt::format("'{}' and api.listen '{}' share port {}: give each its own", g.public_side.listen,
                        g.api.listen, pub->port));
}

void check_broker_url(Reader& r, const YAML::Node& at, const std::string& key, const std::string& url) {
    for (std::string_view scheme : {"tcp://", "mqtt://", "ssl://", "mqtts://", "ws://", "wss://"}) {
        if (starts_with(url, scheme)) {
            // Paho takes no account from the URL: the connection would fail with a bare "-1".
            const auto rest = url.substr(scheme.size());
            if (rest.substr(0, rest.find_first_of("/?#")).find('@') != std::string::npos) {
                r.error(
                    at, key,
                    fmt::format("'{}': an account in the URL is not used; give it as username and password "
                                "beside the URL",
                                shown(url)));
                return;
            }
            const auto problem = check_authority(url.substr(scheme.size()));
            if (!problem.empty()) {
                r.error(at, key,
                        fmt::format("'{}': {}; a broker URL is SCHEME://HOST[:PORT]", shown(url), problem));
            }
            return;
        }
    }
    r.error(at, key,
            fmt::format("'{}' is not a broker URL: use tcp://, mqtt://, ssl://, mqtts://, ws:// or wss:// "
                        "followed by HOST[:PORT]",
                        shown(url)));
}

void read_tls(Reader& r, const YAML::Node& t, const std::string& path, std::optional<Tls>& out) {
    if (!r.map(t, path, {"ca_file", "cert_file", "key_file", "verify_server"})) return;
    Tls tls;
    for (auto [key, field] : {std::pair{"ca_file", &tls.ca_file}, std::pair{"cert_file", &tls.cert_file},
                              std::pair{"key_file", &tls.key_file}}) {
        if (t[key] && r.string(t[key], join(path, key), *field) && !field->empty()) {
            *field = r.resolve(*field).string();
            // Said here, with the line: at the connection Paho says only "SSL error", at every
            // retry, and a reload would have swapped a working connection for that.
            std::error_code ec;
            const auto status = std::filesystem::status(*field, ec);
            if (status.type() == std::filesystem::file_type::not_found) {
                r.error(t[key], join(path, key), fmt::format("{} does not exist", *field));
            } else if (ec) {
                // A folder on the way that this user may not enter (a key under /etc/ssl/private).
                r.error(t[key], join(path, key), fmt::format("{}: {}", *field, ec.message()));
            } else if (status.type() != std::filesystem::file_type::regular) {
                r.error(t[key], join(path, key), fmt::format("{} is not a file", *field));
            } else if (!std::ifstream(*field)) {
                // The service's user (kitchen-gateway) must read it, not only root checking by hand.
                r.error(t[key], join(path, key), fmt::format("{} cannot be read by this user", *field));
            }
        }
    }
    if (t["verify_server"]) r.boolean(t["verify_server"], path + ".verify_server", tls.verify_server);
    if (tls.cert_file.empty() != tls.key_file.empty()) r.error(t, path, "cert_file and key_file go together");
    out = tls;
}

void check_tls_scheme(Reader& r, const YAML::Node& at, const std::string& key, const std::string& url) {
    if (const auto problem = tls_settings_problem(url, shown(url)); !problem.empty())
        r.error(at, key, problem);
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
        if (const auto problem = topic_prefix_problem(m.topic_prefix); !problem.empty())
            r.error(n["topic_prefix"], "mqtt.topic_prefix", fmt::format("'{}': {}", m.topic_prefix, problem));
    }
    if (n["username"]) r.string(n["username"], "mqtt.username", m.username);
    if (n["password"]) r.string(n["password"], "mqtt.password", m.password);
    // MQTT 3.1.1 forbids it and Mosquitto closes such a connection: the gateway said only "TCP
    // connect completion failure", every few seconds, for ever (the example's username line left
    // commented out).
    if (!m.password.empty() && m.username.empty())
        r.error(n["password"], "mqtt.password", "a password needs a username (mqtt.username)");
    // MQTT carries it as whole seconds in 16 bits: 500ms went out as 0 (no keep-alive: the last
    // will never sent on a silent loss) and 1d wrapped to 20864 s.
    if (n["keepalive"] && r.duration(n["keepalive"], "mqtt.keepalive", m.keepalive) &&
        (m.keepalive < std::chrono::seconds(1) || m.keepalive > std::chrono::seconds(65535)))
        r.error(n["keepalive"], "mqtt.keepalive", "must be from 1s to 65535s (18h12m15s)");
    if (n["state_interval"]) r.duration(n["state_interval"], "mqtt.state_interval", m.state_interval);
    if (const auto rc = n["reconnect"]; rc && r.map(rc, "mqtt.reconnect", {"min", "max"})) {
        if (rc["min"]) r.duration(rc["min"], "mqtt.reconnect.min", m.reconnect_min);
        if (rc["max"]) r.duration(rc["max"], "mqtt.reconnect.max", m.reconnect_max);
        if (m.reconnect_min > m.reconnect_max) r.error(rc, "mqtt.reconnect", "min is longer than max");
    }
    if (n["tls"]) {
        read_tls(r, n["tls"], "mqtt.tls", m.tls);
        check_tls_scheme(r, n["tls"], "mqtt.tls", m.url);
    }
}

// `sensors_mqtt`: a broker URL (anonymous), or {url, username, password, tls}.
void read_sensors_broker(Reader& r, const YAML::Node& n, std::optional<BrokerAccount>& out) {
    BrokerAccount b;
    if (n.IsScalar()) {
        if (r.string(n, "sensors_mqtt", b.url)) check_broker_url(r, n, "sensors_mqtt", b.url);
        out = b;
        return;
    }
    if (!n.IsMap()) {
        r.error(n, "sensors_mqtt", "expected a broker URL, or a map with url, username, password and tls");
        return;
    }
    if (!r.map(n, "sensors_mqtt", {"url", "username", "password", "tls"})) return;
    if (!n["url"]) {
        r.error(n, "sensors_mqtt", "url missing (the broker's URL, e.g. tcp://127.0.0.1:1883)");
    } else if (r.string(n["url"], "sensors_mqtt.url", b.url)) {
        check_broker_url(r, n["url"], "sensors_mqtt.url", b.url);
    }
    if (n["username"]) r.string(n["username"], "sensors_mqtt.username", b.username);
    if (n["password"]) r.string(n["password"], "sensors_mqtt.password", b.password);
    if (!b.password.empty() && b.username.empty())
        r.error(n["password"], "sensors_mqtt.password",
                "a password needs a username (sensors_mqtt.username)");
    if (n["tls"]) {
        read_tls(r, n["tls"], "sensors_mqtt.tls", b.tls);
        check_tls_scheme(r, n["tls"], "sensors_mqtt.tls", b.url);
    }
    out = b;
}

void read_input(Reader& r, const YAML::Node& n, const std::string& path, Input& in) {
    if (!r.map(n, path, {"transport", "timeout", "reconnect", "loop", "realtime", "format"})) return;
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
    if (const auto rc = n["reconnect"];
        rc && r.map(rc, path + ".reconnect", {"min", "max", "healthy_after"})) {
        if (rc["min"]) r.duration(rc["min"], path + ".reconnect.min", in.reconnect_min);
        if (rc["max"]) r.duration(rc["max"], path + ".reconnect.max", in.reconnect_max);
        if (rc["healthy_after"]) {
            r.duration(rc["healthy_after"], path + ".reconnect.healthy_after", in.reconnect_healthy_after);
        }
        if (in.reconnect_min > in.reconnect_max) r.error(rc, path + ".reconnect", "min is longer than max");
    }
    if (n["loop"]) r.boolean(n["loop"], path + ".loop", in.loop);
    if (n["realtime"]) r.boolean(n["realtime"], path + ".realtime", in.realtime);
    if (n["format"] && r.string(n["format"], path + ".format", in.format)) {
        const bool word = !in.format.empty() && in.format.size() <= 32 &&
                          std::all_of(in.format.begin(), in.format.end(), [](char c) {
                              return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
                          });
        if (!word) {
            r.error(n["format"], path + ".format",
                    fmt::format("'{}' is not a pixel format's name like mjpeg, h264 or yuyv422", in.format));
        }
    }
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
        if (std::find(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(i), names[i]) !=
            names.begin() + static_cast<std::ptrdiff_t>(i)) {
            r.error(n[i], fmt::format("{}[{}]", path, i),
                    fmt::format("check '{}' is listed twice", names[i]));
        } else if (!known_check(names[i])) {
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

Rule builtin_rule(const std::string& check);

// Per check name; a check's built-in rule is overridden by defaults.rules, then by the camera's, a
// key at a time: `defaults.rules.after_hours_motion: {schedule: closed}` used to start from a plain
// rule, and the rodent check lost its severity 1 and its 1 s confirm on every camera.
void read_rules(Reader& r, const YAML::Node& n, const std::string& path, std::map<std::string, Rule>& rules) {
    if (!r.map_of_names(n, path, "a map of check names to rules")) return;
    for (const auto& [check, key_node, value] : Reader::entries(n)) {
        const auto key = join(path, check);
        if (!known_check(check)) {
            r.error(key_node, key, fmt::format("unknown check '{}'", check));
            continue;
        }
        read_rule(r, value, key, rules.try_emplace(check, builtin_rule(check)).first->second);
    }
}

constexpr double kMinPolygonArea = 1e-4;  // 1% by 1% of the picture

// Shoelace formula, in shares of the picture.
double polygon_area(const std::vector<Point>& points) {
    double twice = 0;
    for (std::size_t i = 0, j = points.size() - 1; i < points.size(); j = i++)
        twice +=
            static_cast<double>(points[j].x) * points[i].y - static_cast<double>(points[i].x) * points[j].y;
    return std::abs(twice) / 2;
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
    // Points in a line (or repeated) enclose nothing: no detection ever stood in such a zone, and
    // `unattended` there was raised for the whole schedule.
    if (points.size() == n.size() && polygon_area(points) < kMinPolygonArea) {
        r.error(n, path,
                fmt::format("the polygon encloses {:.4f}% of the picture, less than {:.2f}%: its points are "
                            "(nearly) in a line",
                            100 * polygon_area(points), 100 * kMinPolygonArea));
    }
    return points;
}

void read_zones(Reader& r, const YAML::Node& n, const std::string& path, std::vector<Zone>& zones) {
    if (!r.map_of_names(n, path, "a map of zone names to zones")) return;
    for (const auto& [name, key_node, value] : Reader::entries(n)) {
        Zone z;
        z.name = name;
        const auto key = join(path, z.name);
        if (!std::regex_match(z.name, kIdPattern)) {
            r.error(key_node, key,
                    fmt::format("'{}' is not a valid zone name: use letters, digits, '_' or '-'", z.name));
        }
        if (!r.map(value, key, {"polygon", "checks"})) continue;
        if (value["polygon"]) {
            z.polygon = read_polygon(r, value["polygon"], key + ".polygon");
        } else {
            r.error(value, key + ".polygon", "missing required key");
        }
        if (value["checks"]) read_checks(r, value["checks"], key + ".checks", z.checks);
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
    // A detector's boxes passed its own threshold (the manifest's `score_threshold`, `min_score`),
    // the operating point its accuracy is measured at; 0.5 here too made the shipped models' 0.3
    // a dead letter: 80% of the mask model's no_mask boxes scored 0.3-0.5 and raised nothing. Any
    // box counts; a threshold set here is a stricter one.
    if (check == "mask" || check == "head_covering" || check.rfind("model:", 0) == 0) rule.threshold = 0;
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
                "zones", "masks", "privacy_masks", "rules"})) {
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
    if (n["zones"]) {
        read_zones(r, n["zones"], path + ".zones", cam.zones);
        // `unattended` counts movement as a share of the whole picture (min_area), so that steam
        // over a small stove zone does not pass for a cook: a zone smaller than that share could
        // never show anyone, and was raised for the whole schedule.
        const bool unattended =
            std::find(cam.checks.begin(), cam.checks.end(), "unattended") != cam.checks.end();
        for (const auto& z : cam.zones) {
            // Only a zone that names it: otherwise unattended judges the whole picture.
            const bool applies = std::find(z.checks.begin(), z.checks.end(), "unattended") != z.checks.end();
            if (!unattended || !applies || z.polygon.size() < 3) continue;
            if (const double area = polygon_area(z.polygon);
                area >= kMinPolygonArea && area < cam.scene.min_area) {
                r.error(
                    n["zones"][z.name]["polygon"], join(path + ".zones", z.name) + ".polygon",
                    fmt::format("covers {:.2f}% of the picture, less than scene.min_area ({:.2f}%): no one "
                                "working there could be seen, and unattended would always be raised; draw "
                                "the zone larger or lower min_area",
                                100 * area, 100 * cam.scene.min_area));
            }
        }
    }
    if (const auto m = n["masks"]) {
        if (!m.IsSequence()) {
            r.error(m, path + ".masks", "expected a list of polygons");
        } else {
            for (std::size_t i = 0; i < m.size(); ++i) {
                cam.masks.push_back(read_polygon(r, m[i], fmt::format("{}.masks[{}]", path, i)));
            }
        }
    }
    if (const auto m = n["privacy_masks"]) {
        if (!m.IsSequence()) {
            r.error(m, path + ".privacy_masks", "expected a list of polygons");
        } else {
            for (std::size_t i = 0; i < m.size(); ++i) {
                cam.privacy_masks.push_back(
                    read_polygon(r, m[i], fmt::format("{}.privacy_masks[{}]", path, i)));
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
    if (const auto rules = n["rules"];
        rules && r.map_of_names(rules, path + ".rules", "a map of check names to rules")) {
        for (const auto& [check, key_node, value] : Reader::entries(rules)) {
            const auto key = join(path + ".rules", check);
            if (!known_check(check)) {
                r.error(key_node, key, fmt::format("unknown check '{}'", check));
            } else if (!cam.rules.count(check)) {
                r.error(key_node, key, fmt::format("check '{}' is not in this camera's checks", check));
            } else {
                read_rule(r, value, key, cam.rules[check]);
            }
        }
    }
}

void read_schedules(Reader& r, const YAML::Node& n, std::vector<Schedule>& schedules) {
    if (!r.map_of_names(n, "schedules", "a map of schedule names to schedules")) return;
    // Inverted schedules refer to others by name, so resolve them after all are read.
    std::vector<std::pair<std::string, YAML::Node>> inversions;
    for (const auto& [name, key_node, value] : Reader::entries(n)) {
        Schedule s;
        s.name = name;
        const auto key = join("schedules", s.name);
        if (!r.map(value, key, {"days", "times", "on_holidays", "not"})) continue;
        if (value["not"]) {
            if (value["days"] || value["times"]) {
                r.error(value, key, "'not' takes no 'days' or 'times' of its own");
            }
            inversions.emplace_back(s.name, value["not"]);
            continue;
        }
        if (value["days"]) {
            std::string days;
            if (r.string(value["days"], key + ".days", days)) {
                try {
                    s.days = rules::parse_days(days);
                } catch (const std::invalid_argument& e) {
                    r.error(value["days"], key + ".days", e.what());
                }
            }
        }
        if (value["times"]) {
            if (r.strings(value["times"], key + ".times", s.times)) {
                // A schedule with no window is never active: a threshold under it never fires, a
                // disinfection window under it is never judged, and nothing says so.
                if (s.times.empty())
                    r.error(value["times"], key + ".times",
                            "no window: give at least one, e.g. [\"11:00-13:00\"]");
                for (std::size_t i = 0; i < s.times.size(); ++i) {
                    try {
                        rules::parse_window(s.times[i]);
                    } catch (const std::invalid_argument& e) {
                        r.error(value["times"][i], fmt::format("{}.times[{}]", key, i), e.what());
                    }
                }
            }
        } else {
            r.error(value, key + ".times", "missing required key");
        }
        if (value["on_holidays"]) r.boolean(value["on_holidays"], key + ".on_holidays", s.on_holidays);
        schedules.push_back(std::move(s));
    }
    // In rounds: `not` may name another `not` written further down (`open: {not: closed}` before
    // `closed: {not: working}`), and the inverse of an inverse is the schedule itself.
    struct Pending {
        std::string name, of;
        YAML::Node at;
    };
    std::vector<Pending> pending;
    for (const auto& [name, target] : inversions) {
        std::string of;
        if (r.string(target, join("schedules", name) + ".not", of)) pending.push_back({name, of, target});
    }
    auto find = [&](const std::string& name) {
        return std::find_if(schedules.begin(), schedules.end(),
                            [&](const Schedule& s) { return s.name == name; });
    };
    for (bool progress = true; progress && !pending.empty();) {
        progress = false;
        for (auto p = pending.begin(); p != pending.end();) {
            const auto it = find(p->of);
            if (it == schedules.end()) {
                ++p;
                continue;
            }
            Schedule inverted = *it;
            inverted.name = p->name;
            inverted.inverted = !it->inverted;
            schedules.push_back(std::move(inverted));
            p = pending.erase(p);
            progress = true;
        }
    }
    for (const auto& p : pending) {
        const bool inverse =
            std::any_of(pending.begin(), pending.end(), [&](const Pending& q) { return q.name == p.of; });
        r.error(p.at, join("schedules", p.name) + ".not",
                inverse ? fmt::format("'{}' is itself an inverse of a schedule in a loop back here", p.of)
                        : fmt::format("no schedule named '{}'", p.of));
    }
}

void read_outbox(Reader& r, const YAML::Node& n, Outbox& o) {
    if (!r.map(n, "outbox", {"path", "max_messages", "max_size", "keep_sent", "keep_sent_size"})) return;
    if (n["path"] && r.string(n["path"], "outbox.path", o.path) && o.path != ":memory:") {
        o.path = r.resolve(o.path).string();
    }
    if (n["max_messages"]) {
        int v = 0;
        if (r.integer(n["max_messages"], "outbox.max_messages", v, 10, 100000000))
            o.max_messages = static_cast<std::size_t>(v);
    }
    if (n["max_size"]) {
        // Below this an outage of minutes at a busy site fills it with snapshots, and a single
        // snapshot (tens to hundreds of KiB) may not fit at all.
        constexpr std::size_t kMinOutbox = 16u << 20;
        std::size_t v = 0;
        if (r.size(n["max_size"], "outbox.max_size", v)) {
            if (v < kMinOutbox) {
                r.error(n["max_size"], "outbox.max_size",
                        fmt::format("{} bytes is less than the minimum 16MiB", v));
            } else {
                o.max_bytes = v;
            }
        }
    }
    if (n["keep_sent"]) {
        // "none" (or 0) keeps nothing: every replay request is then answered lost.
        // Compared after ${NAME} is replaced: `keep_sent: ${KEEP}` with KEEP=none was refused.
        const auto keep = n["keep_sent"];
        std::string text;
        if (!keep.IsScalar()) {
            r.duration(keep, "outbox.keep_sent", o.keep_sent, true);  // says what it expected
        } else if (r.string(keep, "outbox.keep_sent", text)) {
            if (text == "none") {
                o.keep_sent = Duration::zero();
            } else {
                r.duration(keep, "outbox.keep_sent", o.keep_sent, true);
            }
        }
    }
    if (n["keep_sent_size"]) r.size(n["keep_sent_size"], "outbox.keep_sent_size", o.keep_sent_bytes, true);
}

void read_evidence(Reader& r, const YAML::Node& n, Evidence& e) {
    if (!r.map(n, "evidence",
               {"path", "max_size", "max_age", "min_free", "clip_pre", "clip_post", "jpeg_quality",
                "mqtt_snapshots"})) {
        return;
    }
    if (n["path"] && r.string(n["path"], "evidence.path", e.path)) e.path = r.resolve(e.path).string();
    if (n["max_size"]) r.size(n["max_size"], "evidence.max_size", e.max_bytes);
    if (n["max_age"]) r.duration(n["max_age"], "evidence.max_age", e.max_age);
    if (n["min_free"]) r.size(n["min_free"], "evidence.min_free", e.min_free, true);
    if (n["clip_pre"]) r.duration(n["clip_pre"], "evidence.clip_pre", e.clip_pre, true);
    if (n["clip_post"]) r.duration(n["clip_post"], "evidence.clip_post", e.clip_post, true);
    if (n["jpeg_quality"]) r.integer(n["jpeg_quality"], "evidence.jpeg_quality", e.jpeg_quality, 10, 100);
    if (n["mqtt_snapshots"]) r.boolean(n["mqtt_snapshots"], "evidence.mqtt_snapshots", e.mqtt_snapshots);
}

void read_training_frames(Reader& r, const YAML::Node& n, TrainingFrames& t) {
    // The section turns it on, an empty one with every default; `enabled: false` keeps the
    // settings while saving is off (frames saved before still expire).
    if (n.IsNull()) {
        t.enabled = true;
        return;
    }
    if (!r.map(n, "training_frames",
               {"enabled", "path", "every", "max_size", "max_age", "min_free", "jpeg_quality", "schedule",
                "cameras"})) {
        return;
    }
    t.enabled = true;
    if (n["enabled"]) r.boolean(n["enabled"], "training_frames.enabled", t.enabled);
    if (n["path"] && r.string(n["path"], "training_frames.path", t.path)) t.path = r.resolve(t.path).string();
    if (n["every"] && r.duration(n["every"], "training_frames.every", t.every) &&
        t.every < std::chrono::seconds(1)) {
        // More often than any labelling needs, and file names carry only the second.
        r.error(n["every"], "training_frames.every", "must be at least 1s");
    }
    if (n["max_size"]) r.size(n["max_size"], "training_frames.max_size", t.max_bytes);
    if (n["max_age"]) r.duration(n["max_age"], "training_frames.max_age", t.max_age);
    if (n["min_free"]) r.size(n["min_free"], "training_frames.min_free", t.min_free, true);
    if (n["jpeg_quality"])
        r.integer(n["jpeg_quality"], "training_frames.jpeg_quality", t.jpeg_quality, 10, 100);
    if (n["schedule"]) r.string(n["schedule"], "training_frames.schedule", t.schedule);
    if (n["cameras"]) r.strings(n["cameras"], "training_frames.cameras", t.cameras);
}

using Step = std::variant<std::string, std::size_t>;

// The node at `steps` under `node` (map keys and list indexes), if every step exists; used to point
// a cross-reference error at the value that was written rather than at its camera.
std::optional<YAML::Node> node_at(const YAML::Node& node, std::initializer_list<Step> steps) {
    YAML::Node at;
    at.reset(node);  // plain assignment would write into the document
    for (const auto& step : steps) {
        const YAML::Node& here = at;  // the const operator[] never adds a key
        YAML::Node next;
        if (const auto* key = std::get_if<std::string>(&step)) {
            if (!here.IsMap() || !here[*key]) return std::nullopt;
            next.reset(here[*key]);
        } else {
            const auto index = std::get<std::size_t>(step);
            if (!here.IsSequence() || index >= here.size()) return std::nullopt;
            next.reset(here[index]);
        }
        at.reset(next);
    }
    return at;
}

// The time zone must be one the calendar can load from the system's tzdata (/usr/share/zoneinfo).
void check_timezone(Reader& r, const YAML::Node& at, const std::string& zone) {
    const fs::path file = fs::path("/usr/share/zoneinfo") / zone;
    const bool plain = !zone.empty() && zone.front() != '/' && zone.find("..") == std::string::npos;
    if (!plain || !fs::is_regular_file(file)) {
        r.error(
            at, "site.timezone",
            fmt::format("unknown time zone '{}': no such file under /usr/share/zoneinfo (e.g. Asia/Shanghai)",
                        zone));
        return;
    }
    try {
        rules::Calendar(zone, {});
    } catch (const std::invalid_argument& e) {
        r.error(at, "site.timezone", e.what());
    }
}

// Cross-field rules that need the whole document. A reference inherited from `defaults` is
// reported once, at the defaults, not once per camera.
void check_references(Reader& r, const YAML::Node& root, Gateway& g) {
    if (root["site"] && root["site"].IsMap()) {
        check_timezone(r, node_at(root, {"site", "timezone"}).value_or(root["site"]), g.site.timezone);
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
    if (!g.public_side.hours.empty() && !schedule_known(g.public_side.hours)) {
        r.error(node_at(root, {"public", "hours"}).value_or(root), "public.hours",
                fmt::format("no schedule named '{}'", g.public_side.hours));
    }
    if (const auto& t = g.training_frames; !t.schedule.empty() && !schedule_known(t.schedule)) {
        r.error(node_at(root, {"training_frames", "schedule"}).value_or(root), "training_frames.schedule",
                fmt::format("no schedule named '{}'", t.schedule));
    }
    // Each folder's budget deletes files in it: nested, one would delete the other's.
    const auto normal = [](const std::string& p) {
        auto n = fs::path(p).lexically_normal();
        return n.has_filename() ? n : n.parent_path();  // "a/b/" is "a/b"
    };
    const auto within = [&](const std::string& child, const std::string& parent) {
        const auto c = normal(child), p = normal(parent);
        return std::mismatch(p.begin(), p.end(), c.begin(), c.end()).first == p.end();
    };
    const auto inside = [&](const std::string& a, const std::string& b) {
        return within(a, b) || within(b, a);
    };
    if (!g.public_side.listen.empty() && inside(g.evidence.path, g.public_side.hls_dir)) {
        r.error(
            node_at(root, {"public", "hls_dir"}).value_or(root), "public.hls_dir",
            fmt::format("'{}' and evidence.path '{}' are one inside the other: give each a folder of its own",
                        g.public_side.hls_dir, g.evidence.path));
    }
    if (g.outbox.path != ":memory:") {
        // The outbox is the one file no budget may delete: a folder that expires files must not hold it.
        const auto folder = fs::path(g.outbox.path).parent_path().string();
        for (const auto& [key, managed, on] :
             {std::tuple<const char*, std::string, bool>{"evidence.path", g.evidence.path, true},
              {"public.hls_dir", g.public_side.hls_dir, !g.public_side.listen.empty()},
              {"training_frames.path", g.training_frames.path, g.training_frames.enabled}}) {
            if (on && !managed.empty() && within(folder, managed)) {
                r.error(node_at(root, {"outbox", "path"}).value_or(root), "outbox.path",
                        fmt::format("'{}' is inside {} '{}', whose size and age budget would delete it",
                                    g.outbox.path, key, managed));
            }
        }
    }
    if (const auto& t = g.training_frames; t.enabled) {
        const auto at = node_at(root, {"training_frames", "path"}).value_or(root["training_frames"]);
        for (const auto& [key, other] :
             {std::pair<const char*, std::string>{"evidence.path", g.evidence.path},
              {"public.hls_dir", g.public_side.hls_dir}}) {
            if (!other.empty() && inside(t.path, other)) {
                r.error(
                    at, "training_frames.path",
                    fmt::format("'{}' and {} '{}' are one inside the other: give each a folder of its own",
                                t.path, key, other));
            }
        }
    }
    for (std::size_t i = 0; i < g.training_frames.cameras.size(); ++i) {
        const auto& id = g.training_frames.cameras[i];
        if (std::none_of(g.cameras.begin(), g.cameras.end(), [&](const Camera& c) { return c.id == id; })) {
            r.error(node_at(root, {"training_frames", "cameras", i}).value_or(root),
                    fmt::format("training_frames.cameras[{}]", i), fmt::format("no camera with id '{}'", id));
        }
    }
    std::set<std::string> reported;  // key paths
    auto report = [&](const std::optional<YAML::Node>& at, const YAML::Node& fallback, const std::string& key,
                      const std::string& message) {
        if (reported.insert(key).second) r.error(at.value_or(fallback), key, message);
    };
    // One serial line is opened once, with one speed and framing: the first sensor's. A second sensor
    // on it with other settings would have them ignored without a word.
    std::map<std::string, std::size_t> first_on_line;
    for (std::size_t i = 0; i < g.sensors.size(); ++i) {
        const auto& src = g.sensors[i].source;
        if (src.kind != SensorSource::Kind::modbus || src.device.rfind("rtu:", 0) != 0) continue;
        // By the line, not its spelling: /dev/serial/by-id/... and /dev/ttyUSB0 are one port.
        const auto [it, first] = first_on_line.emplace(modbus_connection(src.device), i);
        if (first) continue;
        const auto& other = g.sensors[it->second];
        const auto& o = other.source;
        const auto at = node_at(root, {"sensors", i, "source", "modbus"}).value_or(root);
        const std::pair<const char*, bool> differ[] = {{"baud", src.baud != o.baud},
                                                       {"parity", src.parity != o.parity},
                                                       {"data_bits", src.data_bits != o.data_bits},
                                                       {"stop_bits", src.stop_bits != o.stop_bits}};
        for (const auto& [key, differs] : differ) {
            if (!differs) continue;
            report(node_at(at, {key}), at, fmt::format("sensors[{}].source.modbus.{}", i, key),
                   fmt::format("sensor '{}' is on the serial line {} with sensor '{}' (line {}), whose {} "
                               "differs: one line has one setting, give both the same",
                               g.sensors[i].id, src.device, other.id, other.source_line, key));
        }
    }
    for (std::size_t i = 0; i < g.sensors.size(); ++i) {
        const auto& sensor = g.sensors[i];
        const auto at = node_at(root, {"sensors", i}).value_or(root);
        for (std::size_t t = 0; t < sensor.thresholds.size(); ++t) {
            const auto& name = sensor.thresholds[t].schedule;
            if (!name.empty() && !schedule_known(name)) {
                report(node_at(at, {"thresholds", t, "schedule"}), at,
                       fmt::format("sensors[{}].thresholds[{}].schedule", i, t),
                       fmt::format("sensor '{}': no schedule named '{}'", sensor.id, name));
            }
        }
        if (sensor.disinfection && !sensor.disinfection->schedule.empty() &&
            !schedule_known(sensor.disinfection->schedule)) {
            report(
                node_at(at, {"disinfection", "schedule"}), at,
                fmt::format("sensors[{}].disinfection.schedule", i),
                fmt::format("sensor '{}': no schedule named '{}'", sensor.id, sensor.disinfection->schedule));
        }
    }
    for (std::size_t i = 0; i < g.cameras.size(); ++i) {
        const auto& cam = g.cameras[i];
        const auto at = node_at(root, {"cameras", i}).value_or(root);
        const auto own_checks = node_at(at, {"checks"});
        for (std::size_t c = 0; c < cam.checks.size(); ++c) {
            const auto& check = cam.checks[c];
            if (check.rfind("model:", 0) != 0 || g.models.count(check.substr(6))) continue;
            const auto message = fmt::format("no model named '{}' under models", check.substr(6));
            if (own_checks) {
                report(node_at(*own_checks, {c}), at, fmt::format("cameras[{}].checks[{}]", i, c),
                       fmt::format("camera '{}': {}", cam.id, message));
            } else {
                report(node_at(root, {"defaults", "checks", c}), at, fmt::format("defaults.checks[{}]", c),
                       message);
            }
        }
        for (const auto& [check, rule] : cam.rules) {
            if (rule.schedule.empty() || schedule_known(rule.schedule)) continue;
            const auto message = fmt::format("no schedule named '{}'", rule.schedule);
            if (const auto own = node_at(at, {"rules", check, "schedule"})) {
                report(own, at, fmt::format("cameras[{}].rules.{}.schedule", i, check),
                       fmt::format("camera '{}': {}", cam.id, message));
            } else {
                report(node_at(root, {"defaults", "rules", check, "schedule"}), at,
                       fmt::format("defaults.rules.{}.schedule", check), message);
            }
        }
    }
}

void read_source(Reader& r, const YAML::Node& n, const std::string& path, const std::string& sensor,
                 SensorSource& src) {
    if (!r.map(n, path, {"mqtt", "modbus"})) return;
    if (n["mqtt"] && n["modbus"]) r.error(n, path, "one of mqtt or modbus, not both");
    if (const auto m = n["mqtt"]) {
        src.kind = SensorSource::Kind::mqtt;
        if (!r.map(m, path + ".mqtt", {"topic", "value", "time"})) return;
        if (m["topic"]) {
            if (r.string(m["topic"], path + ".mqtt.topic", src.topic)) {
                // The broker would disconnect the sensor input, and every MQTT sensor with it.
                if (const auto problem = topic_filter_problem(src.topic); !problem.empty())
                    r.error(m["topic"], path + ".mqtt.topic", fmt::format("'{}': {}", src.topic, problem));
            }
        } else {
            r.error(m, path + ".mqtt.topic", "missing required key");
        }
        if (m["value"]) r.string(m["value"], path + ".mqtt.value", src.value_path);
        if (m["time"]) r.string(m["time"], path + ".mqtt.time", src.time_path);
    } else if (const auto b = n["modbus"]) {
        src.kind = SensorSource::Kind::modbus;
        if (!r.map(b, path + ".modbus",
                   {"device", "baud", "parity", "data_bits", "stop_bits", "unit_id", "address", "register",
                    "type", "word_order", "scale", "offset", "timeout"})) {
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
        if (b["unit_id"]) {
            // Modbus TCP devices and gateways often answer as 255 only; libmodbus refuses 248..254 on
            // TCP (and would read the unit set before). On a serial line 248..255 are reserved; 0 is
            // the broadcast address, which no unit answers: a doubt, not an error, as it loaded before.
            const bool tcp = src.device.rfind("tcp://", 0) == 0;
            int id = 0;
            if (r.integer(b["unit_id"], p + ".unit_id", id, std::numeric_limits<int>::min(),
                          std::numeric_limits<int>::max())) {
                if (id < 0 || (id > 247 && !(tcp && id == 255))) {
                    r.error(b["unit_id"], p + ".unit_id",
                            fmt::format("sensor '{}': unit_id {} is out of range for Modbus {}", sensor, id,
                                        tcp ? "TCP (0..247 or 255)" : "RTU (0..247)"));
                } else {
                    src.unit_id = id;
                }
            }
        }
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
        if (b["timeout"] && r.duration(b["timeout"], p + ".timeout", src.response_timeout) &&
            src.response_timeout > std::chrono::seconds(60))
            r.error(b["timeout"], p + ".timeout", "at most 60s");
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
    // The kinds are compared as words: `Gas` or ` gas` missed the gas detector's defaults (an alarm
    // at the first reading) and got a fridge's ten minutes instead, without a word.
    if (n["kind"] && r.string(n["kind"], path + ".kind", s.kind)) s.kind = lower_trimmed(s.kind);
    if (n["location"]) r.string(n["location"], path + ".location", s.location);
    if (n["unit"]) {
        r.short_text(n["unit"], path + ".unit", s.unit, kMaxUnitBytes, true);
    } else {
        s.unit = default_unit(s.kind);
    }
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
        read_source(r, n["source"], path + ".source", s.id, s.source);
        if (s.source.kind == SensorSource::Kind::mqtt) {
            s.value_path_given =
                n["source"].IsMap() && n["source"]["mqtt"].IsMap() && n["source"]["mqtt"]["value"];
            if (!s.value_path_given) s.source.value_path = default_value_path(s.kind);
        }
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
                           {"label", "above", "below", "hysteresis", "for", "clear_for", "cooldown",
                            "severity", "schedule"})) {
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
                if (t[i]["label"]) r.short_text(t[i]["label"], key + ".label", th.label, kMaxNameBytes);
                // A door, gas, smoke or leak detector reports a state, 1 or 0 (a Modbus register, a
                // number in JSON): past `above: 0` by 0.5 is a value it never sends, and its first
                // alarm would never end.
                if (s.kind == "door" || s.kind == "gas" || s.kind == "smoke" || s.kind == "leak")
                    th.hysteresis = 0;
                if (t[i]["hysteresis"]) {
                    r.number(t[i]["hysteresis"], key + ".hysteresis", th.hysteresis, 0, 1e6);
                    th.hysteresis_given = true;
                }
                // The same, said at load, for a Modbus sensor whose valid range leaves no value to end
                // on. Not for MQTT: a true/false payload ends without hysteresis (sensor_rules.cpp).
                const bool numbers_only = s.source.kind == SensorSource::Kind::modbus;
                if (numbers_only && t[i]["above"] && s.min_valid && th.value - th.hysteresis < *s.min_valid) {
                    r.error(t[i], key,
                            fmt::format(
                                "above {} with hysteresis {} ends only at or under {}, below valid_range's "
                                "{}: the event could never end",
                                th.value, th.hysteresis, th.value - th.hysteresis, *s.min_valid));
                } else if (numbers_only && t[i]["below"] && s.max_valid &&
                           th.value + th.hysteresis > *s.max_valid) {
                    r.error(t[i], key,
                            fmt::format(
                                "below {} with hysteresis {} ends only at or over {}, above valid_range's "
                                "{}: the event could never end",
                                th.value, th.hysteresis, th.value + th.hysteresis, *s.max_valid));
                }
                // A gas or smoke alarm is a danger now, not a fridge warming through a delivery:
                // without a `for` of its own it raises at the first reading past the limit.
                if (s.kind == "gas" || s.kind == "smoke") th.for_time = Duration::zero();
                if (t[i]["for"]) {
                    r.duration(t[i]["for"], key + ".for", th.for_time, true);
                    th.for_given = true;
                }
                if (t[i]["clear_for"]) r.duration(t[i]["clear_for"], key + ".clear_for", th.clear_for, true);
                if (t[i]["cooldown"]) r.duration(t[i]["cooldown"], key + ".cooldown", th.cooldown, true);
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
           "evidence", "training_frames", "detectors", "models", "sensors", "sensors_mqtt", "api", "public"});
    if (const auto p = root["public"];
        p && r.map(p, "public",
                   {"listen", "hls_dir", "segment", "hours", "flv", "rtmp_push", "max_viewers_per_camera",
                    "max_viewers_per_address", "token_secret", "privacy", "header_timeout", "idle_timeout",
                    "max_connections", "trusted_proxies"})) {
        auto& pub = g.public_side;
        if (p["listen"] && r.string(p["listen"], "public.listen", pub.listen) && !pub.listen.empty())
            check_listen(r, p["listen"], "public.listen", pub.listen);
        if (p["hls_dir"] && r.string(p["hls_dir"], "public.hls_dir", pub.hls_dir)) {
            pub.hls_dir = r.resolve(pub.hls_dir).string();
        }
        if (p["segment"]) r.duration(p["segment"], "public.segment", pub.segment);
        if (p["hours"]) r.string(p["hours"], "public.hours", pub.hours);
        if (p["flv"]) r.boolean(p["flv"], "public.flv", pub.flv);
        if (p["rtmp_push"] && r.string(p["rtmp_push"], "public.rtmp_push", pub.rtmp_push) &&
            !pub.rtmp_push.empty() && pub.rtmp_push.rfind("rtmp://", 0) != 0 &&
            pub.rtmp_push.rfind("rtmps://", 0) != 0) {
            r.error(p["rtmp_push"], "public.rtmp_push", "expected an rtmp:// or rtmps:// URL");
        }
        int n = 0;
        if (p["max_viewers_per_camera"] &&
            r.integer(p["max_viewers_per_camera"], "public.max_viewers_per_camera", n, 1, 100000))
            pub.max_viewers_per_camera = static_cast<std::size_t>(n);
        if (p["max_viewers_per_address"] &&
            r.integer(p["max_viewers_per_address"], "public.max_viewers_per_address", n, 1, 100000))
            pub.max_viewers_per_address = static_cast<std::size_t>(n);
        if (p["max_connections"] && r.integer(p["max_connections"], "public.max_connections", n, 1, 100000))
            pub.max_connections = static_cast<std::size_t>(n);
        if (p["token_secret"] && r.string(p["token_secret"], "public.token_secret", pub.token_secret) &&
            pub.token_secret.size() < 16) {
            // Empty too: written here, a secret was meant (`${KG_VIEWER_SECRET}` set but empty would
            // otherwise open every stream without a token).
            r.error(p["token_secret"], "public.token_secret",
                    pub.token_secret.empty()
                        ? "empty: set a secret of at least 16 random characters, or remove the key to serve "
                          "streams without tokens"
                        : "too short: use at least 16 random characters (e.g. openssl rand -hex 32)");
        }
        if (const auto v = p["privacy"]; v && r.map(v, "public.privacy", {"width", "fps"})) {
            if (v["width"]) r.integer(v["width"], "public.privacy.width", pub.privacy_width, 160, 3840);
            if (v["fps"]) r.integer(v["fps"], "public.privacy.fps", pub.privacy_fps, 1, 30);
        }
        if (p["header_timeout"]) r.duration(p["header_timeout"], "public.header_timeout", pub.header_timeout);
        if (p["idle_timeout"]) r.duration(p["idle_timeout"], "public.idle_timeout", pub.idle_timeout);
        if (p["trusted_proxies"])
            r.trusted_proxies(p["trusted_proxies"], "public.trusted_proxies", pub.trusted_proxies);
    }
    if (const auto a = root["api"];
        a && r.map(a, "api", {"listen", "token", "header_timeout", "idle_timeout"})) {
        if (a["listen"] && r.string(a["listen"], "api.listen", g.api.listen) && !g.api.listen.empty())
            check_listen(r, a["listen"], "api.listen", g.api.listen);
        if (a["token"]) r.string(a["token"], "api.token", g.api.token);
        if (a["header_timeout"]) r.duration(a["header_timeout"], "api.header_timeout", g.api.header_timeout);
        if (a["idle_timeout"]) r.duration(a["idle_timeout"], "api.idle_timeout", g.api.idle_timeout);
    }
    check_listeners_apart(r, root, g);
    if (root["sensors_mqtt"]) read_sensors_broker(r, root["sensors_mqtt"], g.sensors_mqtt);
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
        if (r.map_of_names(m, "models", "a map of model names to manifest files")) {
            for (const auto& [name, key_node, value] : Reader::entries(m)) {
                std::string manifest;
                if (!std::regex_match(name, kIdPattern))
                    r.error(key_node, join("models", name), "not a valid model name");
                if (r.string(value, join("models", name), manifest))
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
    if (root["training_frames"]) read_training_frames(r, root["training_frames"], g.training_frames);

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

std::pair<std::string, std::string> modbus_host_port(std::string authority) {
    authority = authority.substr(0, authority.find_first_of("/?#"));
    if (const auto at = authority.rfind('@'); at != std::string::npos) authority = authority.substr(at + 1);
    std::string host = authority, port = "502";
    if (!authority.empty() && authority.front() == '[') {
        const auto close = authority.find(']');
        host = authority.substr(1, close - 1);
        if (close + 2 < authority.size() && authority[close + 1] == ':') port = authority.substr(close + 2);
    } else if (const auto colon = authority.rfind(':'); colon != std::string::npos) {
        host = authority.substr(0, colon);
        if (colon + 1 < authority.size()) port = authority.substr(colon + 1);
    }
    return {host, port};
}

std::string modbus_connection(const std::string& device) {
    if (starts_with(device, "tcp://")) {
        auto [host, port] = modbus_host_port(device.substr(6));
        host = lower_trimmed(host);
        // "0502" is port 502 too.
        if (const auto digits = port.find_first_not_of('0'); digits != std::string::npos && digits > 0)
            port = port.substr(digits);
        if (host.find(':') != std::string::npos) return fmt::format("tcp://[{}]:{}", host, port);
        return fmt::format("tcp://{}:{}", host, port);
    }
    if (starts_with(device, "rtu:")) {
        std::error_code ec;
        const auto resolved = fs::canonical(device.substr(4), ec);
        if (!ec) return "rtu:" + resolved.string();
    }
    return device;
}

bool valid_id(const std::string& id) { return std::regex_match(id, kIdPattern); }

Gateway load_string(const std::string& yaml, const std::string& source_name) {
    Reader reader(source_name, fs::absolute(fs::path(source_name)).parent_path());
    std::vector<YAML::Node> documents;
    try {
        documents = YAML::LoadAll(yaml);
    } catch (const YAML::ParserException& e) {
        throw ConfigInvalid(
            {{source_name, e.mark.line + 1, e.mark.column + 1, "", "YAML syntax error: " + e.msg}});
    }
    if (documents.empty() || documents.front().IsNull()) {
        throw ConfigInvalid(
            {{source_name, 0, 0, "", "the file is empty: it needs at least site and cameras"}});
    }
    if (documents.size() > 1) {
        // yaml-cpp would silently read the first document only.
        reader.error(documents[1], "", "a second YAML document ('---'): the configuration is one document");
    }
    const YAML::Node& root = documents.front();
    Gateway g;
    try {
        g = read_document(reader, root);
    } catch (const YAML::Exception& e) {
        // A node shape the reader did not expect; still reported with its place.
        reader.errors.push_back({source_name, e.mark.line + 1, e.mark.column + 1, "", e.msg});
    }
    if (!reader.errors.empty()) {
        std::stable_sort(reader.errors.begin(), reader.errors.end(),
                         [](const ConfigError& a, const ConfigError& b) {
                             return std::tie(a.line, a.column) < std::tie(b.line, b.column);
                         });
        throw ConfigInvalid(std::move(reader.errors));
    }
    g.source_file = source_name;
    g.environment = std::move(reader.variables);
    return g;
}

Gateway load_file(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec))
        throw ConfigInvalid({{path, 0, 0, "", "cannot read the file: it is a folder"}});
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw ConfigInvalid(
            {{path, 0, 0, "", fmt::format("cannot read the file: {}", std::strerror(errno))}});
    }
    std::stringstream text;
    text << in.rdbuf();
    if (in.bad()) throw ConfigInvalid({{path, 0, 0, "", "cannot read the file: read error"}});
    return load_string(text.str(), path);
}

std::vector<std::string> doubts(const Gateway& g) {
    std::vector<std::string> out;
    // The public feeds, the push among them, are made only with the public side on.
    if (!g.public_side.rtmp_push.empty() && g.public_side.listen.empty()) {
        out.push_back(
            "public.rtmp_push is set but public.listen is not: the public side is off, and nothing is pushed "
            "(listen on 127.0.0.1 to keep the box's own page private)");
    }
    // A pixel format is asked of a V4L2 device only: a network camera or a file sends what it sends.
    for (const auto& cam : g.cameras) {
        if (cam.input.format.empty() || names_v4l2_device(cam.url)) continue;
        out.push_back(
            fmt::format("camera '{}': input.format ({}) is for V4L2 devices (/dev/videoN) only: ignored "
                        "for its URL",
                        cam.id, cam.input.format));
    }
    // A kind without a field of its own reads `temperature` by default, which for a door or a kind
    // of the site's own is most likely not its number.
    for (const auto& sensor : g.sensors) {
        if (sensor.source.kind != SensorSource::Kind::mqtt || sensor.value_path_given ||
            sensor.source.value_path != "temperature" || sensor.kind == "temperature")
            continue;
        out.push_back(fmt::format(
            "sensor '{}' (kind {}) reads the 'temperature' field of its payload (no source.mqtt.value "
            "given): "
            "name the field that holds its reading{}",
            sensor.id, sensor.kind.empty() ? "none" : sensor.kind,
            sensor.kind == "door" ? " (Zigbee2MQTT's 'contact' is true when the door is closed)" : ""));
    }
    // A detector's own field is true/false in Zigbee2MQTT (1 or 0 here): a threshold set for a
    // concentration (above 20 %LEL, 1000 ppm) never fires on it.
    for (const auto& sensor : g.sensors) {
        if (sensor.source.kind != SensorSource::Kind::mqtt || sensor.value_path_given ||
            (sensor.kind != "gas" && sensor.kind != "smoke" && sensor.kind != "leak"))
            continue;
        for (const auto& t : sensor.thresholds) {
            if (!(t.above && t.value >= 1) && !(!t.above && t.value > 1)) continue;
            out.push_back(fmt::format(
                "sensor '{}': threshold '{}' ({} {}) is for a measured amount, but the sensor reads its "
                "payload's '{}', which Zigbee2MQTT detectors send as true/false (1 or 0): it never fires; "
                "name the field that holds the amount in source.mqtt.value",
                sensor.id, t.label, t.above ? "above" : "below", t.value, sensor.source.value_path));
            break;
        }
    }
    // Limits a valid reading can never cross, or always has: the rule can never say anything (a
    // reading past valid_range is an `invalid` event, not a value the rules judge).
    for (const auto& sensor : g.sensors) {
        const auto range =
            fmt::format("valid_range [{}, {}]", sensor.min_valid ? fmt::format("{}", *sensor.min_valid) : "",
                        sensor.max_valid ? fmt::format("{}", *sensor.max_valid) : "");
        if (sensor.disinfection && sensor.max_valid && sensor.disinfection->setpoint > *sensor.max_valid) {
            out.push_back(fmt::format(
                "sensor '{}': disinfection.setpoint {} is above its {}: no valid reading reaches it, so no "
                "cycle ever counts and every window is a missed cycle",
                sensor.id, sensor.disinfection->setpoint, range));
        }
        if (sensor.source.unit_id == 0 && sensor.source.device.rfind("rtu:", 0) == 0) {
            out.push_back(fmt::format(
                "sensor '{}': unit_id 0 is the broadcast address on a serial line: no unit answers it, so "
                "the sensor is never read (give the unit's own address, 1..247)",
                sensor.id));
        }
        // A cycle counts while the value is at or above the set point: with the set point at or below
        // the lowest valid reading, a cold cabinet reads as one disinfecting all the time.
        if (sensor.disinfection && sensor.min_valid && sensor.disinfection->setpoint <= *sensor.min_valid) {
            out.push_back(fmt::format(
                "sensor '{}': disinfection.setpoint {} is at or below the min of its {}: every valid reading "
                "is hot, so the cabinet always reads as disinfecting and a missed cycle is never raised",
                sensor.id, sensor.disinfection->setpoint, range));
        }
        for (const auto& th : sensor.thresholds) {
            const bool never = th.above ? sensor.max_valid && th.value >= *sensor.max_valid
                                        : sensor.min_valid && th.value <= *sensor.min_valid;
            const bool always = th.above ? sensor.min_valid && th.value < *sensor.min_valid
                                         : sensor.max_valid && th.value > *sensor.max_valid;
            if (!never && !always) continue;
            out.push_back(fmt::format(
                "sensor '{}': threshold '{}' ({} {}) lies outside its {}: {} valid reading "
                "is {} it, so '{}' is {}",
                sensor.id, th.label, th.above ? "above" : "below", th.value, range, never ? "no" : "every",
                th.above ? "above" : "below", th.label, never ? "never raised" : "raised for good"));
        }
    }
    // A kind the gateway does not know gives its thresholds a measurement's defaults. For a detector
    // named otherwise (`lpg`, `smoke_detector`) that is an alarm ten minutes late, or one whose end
    // waits for a value past 0 that it never sends.
    for (const auto& sensor : g.sensors) {
        if (known_kind(sensor.kind)) continue;
        const bool defaults =
            std::any_of(sensor.thresholds.begin(), sensor.thresholds.end(),
                        [](const Threshold& th) { return !th.for_given || !th.hysteresis_given; });
        if (!defaults) continue;
        out.push_back(fmt::format(
            "sensor '{}': kind '{}' is not one the gateway knows ({}), so its thresholds wait the default "
            "`for` (10m) and end past the limit by the default hysteresis (0.5), as a fridge's do: a gas or "
            "smoke detector is kind gas or smoke (an alarm at once), a door contact or leak detector kind "
            "door "
            "or leak; or give `for` and `hysteresis` in each threshold",
            sensor.id, sensor.kind, fmt::join(kKnownKinds, ", ")));
    }
    // `not` of a schedule active all week: a rule under it never applies (or only on holidays),
    // and nothing says so.
    for (const auto& schedule : g.schedules) {
        if (!schedule.inverted) continue;
        rules::Schedule windows{schedule.name, schedule.days, {}, schedule.on_holidays, schedule.inverted};
        try {
            for (const auto& t : schedule.times) windows.windows.push_back(rules::parse_window(t));
        } catch (const std::invalid_argument&) {
            continue;  // an error of its own
        }
        if (rules::never_active(windows)) {
            out.push_back(
                fmt::format("schedule '{}' is the 'not' of a schedule active all week, so it is {}: a rule "
                            "under it {}",
                            schedule.name, schedule.on_holidays ? "never active" : "active on holidays only",
                            schedule.on_holidays ? "never applies" : "applies on holidays only"));
        }
    }
    // A disinfection window is judged when it ends: one that never does never raises a missed cycle.
    for (const auto& sensor : g.sensors) {
        if (!sensor.disinfection) continue;
        const auto& name = sensor.disinfection->schedule;
        const auto it = std::find_if(g.schedules.begin(), g.schedules.end(),
                                     [&](const Schedule& s) { return s.name == name; });
        if (it == g.schedules.end()) continue;
        rules::Schedule windows{it->name, it->days, {}, it->on_holidays, it->inverted};
        try {
            for (const auto& t : it->times) windows.windows.push_back(rules::parse_window(t));
        } catch (const std::invalid_argument&) {
            continue;  // an error of its own
        }
        if (rules::never_ends(windows)) {
            out.push_back(fmt::format(
                "sensor '{}': disinfection.schedule '{}' is active all week, so its window never ends and a "
                "missed cycle is never judged: give the windows a cycle must run in, e.g. the hour after "
                "each "
                "meal",
                sensor.id, name));
        }
    }
    return out;
}

}  // namespace kg::config
