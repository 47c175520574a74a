#include "web/trusted_proxies.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/beast/core/string.hpp>
#include <charconv>
#include <iterator>
#include <stdexcept>

#include "web/field_value.hpp"

namespace kg::web {

namespace ip = boost::asio::ip;

namespace {

std::optional<ip::address> address_of(std::string_view text) {
    boost::system::error_code ec;
    const auto a = ip::make_address(std::string(text), ec);
    if (ec) return std::nullopt;
    return canonical(a);
}

// An X-Forwarded-For entry: an address, as most proxies write it, or with a port ("1.2.3.4:5678",
// "[2001:db8::1]:5678"), as some do.
std::optional<ip::address> forwarded_address(std::string_view entry) {
    entry = without_ows(entry);
    if (entry.size() > 2 && entry.front() == '[') {
        const auto close = entry.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        return address_of(entry.substr(1, close - 1));
    }
    if (const auto colon = entry.find(':');
        colon != std::string_view::npos && entry.find(':', colon + 1) == std::string_view::npos)
        entry = entry.substr(0, colon);  // IPv4 with a port: an IPv6 address has two colons or more
    return address_of(entry);
}

}  // namespace

ip::address canonical(const ip::address& address) {
    if (!address.is_v6()) return address;
    auto v6 = address.to_v6();
    if (v6.is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, v6);
    // A link-local peer carries its interface; a network written in the configuration does not, and
    // Boost compares it.
    v6.scope_id(0);
    return v6;
}

std::string address_block(const std::string& client) {
    const auto a = address_of(client);
    if (!a || a->is_v4()) return a ? a->to_string() : client;
    return ip::make_network_v6(a->to_v6(), 64).canonical().to_string();
}

std::string TrustedProxies::problem(std::string_view entry) {
    const auto slash = entry.find('/');
    const std::string_view host = entry.substr(0, slash);
    boost::system::error_code ec;
    const auto a = ip::make_address(std::string(host), ec);
    if (ec) return fmt::format("'{}' is not an IP address (a host name cannot be matched)", host);
    if (slash == std::string_view::npos) return {};
    const std::string_view bits = entry.substr(slash + 1);
    const unsigned max = a.is_v4() ? 32 : 128;
    unsigned prefix = 0;
    const auto [end, err] = std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
    if (bits.empty() || err != std::errc() || end != bits.data() + bits.size() || prefix > max)
        return fmt::format("'/{}' is not a prefix length of 0 to {}", bits, max);
    return {};
}

TrustedProxies TrustedProxies::parse(const std::vector<std::string>& entries) {
    TrustedProxies out;
    for (const auto& entry : entries) {
        if (auto why = problem(entry); !why.empty())
            throw std::invalid_argument(fmt::format("trusted proxy '{}': {}", entry, why));
        const auto slash = entry.find('/');
        const auto written = ip::make_address(entry.substr(0, slash));
        auto bits =
            slash == std::string::npos ? (written.is_v4() ? 32 : 128) : std::stoi(entry.substr(slash + 1));
        // "::ffff:10.0.0.1" (as a dual-stack listener's logs print an IPv4 peer) is the IPv4 address
        // peers are matched as.
        const auto a = canonical(written);
        if (written.is_v6() && a.is_v4()) bits = std::max(0, bits - 96);
        // The network of the address's prefix: "10.1.2.3/8" is 10.0.0.0/8, as it is meant.
        if (a.is_v4())
            out.networks_.emplace_back(
                ip::make_network_v4(a.to_v4(), static_cast<unsigned short>(bits)).canonical());
        else
            out.networks_.emplace_back(
                ip::make_network_v6(a.to_v6(), static_cast<unsigned short>(bits)).canonical());
    }
    return out;
}

bool TrustedProxies::contains(const ip::address& given) const {
    const auto a = canonical(given);
    for (const auto& n : networks_) {
        if (const auto* v4 = std::get_if<ip::network_v4>(&n)) {
            if (a.is_v4() && ip::make_network_v4(a.to_v4(), v4->prefix_length()).canonical() == *v4)
                return true;
        } else {
            const auto& v6 = std::get<ip::network_v6>(n);
            if (a.is_v6() && ip::make_network_v6(a.to_v6(), v6.prefix_length()).canonical() == v6)
                return true;
        }
    }
    return false;
}

std::string TrustedProxies::client(const std::string& peer, const boost::beast::http::fields& headers) const {
    if (networks_.empty()) return peer;
    auto current = address_of(peer);
    if (!current || !contains(*current)) return peer;
    // Every X-Forwarded-For field, in order, as one list (RFC 9110 5.3), then read from its end.
    std::vector<std::string_view> entries;
    const auto [first, last] = headers.equal_range("X-Forwarded-For");
    for (auto field = first; field != last; ++field) {
        const std::string_view list(field->value().data(), field->value().size());
        for (std::size_t start = 0;;) {
            const auto comma = list.find(',', start);
            entries.push_back(list.substr(start, comma == std::string_view::npos ? comma : comma - start));
            if (comma == std::string_view::npos) break;
            start = comma + 1;
        }
    }
    for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
        const auto next = forwarded_address(*it);
        if (!next) break;  // written by someone the proxy does not vouch for
        current = next;
        if (!contains(*current)) break;
    }
    return current->to_string();
}

bool TrustedProxies::forwarded_https(const std::string& peer,
                                     const boost::beast::http::fields& headers) const {
    if (!networks_.empty()) {
        const auto a = address_of(peer);
        if (!a || !contains(*a)) return false;
    }
    const auto [first, last] = headers.equal_range("X-Forwarded-Proto");
    if (first == last) return false;
    const std::string_view list(std::prev(last)->value().data(), std::prev(last)->value().size());
    const auto comma = list.rfind(',');
    const auto value = without_ows(comma == std::string_view::npos ? list : list.substr(comma + 1));
    return boost::beast::iequals(boost::beast::string_view(value.data(), value.size()), "https");
}

}  // namespace kg::web
