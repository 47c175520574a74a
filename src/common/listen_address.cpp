#include "common/listen_address.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace kg {

std::optional<ListenAddress> parse_listen_address(std::string_view text, std::string* error) {
    const auto fail = [&](const std::string& why) -> std::optional<ListenAddress> {
        if (error != nullptr) *error = why;
        return std::nullopt;
    };
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail("no :port");
    const std::string_view port = text.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c) != 0; }))
        return fail(fmt::format("'{}' is not a port number", port));
    const int number = std::stoi(std::string(port));
    if (number > 65535) return fail(fmt::format("port {} is beyond 65535", number));

    ListenAddress out;
    out.port = static_cast<unsigned short>(number);
    std::string_view host = text.substr(0, colon);
    const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
    if (bracketed) host = host.substr(1, host.size() - 2);
    out.host = std::string(host);
    out.v6 = bracketed;
    if (host.empty() && !bracketed) return out;
    unsigned char buffer[sizeof(struct in6_addr)];
    if (inet_pton(bracketed ? AF_INET6 : AF_INET, out.host.c_str(), buffer) != 1) {
        if (bracketed) return fail(fmt::format("'{}' is not an IPv6 address", host));
        if (host.find(':') != std::string_view::npos)
            return fail(fmt::format("'{}': an IPv6 address goes in brackets, [{}]:{}", host, host, port));
        return fail(fmt::format("'{}' is not an IPv4 address (a host name cannot be listened on)", host));
    }
    return out;
}

}  // namespace kg
