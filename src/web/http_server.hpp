#pragma once
// A small HTTP/1.1 server on Boost.Beast for the gateway's local API (and, later, the parents'
// side): every read has a timeout and a size limit, connections are capped in total and per
// client address, and a handler maps each request to a response. Runs on the caller's io_context.

#include <spdlog/logger.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>

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
    std::size_t max_per_address = 16;
};

using Handler = std::function<Response(const Request&, const std::string& client)>;

class LiveStream;
// A response whose body comes from a LiveStream: the head goes out at once, then the stream's chunks
// until it ends or the client goes. A live body (HTTP-FLV) closes the connection after it; a body
// whose length the head gives (a shared, already finished stream: an HLS segment served from one
// in-memory copy to every viewer) keeps the connection alive.
struct StreamReply {
    http::response<http::empty_body> head;
    std::shared_ptr<LiveStream> body;
};
// What a stream handler answers: a streamed body, a plain response (a refusal, a playlist), or
// nothing: not its route, the ordinary handler answers.
using StreamResult = std::variant<std::monostate, Response, StreamReply>;
// Asked first for every request.
using StreamHandler = std::function<StreamResult(const Request&, const std::string& client)>;

class HttpServer {
public:
    // Throws std::runtime_error naming the address when it cannot listen.
    HttpServer(boost::asio::io_context& io, const std::string& listen, Limits limits, Handler handler,
               std::shared_ptr<spdlog::logger> log);
    ~HttpServer();
    // Before start(): serve live streams too.
    void set_stream_handler(StreamHandler handler);
    void start();
    void stop();
    unsigned short port() const;  // the bound port (useful with :0)

    // Internal bookkeeping shared with sessions.
    struct Shared;

private:
    void accept();

    boost::asio::io_context& io_;
    boost::asio::ip::tcp::acceptor acceptor_;
    std::shared_ptr<Shared> shared_;
};

// "127.0.0.1:8080", "[::1]:8080", ":8080" (all addresses); throws std::invalid_argument.
boost::asio::ip::tcp::endpoint parse_listen(const std::string& text);

Response text_response(const Request& req, http::status status, std::string body,
                       const std::string& content_type = "text/plain; charset=utf-8");

}  // namespace kg::web
