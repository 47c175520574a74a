#include "web/http_connection.hpp"

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <chrono>
#include <ctime>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string_view>

#include "common/listen_address.hpp"
#include "common/log_throttle.hpp"

namespace kg::web {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct ListenerState {
    Limits limits;
    std::shared_ptr<spdlog::logger> log;
    // Under the lock: a ticket may go on another thread than the io thread (the monitor's event
    // streams are let go by whichever thread broadcast last).
    std::mutex mutex;
    std::size_t connections = 0;
    std::map<std::string, std::size_t> per_address;
    std::atomic<bool> stopped{false};
    LogThrottle refusals;           // connections refused over the caps
    std::atomic<int> lingering{0};  // refused connections still read from (Listener::refuse)
};

namespace {

constexpr auto kAcceptRetry = std::chrono::milliseconds(500);
// How long, and for how many at once, a refused connection is read from after its 503.
constexpr auto kRefusalLinger = std::chrono::seconds(1);
constexpr int kMaxLingering = 64;

// A refused connection held for kRefusalLinger after its answer, its bytes read and dropped, so that
// a request arriving after the refusal finds a socket that takes it instead of one that resets the
// connection: a client may drop the unread 503 at a reset (Windows does), and show "connection
// reset" instead.
struct LingeringRefusal : std::enable_shared_from_this<LingeringRefusal> {
    LingeringRefusal(tcp::socket s, std::shared_ptr<ListenerState> st)
        : socket(std::move(s)), timer(socket.get_executor()), state(std::move(st)) {
        ++state->lingering;
    }
    ~LingeringRefusal() { --state->lingering; }
    void start() {
        timer.expires_after(kRefusalLinger);
        timer.async_wait([self = shared_from_this()](const beast::error_code& ec) {
            if (ec) return;
            beast::error_code ignored;
            self->socket.close(ignored);
        });
        read();
    }
    void read() {
        socket.async_read_some(net::buffer(sink),
                               [self = shared_from_this()](const beast::error_code& ec, std::size_t) {
                                   if (ec) {
                                       self->timer.cancel();  // the client closed, or the time is up
                                       return;
                                   }
                                   self->read();
                               });
    }
    tcp::socket socket;
    net::steady_timer timer;
    std::shared_ptr<ListenerState> state;
    std::array<char, 4096> sink{};
};

}  // namespace

tcp::endpoint parse_listen(const std::string& text) {
    std::string why;
    const auto parsed = parse_listen_address(text, &why);
    if (!parsed)
        throw std::invalid_argument(
            fmt::format("'{}' is not address:port with an IP address: {}", text, why));
    if (parsed->host.empty()) return {net::ip::address_v6::any(), parsed->port};
    return {net::ip::make_address(parsed->host), parsed->port};
}

std::string http_date(std::chrono::system_clock::time_point t) {
    static constexpr std::array<const char*, 7> days{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr std::array<const char*, 12> months{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const std::time_t secs = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    return fmt::format("{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT", days.at(tm.tm_wday), tm.tm_mday,
                       months.at(tm.tm_mon), tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void stamp_date(http::fields& head) {
    if (head.find(http::field::date) == head.end())
        head.set(http::field::date, http_date(std::chrono::system_clock::now()));
}

Response plain_response(const Request& req, http::status status, std::string body,
                        const std::string& content_type, boost::beast::string_view server) {
    Response res{status, req.version()};
    res.set(http::field::server, server);
    res.set(http::field::content_type, content_type);
    res.set(http::field::cache_control, "no-store");
    res.body() = std::move(body);
    return res;
}

ConnectionTicket::ConnectionTicket(std::shared_ptr<ListenerState> state, std::string client,
                                   std::string counted_as)
    : state_(std::move(state)), client_(std::move(client)), counted_as_(std::move(counted_as)) {}

ConnectionTicket::~ConnectionTicket() {
    if (!state_) return;  // moved from
    std::lock_guard lock(state_->mutex);
    --state_->connections;
    if (--state_->per_address[counted_as_] == 0) state_->per_address.erase(counted_as_);
}

bool ConnectionTicket::server_stopped() const { return !state_ || state_->stopped; }

Listener::Listener(net::io_context& io, const tcp::endpoint& endpoint, const std::string& listen,
                   const Limits& limits, std::shared_ptr<spdlog::logger> log, std::optional<Fd> kept)
    : io_(io), acceptor_(io), retry_(io), state_(std::make_shared<ListenerState>()) {
    state_->limits = limits;
    state_->log = std::move(log);
    beast::error_code ec;
    if (kept && kept->get() >= 0) {
        acceptor_.assign(endpoint.protocol(), kept->get(), ec);
        if (!ec) {
            kept->release();  // the acceptor's now
            return;
        }
        // Not a socket of this address's family after all: closed (it holds the port), and a new one.
        state_->log->warn("the socket kept for {} cannot be taken over ({}): listening anew", listen,
                          ec.message());
        kept.reset();
        ec.clear();
    }
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error(fmt::format("cannot listen on {}: {}", listen, ec.message()));
}

Listener::~Listener() {
    // Noexcept: the timer's cancel() throws on a failure, which here would call std::terminate.
    try {
        stop();
    } catch (const std::exception& e) {
        state_->log->warn("stopping the listener: {}", e.what());
    }
}

unsigned short Listener::port() const { return acceptor_.local_endpoint().port(); }

void Listener::start(OnConnection on_connection) {
    on_connection_ = std::move(on_connection);
    accept();
}

void Listener::stop() {
    state_->stopped = true;
    retry_.cancel();
    beast::error_code ignored;
    acceptor_.close(ignored);
}

Fd Listener::release() {
    state_->stopped = true;
    retry_.cancel();
    beast::error_code ec;
    if (!acceptor_.is_open()) return Fd(-1);
    const int fd = acceptor_.release(ec);
    if (ec) {
        acceptor_.close(ec);
        return Fd(-1);
    }
    return Fd(fd);
}

void Listener::accept_failed(const boost::system::error_code& ec) {
    ++failed_accepts_;
    // At the limit, accepts fail and succeed by turns as sockets close: a line a minute each way.
    if (const auto n = accept_failures_logged_.pass(); n > 0) {
        state_->log->error(
            "cannot accept connections: {}; trying again every {} ms ({} failed since the last report)",
            ec.message(), kAcceptRetry.count(), n);
    }
    retry_.expires_after(kAcceptRetry);
    retry_.async_wait([this, state = state_](const boost::system::error_code& wait_ec) {
        if (wait_ec || state->stopped) return;
        accept();
    });
}

void Listener::refuse(tcp::socket socket, const std::shared_ptr<ListenerState>& state) {
    // A short answer instead of a bare close, which a browser shows as "connection reset" and a
    // player as a broken stream. Written without waiting (it fits any socket's send buffer), after
    // taking what the client already sent: closed with bytes unread, the socket would send a reset
    // that may destroy the answer before the client reads it. What comes later is taken for a
    // moment (LingeringRefusal), unless many refusals linger already: a flood over the caps must
    // not hold more descriptors than a few.
    static constexpr std::string_view kBusy =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 41\r\nRetry-After: 10\r\nConnection: close\r\n\r\n"
        "too many connections; try again shortly\r\n";
    beast::error_code ec;
    socket.non_blocking(true, ec);
    std::array<char, 4096> sink{};
    while (!ec && socket.available(ec) > 0) socket.read_some(net::buffer(sink), ec);
    ec.clear();
    socket.write_some(net::buffer(kBusy.data(), kBusy.size()), ec);
    socket.shutdown(tcp::socket::shutdown_send, ec);
    if (ec || state->stopped || state->lingering.load() >= kMaxLingering) {
        socket.close(ec);
        return;
    }
    std::make_shared<LingeringRefusal>(std::move(socket), state)->start();
}

void Listener::accept() {
    // The handler may run after stop() (an accept already done): it checks the shared state before
    // it touches `this`.
    acceptor_.async_accept(
        net::make_strand(io_), [this, state = state_](beast::error_code ec, tcp::socket socket) {
            if (ec == net::error::operation_aborted || state->stopped) return;
            if (ec) return accept_failed(ec);
            if (failed_accepts_ > 0 && accept_recoveries_logged_.pass() > 0) {
                state->log->info("accepting connections again, after {} failed accepts", failed_accepts_);
            }
            failed_accepts_ = 0;
            {
                beast::error_code peer_ec;
                const auto peer = socket.remote_endpoint(peer_ec);
                const std::string client = peer_ec ? "unknown" : canonical(peer.address()).to_string();
                const bool proxy = !peer_ec && state->limits.trusted_proxies.contains(peer.address());
                // An IPv6 household has a whole /64 and picks any address in it: counted by address,
                // one home filled every place from a few dozen of them, and no parent got in. A
                // trusted proxy is counted by its own address: its connections, never capped, must
                // not take the places of the hosts beside it.
                const std::string counted_as =
                    state->limits.ipv6_homes && !proxy ? address_block(client) : client;
                bool admitted = false;
                {
                    std::lock_guard lock(state->mutex);
                    if (state->connections < state->limits.max_connections &&
                        (proxy || state->per_address[counted_as] < state->limits.max_per_address)) {
                        ++state->connections;
                        ++state->per_address[counted_as];
                        admitted = true;
                    } else if (state->per_address[counted_as] == 0) {
                        state->per_address.erase(counted_as);
                    }
                }
                if (admitted) {
                    on_connection_(std::move(socket), ConnectionTicket(state, client, counted_as));
                } else {
                    if (const auto refusals = state->refusals.pass(); refusals == 1) {
                        state->log->warn("connection from {} refused: too many connections", client);
                    } else if (refusals > 1) {
                        state->log->warn(
                            "{} connections refused since the last report (too many connections), the last "
                            "from {}",
                            refusals, client);
                    }
                    refuse(std::move(socket), state);
                }
            }
            accept();
        });
}

HttpSession::HttpSession(tcp::socket socket, ConnectionTicket ticket, const Limits& limits)
    : stream_(std::move(socket)), limits_(limits), ticket_(std::move(ticket)) {}

void HttpSession::start() { read(limits_.header_timeout); }

void HttpSession::read(std::chrono::milliseconds timeout) {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(limits_.header_limit));
    parser_->body_limit(limits_.body_limit);
    // The timer covers the whole read: slow clients cannot hold a connection by trickling bytes.
    stream_.expires_after(timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
}

void HttpSession::next_request() {
    if (buffer_.size() > 0) return read(limits_.header_timeout);  // pipelined: it has begun
    stream_.expires_after(limits_.idle_timeout);
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                if (ec) return self->close();  // gone, or idle too long
                                self->buffer_.commit(n);
                                self->read(self->limits_.header_timeout);
                            });
}

void HttpSession::on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == net::error::operation_aborted)
        return close();
    if (ec) unread_ = true;
    if (ec == http::error::header_limit)
        return on_unreadable(ec, http::status::request_header_fields_too_large);
    if (ec == http::error::body_limit) return on_unreadable(ec, http::status::payload_too_large);
    if (ec) return on_unreadable(ec, http::status::bad_request);
    on_request(parser_->release());
}

void HttpSession::send(Response res, const Request& req) {
    const bool keep_alive = req.keep_alive();
    res.keep_alive(keep_alive);
    stamp_date(res);
    if (req.method() != http::verb::head) {
        res.prepare_payload();
    } else if (!res.body().empty() || !res.has_content_length()) {
        const auto length = res.body().size();
        res.body().clear();
        res.content_length(length);
    }  // else a handler that knew the body's length without reading it (a file) gave it: kept as set
    response_ = std::make_shared<Response>(std::move(res));
    stream_.expires_after(limits_.idle_timeout);
    http::async_write(stream_, *response_,
                      [self = shared_from_this(), keep_alive](beast::error_code ec, std::size_t) {
                          if (ec) return self->close();
                          self->written(keep_alive);
                      });
}

struct HttpSession::FileWrite {
    explicit FileWrite(FileAnswer res, bool keep_alive_)
        : response(std::move(res)), serializer(response), keep_alive(keep_alive_) {}
    FileAnswer response;
    http::response_serializer<FilePartBody> serializer;
    bool keep_alive;
};

void HttpSession::send(FileAnswer res, const Request& req) {
    if (req.method() == http::verb::head) {
        // The head alone, with the length the body would have (as send(Response) does).
        Response head(std::move(res.base()));
        head.content_length(res.body().size);
        return send(std::move(head), req);
    }
    const bool keep_alive = req.keep_alive();
    res.keep_alive(keep_alive);
    stamp_date(res);
    res.prepare_payload();
    response_.reset();
    // A client that stops taking the file is cut by the write's timer, which closes the socket: with
    // an abortive close the kernel drops what it still held for it (megabytes of a clip), instead of
    // sending it on for minutes after the cut (FIN-WAIT-1), as the live streams are cut. Every other
    // end of the write restores the graceful close.
    abortive_close(true);
    write_file(std::make_shared<FileWrite>(std::move(res), keep_alive));
}

void HttpSession::abortive_close(bool on) {
    beast::error_code ignored;
    stream_.socket().set_option(net::socket_base::linger(on, 0), ignored);
}

void HttpSession::write_file(std::shared_ptr<FileWrite> write) {
    stream_.expires_after(limits_.idle_timeout);
    auto& serializer = write->serializer;
    http::async_write_some(
        stream_, serializer,
        [self = shared_from_this(), write = std::move(write)](beast::error_code ec, std::size_t) mutable {
            if (ec && !write->serializer.is_header_done() &&
                ec.category() == boost::system::system_category()) {
                // The file could not be read before anything went out (cut short, an I/O error):
                // a status the client can act on, as a failed open gets, instead of an empty reply.
                self->abortive_close(false);
                Request asked{http::verb::get, "/", write->response.version()};
                asked.keep_alive(false);
                auto res =
                    plain_response(asked, http::status::service_unavailable,
                                   "the evidence file cannot be read now (" + ec.message() + "); ask again\n",
                                   "text/plain; charset=utf-8", write->response[http::field::server]);
                res.set(http::field::retry_after, "5");
                return self->send(std::move(res), asked);
            }
            if (ec) return self->close();  // a timeout has reset the connection already
            if (!write->serializer.is_done() && !self->ticket_.server_stopped())
                return self->write_file(std::move(write));
            self->abortive_close(false);
            // A server stopping ends the connection between two writes, not after a body that may
            // take minutes.
            if (self->ticket_.server_stopped()) return self->close();
            self->written(write->keep_alive);
        });
}

void HttpSession::written(bool keep_alive) {
    if (!keep_alive || ticket_.server_stopped()) return close();
    next_request();
}

void HttpSession::close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    // A socket closed with bytes it has not read sends a reset, and the client's system may then
    // drop the refusal it has not read yet: a client sending a body over the limit saw "connection
    // reset" instead of the 413 (about one run in 20 here). What it still sends is read and dropped
    // for a while first, as HTTP servers do (nginx's lingering close).
    if (unread_) {
        unread_ = false;
        stream_.expires_after(kLinger);  // for the whole drain, not each read
        drain(0);
    }
}

void HttpSession::drain(std::size_t dropped) {
    if (dropped > kMaxDrained) return;
    buffer_.consume(buffer_.size());
    stream_.async_read_some(buffer_.prepare(16 * 1024),
                            [self = shared_from_this(), dropped](beast::error_code ec, std::size_t n) {
                                if (ec) return;  // the client closed, or the time is up
                                self->drain(dropped + n);
                            });
}

}  // namespace kg::web
