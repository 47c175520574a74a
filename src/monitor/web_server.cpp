#include "monitor/web_server.hpp"

#include <fmt/format.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <deque>
#include <nlohmann/json.hpp>

namespace kg::monitor {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct WebServer::Shared {
    WebLimits limits;
    WebHandler handler;
    std::shared_ptr<EventHub> hub;
    std::shared_ptr<spdlog::logger> log;
    // Set by stop(): a ping already due then must not arm the timer again (the server may be gone).
    std::atomic<bool> stopped{false};
};

// A connection turned into an event stream: writes what the hub sends, in order, and reads only
// to notice that the browser went away.
class StreamSession : public std::enable_shared_from_this<StreamSession> {
public:
    // `client`: who asked for it (behind a trusted proxy, the client the proxy forwards), for the log.
    StreamSession(tcp::socket socket, web::ConnectionTicket ticket, std::string client, std::size_t max_queue,
                  std::function<bool()> still_signed_in, std::shared_ptr<spdlog::logger> log)
        : socket_(std::move(socket)),
          ticket_(std::move(ticket)),
          client_(std::move(client)),
          max_queue_(max_queue),
          still_signed_in_(std::move(still_signed_in)),
          log_(std::move(log)) {}

    // Its sign-in ended (checked here, on the caller's thread): the stream ends. Checked only when
    // the stream opened, a stream went on giving every alert after a sign-out and past the
    // session's end (the review of the 53rd session).
    void end_if_signed_out() {
        if (closed_ || !still_signed_in_ || still_signed_in_()) return;
        net::post(socket_.get_executor(), [self = shared_from_this()] {
            if (self->closed_) return;
            self->log_->info("event stream to {} ended: its sign-in no longer holds", self->client_);
            self->close();
        });
    }

    void start(std::string header) {
        push(std::make_shared<const std::string>(std::move(header)));
        net::post(socket_.get_executor(), [self = shared_from_this()] { self->read(); });
    }

    void push(std::shared_ptr<const std::string> frame) {
        net::post(socket_.get_executor(), [self = shared_from_this(), frame = std::move(frame)] {
            if (self->closed_) return;
            if (self->queue_.size() >= self->max_queue_) {
                // Too slow (or gone without a FIN): dropping frames would leave the page wrong
                // without it knowing; closing makes the browser reconnect and reload.
                self->log_->warn("event stream to {} closed: {} frames pending", self->client_,
                                 self->queue_.size());
                return self->close();
            }
            self->queue_.push_back(frame);
            if (!self->writing_) self->write();
        });
    }

    bool closed() const { return closed_; }

private:
    void write() {
        writing_ = true;
        net::async_write(socket_, net::buffer(*queue_.front()),
                         [self = shared_from_this()](beast::error_code ec, std::size_t) {
                             self->queue_.pop_front();
                             if (ec) return self->close();
                             if (self->queue_.empty()) {
                                 self->writing_ = false;
                             } else {
                                 self->write();
                             }
                         });
    }

    void read() {
        socket_.async_read_some(
            net::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
                if (ec) return self->close();
                self->read();  // a browser sends nothing on a stream; whatever comes is discarded
            });
    }

    void close() {
        if (closed_) return;
        closed_ = true;
        beast::error_code ignored;
        socket_.shutdown(tcp::socket::shutdown_both, ignored);
        socket_.close(ignored);
    }

    tcp::socket socket_;
    web::ConnectionTicket ticket_;
    std::string client_;
    std::size_t max_queue_;
    const std::function<bool()> still_signed_in_;
    std::shared_ptr<spdlog::logger> log_;
    std::deque<std::shared_ptr<const std::string>> queue_;
    bool writing_ = false;
    std::atomic<bool> closed_{false};
    std::array<char, 512> scratch_{};
};

void EventHub::add(const std::shared_ptr<StreamSession>& s) {
    std::lock_guard lock(mutex_);
    sessions_.push_back(s);
}

std::size_t EventHub::streams() {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& w : sessions_)
        if (auto s = w.lock(); s && !s->closed()) ++n;
    return n;
}

void EventHub::broadcast(const std::string& event, const std::string& data) {
    // One immutable frame shared by every stream. `data` is one line (compact JSON).
    std::string frame;
    if (!event.empty()) frame += "event: " + event + "\n";
    frame += "data: " + data + "\n\n";
    send(std::make_shared<const std::string>(std::move(frame)));
}

void EventHub::end_signed_out() {
    std::vector<std::shared_ptr<StreamSession>> live;
    {
        std::lock_guard lock(mutex_);
        for (const auto& w : sessions_)
            if (auto s = w.lock()) live.push_back(std::move(s));
    }
    for (auto& s : live) s->end_if_signed_out();
}

void EventHub::send(const std::shared_ptr<const std::string>& frame) {
    // Copy the live sessions under the lock, send outside it (a push only posts to the session).
    std::vector<std::shared_ptr<StreamSession>> live;
    {
        std::lock_guard lock(mutex_);
        std::erase_if(sessions_, [&](const std::weak_ptr<StreamSession>& w) {
            auto s = w.lock();
            if (!s || s->closed()) return true;
            live.push_back(std::move(s));
            return false;
        });
    }
    for (auto& s : live) s->push(frame);
}

namespace {

// One client connection serving whole responses, or handing its socket to a StreamSession.
class Session : public web::HttpSession {
public:
    Session(tcp::socket socket, web::ConnectionTicket ticket, std::shared_ptr<WebServer::Shared> shared)
        : HttpSession(std::move(socket), std::move(ticket), shared->limits.http),
          shared_(std::move(shared)) {}

private:
    void on_unreadable(beast::error_code ec, http::status status) override {
        Request dummy;
        dummy.version(11);
        shared_->log->info("bad request from {}: {}", ticket_.client(), ec.message());
        dummy.keep_alive(false);
        const bool over_limit = ec == http::error::header_limit || ec == http::error::body_limit;
        send(error_response(dummy, status, over_limit ? ec.message() : "bad request: " + ec.message()),
             dummy);
    }

    void on_request(Request req) override {
        Reply reply;
        Sender from{client_of(req), limits_.trusted_proxies.forwarded_https(ticket_.client(), req.base())};
        try {
            reply = shared_->handler(req, from);
        } catch (const std::exception& e) {
            shared_->log->error("{} {} from {}: {}", std::string(req.method_string()),
                                std::string(req.target()), from.client, e.what());
            reply.response = error_response(req, http::status::internal_server_error, "internal error");
        }
        if (reply.event_stream)
            return become_stream(std::move(from.client), std::move(reply.still_signed_in));
        if (reply.signed_out) shared_->hub->end_signed_out();
        send(std::move(reply.response), req);
    }

    void become_stream(std::string client, std::function<bool()> still_signed_in) {
        stream_.expires_never();
        auto socket = stream_.release_socket();
        auto s = std::make_shared<StreamSession>(std::move(socket), std::move(ticket_), std::move(client),
                                                 shared_->limits.stream_queue, std::move(still_signed_in),
                                                 shared_->log);
        // No Content-Length: the body is the stream, until either side closes it.
        s->start(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
            "X-Accel-Buffering: no\r\nConnection: close\r\n\r\nretry: 2000\n\n");
        shared_->hub->add(s);
    }

    std::shared_ptr<WebServer::Shared> shared_;
};

// The gateway's parser (one notion of host:port), its errors worded as the listener's.
tcp::endpoint listen_endpoint(const std::string& listen) {
    try {
        return web::parse_listen(listen);
    } catch (const std::exception& e) {
        throw std::runtime_error(fmt::format("cannot listen on {}: {}", listen, e.what()));
    }
}

}  // namespace

Response make_response(const Request& req, http::status status, std::string body,
                       const std::string& content_type) {
    Response res = web::plain_response(req, status, std::move(body), content_type, "kitchen-monitor");
    res.set("X-Content-Type-Options", "nosniff");
    return res;
}

Response error_response(const Request& req, http::status status, const std::string& message) {
    return make_response(
        req, status,
        nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
        "application/json");
}

WebServer::WebServer(net::io_context& io, const std::string& listen, WebLimits limits, WebHandler handler,
                     std::shared_ptr<EventHub> hub, std::shared_ptr<spdlog::logger> log)
    : shared_(std::make_shared<Shared>()),
      listener_(io, listen_endpoint(listen), listen, limits.http, log),
      ping_timer_(io) {
    shared_->limits = limits;
    shared_->handler = std::move(handler);
    shared_->hub = std::move(hub);
    shared_->log = std::move(log);
}

WebServer::~WebServer() {
    // Noexcept: the timer's cancel() throws on a failure, which here would call std::terminate.
    try {
        stop();
    } catch (const std::exception& e) {
        shared_->log->warn("stopping the web server: {}", e.what());
    }
}

unsigned short WebServer::port() const { return listener_.port(); }

void WebServer::start() {
    listener_.start([shared = shared_](tcp::socket socket, web::ConnectionTicket ticket) {
        std::make_shared<Session>(std::move(socket), std::move(ticket), shared)->start();
    });
    ping();
}

void WebServer::stop() {
    shared_->stopped = true;
    listener_.stop();
    ping_timer_.cancel();
}

void WebServer::ping() {
    ping_timer_.expires_after(shared_->limits.ping_interval);
    ping_timer_.async_wait([this, shared = shared_](beast::error_code ec) {
        if (ec || shared->stopped) return;
        shared->hub->end_signed_out();
        shared->hub->send(std::make_shared<const std::string>(": ping\n\n"));  // an SSE comment
        ping();
    });
}

}  // namespace kg::monitor
