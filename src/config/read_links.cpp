// The gateway's links: the MQTT broker it publishes to (its URL, account and TLS), the broker its
// sensors publish to, the public side's and the local API's HTTP servers and their listen addresses.
#include <fmt/format.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/listen_address.hpp"
#include "common/mqtt_topic.hpp"
#include "config/read_sections.hpp"

namespace kg::config::detail {
namespace {

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

// Paho's own defaults apply to a URL without a port (1883, 8883, 80, 443 by scheme).
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

}  // namespace

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

void read_public(Reader& r, const YAML::Node& p, Public& pub) {
    if (!r.map(p, "public",
               {"listen", "hls_dir", "segment", "hours", "flv", "rtmp_push", "max_viewers_per_camera",
                "max_viewers_per_address", "token_secret", "privacy", "header_timeout", "idle_timeout",
                "max_connections", "trusted_proxies"})) {
        return;
    }
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

void read_api(Reader& r, const YAML::Node& a, Api& api) {
    if (!r.map(a, "api", {"listen", "token", "header_timeout", "idle_timeout"})) return;
    if (a["listen"] && r.string(a["listen"], "api.listen", api.listen) && !api.listen.empty())
        check_listen(r, a["listen"], "api.listen", api.listen);
    if (a["token"]) r.string(a["token"], "api.token", api.token);
    if (a["header_timeout"]) r.duration(a["header_timeout"], "api.header_timeout", api.header_timeout);
    if (a["idle_timeout"]) r.duration(a["idle_timeout"], "api.idle_timeout", api.idle_timeout);
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

}  // namespace kg::config::detail
