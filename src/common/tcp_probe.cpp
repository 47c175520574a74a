#include "common/tcp_probe.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "common/fd.hpp"

namespace kg {

namespace {

struct AddrinfoFree {
    void operator()(addrinfo* a) const { freeaddrinfo(a); }
};

// One address's connect: 0 when made, else the errno (ETIMEDOUT when `timeout` ran out).
int connect_one(const addrinfo& a, std::chrono::milliseconds timeout) {
    Fd fd(::socket(a.ai_family, a.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a.ai_protocol));
    if (fd.get() < 0) return errno;
    if (::connect(fd.get(), a.ai_addr, a.ai_addrlen) == 0) return 0;
    if (errno != EINPROGRESS) return errno;
    pollfd p{fd.get(), POLLOUT, 0};
    int n = 0;
    do {
        n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    } while (n < 0 && errno == EINTR);
    if (n == 0) return ETIMEDOUT;
    if (n < 0) return errno;
    int error = 0;
    socklen_t len = sizeof error;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) return errno;
    return error;
}

}  // namespace

std::string tcp_probe(const std::string& host, const std::string& port, std::chrono::milliseconds timeout) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0)
        return fmt::format("cannot resolve '{}': {} (a wrong name, or no DNS on this box)", host,
                           gai_strerror(rc));
    const std::unique_ptr<addrinfo, AddrinfoFree> list(found);
    const auto where = fmt::format("{} port {}", host, port);
    int error = 0;
    for (const addrinfo* a = list.get(); a != nullptr; a = a->ai_next) {
        error = connect_one(*a, timeout);
        if (error == 0)
            return fmt::format(
                "a TCP connection to {} is made: the failure is past it, in TLS or MQTT (a TLS port "
                "given as mqtt://, a plain one as mqtts://, or not a broker's port)",
                where);
    }
    switch (error) {
        case ECONNREFUSED:
            return fmt::format(
                "connection refused by {}: nothing listens there (the broker is not running, or "
                "another port)",
                where);
        case ETIMEDOUT:
            return fmt::format(
                "no answer from {} within {:.1f} s (a firewall dropping the packets, a wrong "
                "address, or its host down)",
                where, std::chrono::duration<double>(timeout).count());
        case EHOSTUNREACH:
        case ENETUNREACH:
            return fmt::format("no route to {}: {} (this box's network or gateway, or a wrong address)",
                               where, std::strerror(error));
        default:
            return fmt::format("cannot connect to {}: {}", where, std::strerror(error));
    }
}

std::pair<std::string, std::string> broker_host_port(const std::string& url) {
    const auto scheme_end = url.find("://");
    const std::string scheme = scheme_end == std::string::npos ? "tcp" : url.substr(0, scheme_end);
    std::string rest = scheme_end == std::string::npos ? url : url.substr(scheme_end + 3);
    rest = rest.substr(0, rest.find_first_of("/?#"));
    if (const auto at = rest.rfind('@'); at != std::string::npos) rest = rest.substr(at + 1);
    const bool tls = scheme == "ssl" || scheme == "mqtts" || scheme == "tls";
    std::string host = rest, port = tls ? "8883" : "1883";
    if (!rest.empty() && rest.front() == '[') {
        const auto close = rest.find(']');
        host = rest.substr(1, close == std::string::npos ? std::string::npos : close - 1);
        if (close != std::string::npos && close + 2 < rest.size() && rest[close + 1] == ':')
            port = rest.substr(close + 2);
    } else if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
        host = rest.substr(0, colon);
        if (colon + 1 < rest.size()) port = rest.substr(colon + 1);
    }
    return {host, port};
}

}  // namespace kg
