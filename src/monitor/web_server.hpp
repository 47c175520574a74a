#pragma once
// The dashboard's HTTP/1.1 server on Boost.Beast, with one thing the gateway's HttpServer
// (src/web/) does not do: Server-Sent Events. A handler answers a request with a whole response,
// or asks for the connection to become an event stream; streams then receive what EventHub
// broadcasts. Reads have timeouts and size limits, connections are capped in total and per
// address (the connection handling both servers share: web/http_connection.hpp), a stream that
// cannot keep up is closed (the browser reconnects and reloads its lists).

#include <spdlog/logger.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "web/http_connection.hpp"

namespace kg::monitor {

namespace http = boost::beast::http;
using Request = web::Request;
using Response = web::Response;

struct WebLimits {
    web::Limits http = [] {
        web::Limits l;
        l.max_per_address = 32;
        return l;
    }();
    std::size_t stream_queue = 256;  // frames a slow stream may have pending before it is closed
    std::chrono::milliseconds ping_interval{15000};  // keeps proxies from closing idle streams
};

struct Reply {
    Response response;
    bool event_stream = false;  // true: ignore `response`, turn the connection into an SSE stream
    // With `event_stream`: whether its sign-in still holds, asked before each keep-alive ping; false
    // ends the stream (signed out, session expired, operator removed). Empty: never asked.
    std::function<bool()> still_signed_in = {};
    // A sign-out: the streams' sign-ins are asked at once, not at the next ping (up to 15 s later).
    bool signed_out = false;
};

// Who sent a request, as far as the server believes it (web::TrustedProxies).
struct Sender {
    std::string client;  // the peer, or behind a trusted proxy the client it forwards
    bool https = false;  // the client reached the TLS proxy in front over https (X-Forwarded-Proto)
};

using WebHandler = std::function<Reply(const Request&, const Sender& from)>;

class StreamSession;

// Fan-out of server-sent events to every open stream. broadcast() may be called from any thread.
class EventHub {
public:
    void broadcast(const std::string& event, const std::string& data);
    void add(const std::shared_ptr<StreamSession>& s);
    std::size_t streams();
    // A ready-made frame (e.g. an SSE comment used as a keep-alive).
    void send(const std::shared_ptr<const std::string>& frame);
    // Ends the streams whose sign-in no longer holds (Reply::still_signed_in), on the caller's thread:
    // the server's ping, while the server (and what the checks refer to) is alive.
    void end_signed_out();

private:
    std::mutex mutex_;
    std::vector<std::weak_ptr<StreamSession>> sessions_;
};

class WebServer {
public:
    // Throws std::runtime_error naming the address when it cannot listen.
    WebServer(boost::asio::io_context& io, const std::string& listen, WebLimits limits, WebHandler handler,
              std::shared_ptr<EventHub> hub, std::shared_ptr<spdlog::logger> log);
    ~WebServer();
    void start();
    void stop();
    unsigned short port() const;

    struct Shared;

private:
    void ping();

    std::shared_ptr<Shared> shared_;
    web::Listener listener_;
    boost::asio::steady_timer ping_timer_;
};

Response make_response(const Request& req, http::status status, std::string body,
                       const std::string& content_type = "text/plain; charset=utf-8");

// {"error": message} as application/json: every refusal of the room's, so a client reads one shape
// whether the API refused the request or the server could not read it (413, 431, 400).
Response error_response(const Request& req, http::status status, const std::string& message);

}  // namespace kg::monitor
