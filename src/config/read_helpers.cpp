#include "config/read_helpers.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <regex>

#include "common/url_text.hpp"

namespace kg::config {

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

namespace detail {

const std::regex kIdPattern("^[A-Za-z0-9_-]{1,64}$");

std::string Reader::unknown_key_message(const std::string& key, std::initializer_list<const char*> allowed) {
    if (key == "<<")
        return "YAML merge keys ('<<') are not supported: put shared camera settings in 'defaults'";
    const auto closest = closest_key(key, allowed);
    return fmt::format("unknown key '{}'{}", key,
                       closest ? fmt::format(" (did you mean '{}'?)", *closest) : "");
}

bool starts_with(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }

std::string shown(const std::string& url) {
    const std::string out = without_password(url);
    std::string printable;
    for (const unsigned char c : out) {
        printable +=
            c < 0x20 || c == 0x7f ? fmt::format("\\x{:02x}", c) : std::string(1, static_cast<char>(c));
    }
    return printable;
}

std::string check_authority(const std::string& rest) {
    // Said before the port: what would be read as the port is a piece of the password.
    if (account_breaks_authority("x://" + rest)) {
        return "the host seems to end inside the user name or password: write a '/', '?' or '#' in them "
               "percent-encoded (%2F, %3F, %23)";
    }
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

}  // namespace detail

bool valid_id(const std::string& id) { return std::regex_match(id, detail::kIdPattern); }

}  // namespace kg::config
