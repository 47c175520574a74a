#include "web/http_server.hpp"

#include <fmt/format.h>

#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>

#include "web/live_stream.hpp"

namespace kg::web {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct HttpServer::Shared {
    Limits limits;
    Handler handler;
    StreamHandler stream_handler;
    std::shared_ptr<spdlog::logger> log;
    std::size_t connections = 0;
    std::map<std::string, std::size_t> per_address;
    std::vector<std::weak_ptr<LiveStream>> live;  // streaming sessions, ended by stop()
    bool stopped = false;
};

namespace {

// One client connection: read a request (headers within header_timeout, size-limited), answer it,
// keep alive until idle_timeout. Unregisters itself from the counts when it goes.
class Session : public std::enable_shared_from_this<Session> {
public:
    Session(tcp::socket socket, std::shared_ptr<HttpServer::Shared> shared, std::string client)
        : stream_(std::move(socket)), shared_(std::move(shared)), client_(std::move(client)) {}

    ~Session() {
        if (live_) live_->cancel();
        --shared_->connections;
        if (--shared_->per_address[client_] == 0) shared_->per_address.erase(client_);
    }

    void start() { read(shared_->limits.header_timeout); }

private:
    void read(std::chrono::milliseconds timeout) {
        parser_.emplace();
        parser_->header_limit(static_cast<std::uint32_t>(shared_->limits.header_limit));
        parser_->body_limit(shared_->limits.body_limit);
        // The first request gets the header timeout; later ones the idle timeout (slow clients
        // cannot hold a connection by trickling bytes: the timer covers the whole read).
        stream_.expires_after(timeout);
        http::async_read(
            stream_, buffer_, *parser_,
            [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
    }

    void on_read(beast::error_code ec) {
        if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
            ec == net::error::operation_aborted) {
            return close();
        }
        if (ec == http::error::header_limit || ec == http::error::body_limit) {
            Request dummy;
            dummy.version(11);
            return send(
                text_response(dummy,
                              ec == http::error::header_limit ? http::status::request_header_fields_too_large
                                                              : http::status::payload_too_large,
                              ec.message() + "\n"),
                false);
        }
        if (ec) {
            Request dummy;
            dummy.version(11);
            return send(
                text_response(dummy, http::status::bad_request, "bad request: " + ec.message() + "\n"),
                false);
        }
        const Request req = parser_->release();
        Response res;
        try {
            StreamResult routed;
            if (shared_->stream_handler) routed = shared_->stream_handler(req, client_);
            if (auto* reply = std::get_if<StreamReply>(&routed))
                return stream(std::move(*reply), req.keep_alive());
            if (auto* plain = std::get_if<Response>(&routed)) {
                res = std::move(*plain);
            } else {
                res = shared_->handler(req, client_);
            }
        } catch (const std::exception& e) {
            shared_->log->error("{} {} from {}: {}", std::string(req.method_string()),
                                std::string(req.target()), client_, e.what());
            res = text_response(req, http::status::internal_server_error, "internal error\n");
        }
        send(std::move(res), req.keep_alive());
    }

    void send(Response res, bool keep_alive) {
        res.keep_alive(keep_alive);
        res.prepare_payload();
        response_ = std::make_shared<Response>(std::move(res));
        stream_.expires_after(shared_->limits.idle_timeout);
        http::async_write(stream_, *response_,
                          [self = shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
                              if (ec || !keep_alive || self->shared_->stopped) return self->close();
                              self->read(self->shared_->limits.idle_timeout);
                          });
    }

    // Live body: the head, then whatever the producer queued, one gathered write at a time. A
    // client that stops reading for idle_timeout is dropped by the write timer; one that reads too
    // slowly overflows its queue and is dropped by the producer.
    void stream(StreamReply reply, bool keep_alive) {
        live_ = std::move(reply.body);
        std::erase_if(shared_->live, [](const auto& w) { return w.expired(); });
        shared_->live.push_back(live_);
        head_ = std::make_shared<http::response<http::empty_body>>(std::move(reply.head));
        // A body of known length (a shared segment) keeps the connection for the next request; a
        // live one ends with the connection.
        finite_keep_alive_ = keep_alive && head_->has_content_length();
        head_->keep_alive(finite_keep_alive_);
        serializer_.emplace(*head_);
        stream_.expires_after(shared_->limits.idle_timeout);
        http::async_write_header(
            stream_, *serializer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
                if (ec) return self->end_stream();
                self->writing_ = false;
                // The waker keeps the session alive between writes (nothing else holds it while it
                // waits for the camera's next packet); every way out of the stream cancels it, which
                // drops the waker and with it this reference.
                self->live_->set_waker(
                    [self, ex = self->stream_.get_executor()] { net::post(ex, [self] { self->pump(); }); });
                self->pump();
            });
        writing_ = true;
    }

    void pump() {
        if (writing_ || !live_) return;
        chunks_.clear();
        if (!live_->take(chunks_)) {
            if (live_->overflowed())
                shared_->log->warn("live stream to {} dropped: the client reads too slowly", client_);
            if (finite_keep_alive_ && !shared_->stopped) {
                live_->cancel();  // drops the waker's hold on this session; the read below holds it
                live_.reset();
                serializer_.reset();
                return read(shared_->limits.idle_timeout);
            }
            return end_stream();
        }
        if (chunks_.empty()) return;  // woken early; the next push wakes again
        buffers_.clear();
        for (const auto& c : chunks_) buffers_.emplace_back(c->data(), c->size());
        writing_ = true;
        stream_.expires_after(shared_->limits.idle_timeout);
        net::async_write(stream_, buffers_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            self->writing_ = false;
            if (ec) return self->end_stream();
            self->pump();
        });
    }

    void end_stream() {
        if (live_) live_->cancel();
        close();
    }

    void close() {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::shared_ptr<Response> response_;
    // Live body state (HTTP-FLV).
    std::shared_ptr<LiveStream> live_;
    std::shared_ptr<http::response<http::empty_body>> head_;
    std::optional<http::response_serializer<http::empty_body>> serializer_;
    std::vector<Chunk> chunks_;
    std::vector<net::const_buffer> buffers_;
    bool writing_ = false;
    bool finite_keep_alive_ = false;
    std::shared_ptr<HttpServer::Shared> shared_;
    std::string client_;
};

}  // namespace

tcp::endpoint parse_listen(const std::string& text) {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) throw std::invalid_argument(fmt::format("'{}' is not host:port", text));
    std::string host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    const int port = std::stoi(text.substr(colon + 1));
    if (port < 0 || port > 65535) throw std::invalid_argument(fmt::format("'{}': port out of range", text));
    boost::system::error_code ec;
    const auto address =
        host.empty() ? net::ip::address(net::ip::address_v6::any()) : net::ip::make_address(host, ec);
    if (ec) throw std::invalid_argument(fmt::format("'{}': '{}' is not an IP address", text, host));
    return {address, static_cast<unsigned short>(port)};
}

Response text_response(const Request& req, http::status status, std::string body,
                       const std::string& content_type) {
    Response res{status, req.version()};
    res.set(http::field::server, "kitchen-gateway");
    res.set(http::field::content_type, content_type);
    res.set(http::field::cache_control, "no-store");
    res.body() = std::move(body);
    return res;
}

HttpServer::HttpServer(net::io_context& io, const std::string& listen, Limits limits, Handler handler,
                       std::shared_ptr<spdlog::logger> log)
    : io_(io), acceptor_(io), shared_(std::make_shared<Shared>()) {
    shared_->limits = limits;
    shared_->handler = std::move(handler);
    shared_->log = std::move(log);
    const auto endpoint = parse_listen(listen);
    beast::error_code ec;
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error(fmt::format("cannot listen on {}: {}", listen, ec.message()));
}

HttpServer::~HttpServer() { stop(); }

unsigned short HttpServer::port() const { return acceptor_.local_endpoint().port(); }

void HttpServer::set_stream_handler(StreamHandler handler) { shared_->stream_handler = std::move(handler); }

void HttpServer::start() { accept(); }

void HttpServer::stop() {
    shared_->stopped = true;
    beast::error_code ignored;
    acceptor_.close(ignored);
    // A live stream's session lives as long as its stream: end them, or they would outlive the server.
    for (auto& w : shared_->live) {
        if (auto s = w.lock()) s->cancel();
    }
    shared_->live.clear();
}

void HttpServer::accept() {
    acceptor_.async_accept(
        net::make_strand(io_), [this, shared = shared_](beast::error_code ec, tcp::socket socket) {
            if (ec == net::error::operation_aborted || shared->stopped) return;
            if (!ec) {
                beast::error_code peer_ec;
                const auto peer = socket.remote_endpoint(peer_ec);
                const std::string client = peer_ec ? "unknown" : peer.address().to_string();
                if (shared->connections >= shared->limits.max_connections ||
                    shared->per_address[client] >= shared->limits.max_per_address) {
                    // Over the cap: refused at once, so one client cannot starve the others.
                    shared->log->warn("connection from {} refused: too many connections", client);
                    if (shared->per_address[client] == 0) shared->per_address.erase(client);
                    socket.close(peer_ec);
                } else {
                    ++shared->connections;
                    ++shared->per_address[client];
                    std::make_shared<Session>(std::move(socket), shared, client)->start();
                }
            }
            accept();
        });
}

}  // namespace kg::web
