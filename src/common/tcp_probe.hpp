#pragma once
// Why a TCP connection cannot be made, as an installer can act on it. Paho says "TCP/TLS connect
// failure" alike for a broker that is not running, a wrong port, a firewall that drops the packets
// and a TLS port spoken to in plain MQTT (the 61st session's installer review): one connect of our
// own, made after such a failure, tells them apart.

#include <chrono>
#include <string>

namespace kg {

// The outcome of one TCP connect to `host` port `port` (a number or a service name), waiting at most
// `timeout`: "connection refused ...", "no answer within ...", "cannot resolve ...", "no route ...",
// or, when the connection is made, that it was (the failure is past TCP: TLS or MQTT).
std::string tcp_probe(const std::string& host, const std::string& port, std::chrono::milliseconds timeout);

// The host and port of a broker URL (tcp://, mqtt://, ssl://, mqtts://; [IPv6] too), with MQTT's
// port for the scheme (1883, or 8883 for TLS) when it names none.
std::pair<std::string, std::string> broker_host_port(const std::string& url);

}  // namespace kg
