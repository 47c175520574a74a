#pragma once
// The one notion of a listening address, for the configuration checks (gateway and monitor) and
// the HTTP servers that bind it, so that what a check accepts is what a server can bind.

#include <optional>
#include <string>
#include <string_view>

namespace kg {

struct ListenAddress {
    std::string host;  // an IPv4 or IPv6 address without brackets; empty: every address
    bool v6 = false;
    unsigned short port = 0;  // 0: one the system picks
};

// "127.0.0.1:8080", "0.0.0.0:8081", "[::]:8081", "[::1]:8080", ":8080". A host name, an IPv6 address
// without brackets, or a port beyond 65535 is refused, and `error` (if given) says which part.
std::optional<ListenAddress> parse_listen_address(std::string_view text, std::string* error = nullptr);

}  // namespace kg
