#pragma once
// What the gateway's HttpServer and the monitor's WebServer do alike with a connection: listen,
// admit it under caps in total and per client address, read requests under a timeout and size
// limits, answer with whole responses, keep alive while it is used. What each server answers, and
// what a connection may turn into (the gateway's live video, the monitor's event streams), stays
// with the server.

#include <spdlog/logger.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/fd.hpp"
#include "common/log_throttle.hpp"
#include "web/file_body.hpp"
#include "web/trusted_proxies.hpp"

namespace kg::web {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

struct Limits {
    std::chrono::milliseconds header_timeout{10000};  // a request's headers must arrive within this
    std::chrono::milliseconds idle_timeout{30000};    // a keep-alive connection may idle this long
    std::size_t header_limit = 8 * 1024;              // bytes of request line and headers
    std::size_t body_limit = 64 * 1024;
    std::size_t max_connections = 256;
    // Per IPv4 address, or per IPv6 /64 with ipv6_homes; not for trusted proxies: their connections
    // carry many clients.
    std::size_t max_per_address = 16;
    // Counts an IPv6 client by its /64 (address_block()), as the viewer caps do: on the internet one
    // household has a whole /64 and picks any address in it. Not on a LAN, where every host shares
    // one /64 (the local API, the monitor's dashboard).
    bool ipv6_homes = false;
    TrustedProxies trusted_proxies;  // believed about the client (X-Forwarded-For)
    // Access-Control-Allow-Origin of the answers the server makes itself (a request it cannot read,
    // too large), as its handler gives it on its own; empty: none.
    std::string allow_origin;
};

// "127.0.0.1:8080", "[::1]:8080", ":8080" (all addresses); throws std::invalid_argument.
boost::asio::ip::tcp::endpoint parse_listen(const std::string& text);

// "Sun, 06 Dec 2026 09:06:47 GMT": the Date every answer carries (RFC 9110 6.6.1), in English
// whatever the locale.
std::string http_date(std::chrono::system_clock::time_point t);
// Sets Date to now, unless the answer has one.
void stamp_date(http::fields& head);

// A response built whole, for the request's HTTP version; never cached (it says how things are now).
Response plain_response(const Request& req, http::status status, std::string body,
                        const std::string& content_type, boost::beast::string_view server);

// Listener state the connections share, and outlive the listener with: the counts and the stop.
struct ListenerState;

// An admitted connection: counted against the caps until the ticket's last owner goes (a session,
// or the stream the session handed its socket to).
class ConnectionTicket {
public:
    ConnectionTicket(ConnectionTicket&&) noexcept = default;
    ConnectionTicket& operator=(ConnectionTicket&&) = delete;
    ~ConnectionTicket();
    // The peer's address.
    const std::string& client() const { return client_; }
    // Once the server stops, a kept-alive connection ends after the response it is writing.
    bool server_stopped() const;

private:
    friend class Listener;
    ConnectionTicket(std::shared_ptr<ListenerState> state, std::string client, std::string counted_as);

    std::shared_ptr<ListenerState> state_;
    std::string client_;
    std::string counted_as_;  // the per-address cap's key: address_block() of the peer
};

// Accepts connections, each on a strand of its own; one over a cap is refused at once,
// so one client cannot starve the others.
class Listener {
public:
    using OnConnection = std::function<void(boost::asio::ip::tcp::socket, ConnectionTicket)>;

    // Throws std::runtime_error naming `listen` (the address as configured) when it cannot listen.
    // `kept`: a socket already listening there, released by the run before a reload (release()).
    Listener(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
             const std::string& listen, const Limits& limits, std::shared_ptr<spdlog::logger> log,
             std::optional<Fd> kept = std::nullopt);
    ~Listener();
    void start(OnConnection on_connection);
    // No more connections; those open see server_stopped().
    void stop();
    // As stop(), but the socket goes on listening, for the next run of a reload: a connection made
    // meanwhile waits in its backlog for that run instead of being refused. Invalid if it cannot.
    Fd release();
    unsigned short port() const;  // the bound port (useful with :0)

private:
    void accept();
    // An accept that failed (no file descriptor left: EMFILE, ENFILE) is tried again after a pause:
    // the connection waiting in the backlog would make it fail again at once, in a loop on the
    // thread that also runs the supervision.
    void accept_failed(const boost::system::error_code& ec);
    // Answers 503 to a connection over the caps and closes it.
    static void refuse(boost::asio::ip::tcp::socket socket, const std::shared_ptr<ListenerState>& state);

    boost::asio::io_context& io_;
    boost::asio::ip::tcp::acceptor acceptor_;
    boost::asio::steady_timer retry_;
    std::shared_ptr<ListenerState> state_;
    OnConnection on_connection_;
    std::uint64_t failed_accepts_ = 0;  // in the present run of failures
    LogThrottle accept_failures_logged_, accept_recoveries_logged_;
};

// One connection's requests and whole responses: a request's headers within header_timeout, later
// requests within idle_timeout, each size-limited; the connection kept alive while the client asks.
// A server's session derives from it and decides what a request, or one that could not be read,
// gets.
class HttpSession : public std::enable_shared_from_this<HttpSession> {
public:
    virtual ~HttpSession() = default;
    void start();

protected:
    HttpSession(boost::asio::ip::tcp::socket socket, ConnectionTicket ticket, const Limits& limits);

    // A request read whole.
    virtual void on_request(Request req) = 0;
    // A request that could not be read (malformed, over a limit): `status` is the one to refuse it
    // with. A client that left or ran out of time is not asked about: its connection just closes.
    virtual void on_unreadable(boost::beast::error_code ec, http::status status) = 0;

    void read(std::chrono::milliseconds timeout);
    // The next request of a kept-alive connection: up to idle_timeout for its first byte, then
    // header_timeout for the rest, as for a first request. With idle_timeout for the whole read, a
    // client could trickle a request's headers for 30 s instead of 10 after one quick request.
    void next_request();
    // Who sent `req`: the peer, or the client a trusted proxy says it forwards.
    std::string client_of(const Request& req) const {
        return limits_.trusted_proxies.client(ticket_.client(), req.base());
    }
    // Writes `res`, then reads the next request unless the connection ends: not kept alive, the
    // write failed, or the server stopped.
    // `req`: the request answered. A HEAD request gets the head alone, with the length the body
    // would have (RFC 9110 9.3.2), whatever the handler put in the body.
    void send(Response res, const Request& req);
    // A file's part (a GET answered by file_response), read as the socket takes it. The idle timeout
    // is for each write, not the whole body: a clip of 90 MiB takes minutes to a slow phone, and a
    // client is dropped when the socket takes no new chunk for idle_timeout. A HEAD gets the head.
    void send(FileAnswer res, const Request& req);
    void close();
    // Whether closing the socket resets the connection (SO_LINGER 0) instead of ending it gracefully:
    // on while a write may time out on a client that takes nothing, so that the kernel drops what it
    // still holds for it at the cut.
    void abortive_close(bool on);

    boost::beast::tcp_stream stream_;
    const Limits limits_;
    ConnectionTicket ticket_;

private:
    struct FileWrite;
    void on_read(boost::beast::error_code ec);
    void write_file(std::shared_ptr<FileWrite> write);
    // After a response was written whole: the next request, or the end of the connection.
    void written(bool keep_alive);
    // Reads and drops what the client still sends, until it closes or kLinger has passed (see close).
    void drain(std::size_t dropped);

    static constexpr std::chrono::seconds kLinger{2};
    static constexpr std::size_t kMaxDrained = 1024 * 1024;

    boost::beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::shared_ptr<Response> response_;
    bool unread_ = false;  // a request was refused before it was read whole: bytes may follow
};

}  // namespace kg::web
