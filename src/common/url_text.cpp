#include "common/url_text.hpp"

#include <algorithm>

namespace kg {

std::string without_password(const std::string& url) {
    const auto scheme = url.find("://");
    if (scheme == std::string::npos) return url;
    const auto host_start = scheme + 3;
    const auto authority_end = std::min(url.find_first_of("/?#", host_start), url.size());
    const auto at = url.rfind('@', authority_end - 1);
    if (at == std::string::npos || at < host_start) return url;
    const auto colon = url.find(':', host_start);
    if (colon == std::string::npos || colon > at) return url;
    return url.substr(0, colon + 1) + "***" + url.substr(at);
}

bool names_v4l2_device(const std::string& url) {
    for (const char* prefix : {"v4l2://", "/dev/video", "/dev/v4l/"}) {
        if (url.rfind(prefix, 0) == 0) return true;
    }
    return false;
}

}  // namespace kg
