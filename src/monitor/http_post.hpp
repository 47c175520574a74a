#pragma once
// One HTTP(S) POST with a deadline, for the notifier's webhooks: resolve, connect, TLS (the server's
// certificate checked against the system's CAs or a given one, and its name against the host),
// send, read the answer (at most 64 KiB of it). Blocking: called from the notifier's own thread.

#include <chrono>
#include <optional>
#include <string>

namespace kg::monitor {

struct WebUrl {
    bool tls = false;
    std::string host;  // without the brackets of an IPv6 literal
    std::string port;  // "80" / "443" when the URL has none
    std::string target = "/";
};

// nullopt when `url` is not http(s)://host[:port][/path][?query].
std::optional<WebUrl> parse_web_url(const std::string& url);

struct HttpAnswer {
    int status = 0;     // 0: no answer (error says why)
    std::string body;   // the answer's body, cut at 64 KiB
    std::string error;  // what failed: "connect: Connection refused", "timed out after 10 s", ...
};

// Never throws for a network failure: the answer says what went wrong.
HttpAnswer http_post(const WebUrl& url, const std::string& body, const std::string& content_type,
                     std::chrono::milliseconds timeout, const std::string& ca_file = {});

}  // namespace kg::monitor
