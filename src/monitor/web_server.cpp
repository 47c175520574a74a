#include "monitor/web_server.hpp"

#include <fmt/format.h>

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <deque>
#include <map>
#include <optional>

#include "web/http_server.hpp"

namespace kg::monitor {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct WebServer::Shared {
    WebLimits limits;
    WebHandler handler;
    std::shared_ptr<EventHub> hub;
    std::shared_ptr<spdlog::logger> log;
    std::mutex mutex;  // the counts below (sessions live on their own strands)
    std::size_t connections = 0;
    std::map<std::string, std::size_t> per_address;
    bool stopped = false;
};

namespace {

// One counted connection; the count goes down when the last owner of the ticket goes.
class Ticket {
public:
    Ticket(std::shared_ptr<WebServer::Shared> shared, std::string client)
        : shared_(std::move(shared)), client_(std::move(client)) {}
    Ticket(Ticket&&) = default;
    ~Ticket() {
        if (!shared_) return;
        std::lock_guard lock(shared_->mutex);
        --shared_->connections;
        if (--shared_->per_address[client_] == 0) shared_->per_address.erase(client_);
    }
    const std::string& client() const { return client_; }
    WebServer::Shared& shared() const { return *shared_; }

private:
    std::shared_ptr<WebServer::Shared> shared_;
    std::string client_;
};

}  // namespace

// A connection turned into an event stream: writes what the hub sends, in order, and reads only
// to notice that the browser went away.
class StreamSession : public std::enable_shared_from_this<StreamSession> {
public:
    StreamSession(tcp::socket socket, Ticket ticket, std::size_t max_queue)
        : socket_(std::move(socket)), ticket_(std::move(ticket)), max_queue_(max_queue) {}

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
                self->ticket_.shared().log->warn("event stream to {} closed: {} frames pending",
                                                 self->ticket_.client(), self->queue_.size());
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
    Ticket ticket_;
    std::size_t max_queue_;
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

// One client connection serving whole responses: read a request (headers within header_timeout,
// size-limited), answer, keep alive until idle_timeout; or hand the socket to a StreamSession.
class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket socket, Ticket ticket) : stream_(std::move(socket)), ticket_(std::move(ticket)) {}

    void start() { read(shared().limits.header_timeout); }

private:
    WebServer::Shared& shared() { return ticket_.shared(); }

    void read(std::chrono::milliseconds timeout) {
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(shared().limits.header_limit));
        parser_->body_limit(shared().limits.body_limit);
        stream_.expires_after(timeout);
        http::async_read(
            stream_, buffer_, *parser_,
            [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
    }

    void on_read(beast::error_code ec) {
        if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
            ec == net::error::operation_aborted)
            return close();
        if (ec) {
            Request dummy;
            dummy.version(11);
            const auto status = ec == http::error::header_limit
                                    ? http::status::request_header_fields_too_large
                                : ec == http::error::body_limit ? http::status::payload_too_large
                                                                : http::status::bad_request;
            shared().log->info("bad request from {}: {}", ticket_.client(), ec.message());
            return send(make_response(dummy, status, "bad request: " + ec.message() + "\n"), false);
        }
        const Request req = parser_->release();
        Reply reply;
        try {
            reply = shared().handler(req, ticket_.client());
        } catch (const std::exception& e) {
            shared().log->error("{} {} from {}: {}", std::string(req.method_string()),
                                std::string(req.target()), ticket_.client(), e.what());
            reply.response = make_response(req, http::status::internal_server_error, "internal error\n");
        }
        if (reply.event_stream) return become_stream();
        send(std::move(reply.response), req.keep_alive());
    }

    void become_stream() {
        stream_.expires_never();
        auto socket = stream_.release_socket();
        auto hub = shared().hub;
        const auto max_queue = shared().limits.stream_queue;
        auto s = std::make_shared<StreamSession>(std::move(socket), std::move(ticket_), max_queue);
        // No Content-Length: the body is the stream, until either side closes it.
        s->start(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
            "X-Accel-Buffering: no\r\nConnection: close\r\n\r\nretry: 2000\n\n");
        hub->add(s);
    }

    void send(Response res, bool keep_alive) {
        res.keep_alive(keep_alive);
        res.prepare_payload();
        response_ = std::make_shared<Response>(std::move(res));
        stream_.expires_after(shared().limits.idle_timeout);
        http::async_write(stream_, *response_,
                          [self = shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
                              if (ec || !keep_alive || self->shared().stopped) return self->close();
                              self->read(self->shared().limits.idle_timeout);
                          });
    }

    void close() {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::shared_ptr<Response> response_;
    Ticket ticket_;
};

}  // namespace

Response make_response(const Request& req, http::status status, std::string body,
                       const std::string& content_type) {
    Response res{status, req.version()};
    res.set(http::field::server, "kitchen-monitor");
    res.set(http::field::content_type, content_type);
    res.set(http::field::cache_control, "no-store");
    res.set("X-Content-Type-Options", "nosniff");
    res.body() = std::move(body);
    return res;
}

WebServer::WebServer(net::io_context& io, const std::string& listen, WebLimits limits, WebHandler handler,
                     std::shared_ptr<EventHub> hub, std::shared_ptr<spdlog::logger> log)
    : io_(io), acceptor_(io), ping_timer_(io), shared_(std::make_shared<Shared>()) {
    shared_->limits = limits;
    shared_->handler = std::move(handler);
    shared_->hub = std::move(hub);
    shared_->log = std::move(log);
    tcp::endpoint endpoint;
    try {
        endpoint = kg::web::parse_listen(listen);  // the gateway's own parser: one notion of host:port
    } catch (const std::exception& e) {
        throw std::runtime_error(fmt::format("cannot listen on {}: {}", listen, e.what()));
    }
    beast::error_code ec;
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error(fmt::format("cannot listen on {}: {}", listen, ec.message()));
}

WebServer::~WebServer() { stop(); }

unsigned short WebServer::port() const { return acceptor_.local_endpoint().port(); }

void WebServer::start() {
    accept();
    ping();
}

void WebServer::stop() {
    {
        std::lock_guard lock(shared_->mutex);
        shared_->stopped = true;
    }
    beast::error_code ignored;
    acceptor_.close(ignored);
    ping_timer_.cancel();
}

void WebServer::ping() {
    ping_timer_.expires_after(shared_->limits.ping_interval);
    ping_timer_.async_wait([this, shared = shared_](beast::error_code ec) {
        if (ec || shared->stopped) return;
        shared->hub->send(std::make_shared<const std::string>(": ping\n\n"));  // an SSE comment
        ping();
    });
}

void WebServer::accept() {
    acceptor_.async_accept(
        net::make_strand(io_), [this, shared = shared_](beast::error_code ec, tcp::socket socket) {
            if (ec == net::error::operation_aborted || shared->stopped) return;
            if (!ec) {
                beast::error_code peer_ec;
                const auto peer = socket.remote_endpoint(peer_ec);
                const std::string client = peer_ec ? "unknown" : peer.address().to_string();
                bool admitted = false;
                {
                    std::lock_guard lock(shared->mutex);
                    if (shared->connections < shared->limits.max_connections &&
                        shared->per_address[client] < shared->limits.max_per_address) {
                        ++shared->connections;
                        ++shared->per_address[client];
                        admitted = true;
                    } else if (shared->per_address[client] == 0) {
                        shared->per_address.erase(client);
                    }
                }
                if (admitted) {
                    std::make_shared<Session>(std::move(socket), Ticket(shared, client))->start();
                } else {
                    // Over the cap: refused at once, so one client cannot starve the others.
                    shared->log->warn("connection from {} refused: too many connections", client);
                    socket.close(peer_ec);
                }
            }
            accept();
        });
}

}  // namespace kg::monitor
