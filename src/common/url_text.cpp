#include "common/url_text.hpp"

#include <algorithm>
#include <string_view>

namespace kg {

namespace {

struct Authority {
    std::size_t start = std::string::npos;  // after "://"; npos when the text has no scheme
    std::size_t end = 0;                    // the first '/', '?' or '#' after it, or the size
    std::size_t at = std::string::npos;     // its last '@'
};

Authority authority_of(const std::string& url) {
    Authority a;
    const auto scheme = url.find("://");
    if (scheme == std::string::npos) return a;
    a.start = scheme + 3;
    a.end = std::min(url.find_first_of("/?#", a.start), url.size());
    const auto at = url.rfind('@', a.end == 0 ? 0 : a.end - 1);
    if (at != std::string::npos && at >= a.start && at < a.end) a.at = at;
    return a;
}

// HOST, HOST:PORT or [IPv6]:PORT: what may follow the user information.
bool host_and_port(std::string_view text) {
    if (!text.empty() && text.front() == '[') return true;  // an IPv6 address: its ':' are not a port's
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return true;
    const auto port = text.substr(colon + 1);
    return !port.empty() &&
           std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

bool account_breaks_authority(const std::string& url) {
    const auto a = authority_of(url);
    if (a.start == std::string::npos || a.end >= url.size()) return false;
    const auto host_from = a.at == std::string::npos ? a.start : a.at + 1;
    if (host_and_port(std::string_view(url).substr(host_from, a.end - host_from))) return false;
    return url.find('@', a.end) != std::string::npos;
}

bool at_after_authority(const std::string& url) {
    const auto a = authority_of(url);
    return a.start != std::string::npos && url.find(':', a.start) < a.end &&
           url.find('@', a.end) != std::string::npos;
}

std::string without_password(const std::string& url) {
    const auto a = authority_of(url);
    if (a.start == std::string::npos) return url;
    const auto colon = url.find(':', a.start);
    if (colon == std::string::npos || colon >= a.end) return url;
    if (url[a.start] == '[' && a.at == std::string::npos) return url;  // an IPv6 host, no account
    // An '@' after the authority may end a password that holds '/', '?' or '#' (rtsp://admin:p@ss/wd@cam/):
    // then the standard reading would show most of it.
    if (a.at != std::string::npos && url.find('@', a.end) == std::string::npos) {
        if (colon > a.at) return url;  // a user name only: rtsp://admin@host:554/
        return url.substr(0, colon + 1) + "***" + url.substr(a.at);
    }
    // A ':' in the authority and an '@' after it: a password with '/', '?' or '#' in it, or a path
    // or query holding an '@' (rtsp://cam:554/live@main, hidden too: better than a password shown).
    const auto last_at = url.rfind('@');
    if (last_at == std::string::npos || last_at < a.end) return url;
    return url.substr(0, colon + 1) + "***" + url.substr(last_at);
}

bool names_v4l2_device(const std::string& url) {
    for (const char* prefix : {"v4l2://", "/dev/video", "/dev/v4l/"}) {
        if (url.rfind(prefix, 0) == 0) return true;
    }
    return false;
}

}  // namespace kg
