#pragma once
// Who a request comes from when a reverse proxy (TLS in front, a CDN, a tunnel) stands between the
// client and the server. Every request then has the proxy's address, so the caps and the password
// throttle that count per address would count every client as one. The proxies named here are
// believed about the client (`X-Forwarded-For`) and the scheme it used (`X-Forwarded-Proto`); any
// other peer is the client itself, whatever it sends, so a client cannot choose the address it is
// counted under by writing a header.

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>
#include <boost/beast/http/fields.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace kg::web {

class TrustedProxies {
public:
    TrustedProxies() = default;  // none: every peer is the client

    // "127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8". Throws std::invalid_argument naming the entry
    // and what is wrong with it.
    static TrustedProxies parse(const std::vector<std::string>& entries);
    // The reason `entry` is not an address or network, or empty when it is one.
    static std::string problem(std::string_view entry);

    bool empty() const { return networks_.empty(); }
    bool contains(const boost::asio::ip::address& address) const;

    // The client of a request `peer` sent: `peer` itself unless it is a trusted proxy; then the
    // nearest address in `X-Forwarded-For` (every such field, in order) that is not a trusted proxy,
    // read from the right, as each proxy appends the address it saw. An entry that is not an address
    // ends the walk at the proxy that wrote it: what lies left of it is what a client wrote.
    std::string client(const std::string& peer, const boost::beast::http::fields& headers) const;

    // Whether the client reached the proxy in front over https, as `X-Forwarded-Proto` says: its last
    // value (every such field, in order, as one list), the one the nearest proxy wrote, whether it
    // replaced the field (nginx's proxy_set_header, Traefik) or added to what came (HAProxy's
    // add-header): a value left of it is what someone before that proxy wrote. With proxies listed,
    // only a listed `peer` is believed: any other is a client connected straight, over plain HTTP,
    // whatever it writes. With none listed, every peer is, as before the list existed (a TLS proxy
    // in front is all docs/monitor.md asks for a Secure cookie): the server cannot tell its proxy
    // from a client then, and a client that claims https only gets a cookie its own browser drops.
    bool forwarded_https(const std::string& peer, const boost::beast::http::fields& headers) const;

private:
    std::vector<std::variant<boost::asio::ip::network_v4, boost::asio::ip::network_v6>> networks_;
};

// An address as the caps count it: an IPv4 address reached over an IPv6 socket ("::ffff:10.0.0.1")
// is the IPv4 one.
boost::asio::ip::address canonical(const boost::asio::ip::address& address);

// What a client is counted as by the per-address caps and the password throttle: its IPv4 address,
// or its IPv6 /64 ("2001:db8:1:2::/64"). One household or one host has a whole /64 and picks any
// address in it, so counting each IPv6 address alone would give it as many places and guesses as
// it likes. Text that is not an address is returned as it is.
std::string address_block(const std::string& client);

}  // namespace kg::web
