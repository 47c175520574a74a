#include "common/mqtt_topic.hpp"

#include <string_view>
#include <vector>

namespace kg {
namespace {

std::vector<std::string_view> levels(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t at = 0;
    for (;;) {
        const auto slash = s.find('/', at);
        out.push_back(s.substr(at, slash == std::string_view::npos ? std::string_view::npos : slash - at));
        if (slash == std::string_view::npos) return out;
        at = slash + 1;
    }
}

}  // namespace

std::string topic_prefix_problem(const std::string& prefix) {
    if (prefix.empty()) return "empty";
    if (prefix.size() > 1024) return "longer than 1024 bytes";
    if (prefix.find('\0') != std::string::npos) return "contains a NUL character";
    if (prefix.find_first_of("#+") != std::string::npos) return "contains a wildcard ('#' or '+')";
    if (prefix.front() == '$') return "starts with '$' (topics the broker keeps for itself)";
    for (const auto level : levels(prefix)) {
        if (level.empty()) return "has an empty level (a leading, trailing or double '/')";
    }
    return {};
}

bool tls_broker_url(const std::string& url) {
    return url.starts_with("ssl://") || url.starts_with("mqtts://") || url.starts_with("wss://");
}

std::string tls_settings_problem(const std::string& url, const std::string& shown) {
    if (tls_broker_url(url)) return {};
    return "TLS settings for '" + shown + "', which is not a TLS URL: use ssl://, mqtts:// or wss://";
}

std::string topic_filter_problem(const std::string& filter) {
    if (filter.empty()) return "an empty topic filter";
    if (filter.size() > 65535) return "longer than MQTT allows (65535 bytes)";
    if (filter.find('\0') != std::string::npos) return "contains a NUL character";
    const auto parts = levels(filter);
    for (std::size_t i = 0; i < parts.size(); ++i) {
        const auto level = parts[i];
        if (level.find('#') != std::string_view::npos && (level != "#" || i + 1 != parts.size()))
            return "'#' must be a whole level and the last one (like a/#)";
        if (level.find('+') != std::string_view::npos && level != "+")
            return "'+' must be a whole level (like a/+/b)";
    }
    return {};
}

bool topic_matches(const std::string& filter, const std::string& topic) {
    if (!topic.empty() && topic[0] == '$' && !filter.empty() && (filter[0] == '+' || filter[0] == '#'))
        return false;
    const auto f = levels(filter);
    const auto t = levels(topic);
    for (std::size_t i = 0; i < f.size(); ++i) {
        if (f[i] == "#") return true;  // the rest, including no level at all
        if (i >= t.size()) return false;
        if (f[i] != "+" && f[i] != t[i]) return false;
    }
    return f.size() == t.size();
}

}  // namespace kg
