#pragma once
// A small HTTP/1.1 server on Boost.Beast for the gateway's local API and the parents' side: every
// read has a timeout and a size limit, connections are capped in total and per client address (all
// of which it shares with the monitor's server: web/http_connection.hpp), and a handler maps each
// request to a response; a stream handler may answer with a live body instead. Runs on the caller's
// io_context.

#include <spdlog/logger.h>

#include <boost/asio/io_context.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "web/http_connection.hpp"

namespace kg::web {

// What a handler answers: a response built whole, or a stored file read as it is sent.
using Answer = std::variant<Response, FileAnswer>;
using Handler = std::function<Answer(const Request&, const std::string& client)>;

class LiveStream;
// A response whose body comes from a LiveStream: the head goes out at once, then the stream's chunks
// until it ends or the client goes. A live body (HTTP-FLV) closes the connection after it; a body
// whose length the head gives (a shared, already finished stream: an HLS segment served from one
// in-memory copy to every viewer) keeps the connection alive.
struct StreamReply {  // NOLINT(bugprone-exception-escape): Beast's response moves, not noexcept
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
    // Throws std::runtime_error naming the address when it cannot listen. `kept`: the socket the run
    // before a reload listened on there (release_listening()).
    HttpServer(boost::asio::io_context& io, const std::string& listen, const Limits& limits, Handler handler,
               std::shared_ptr<spdlog::logger> log, std::optional<Fd> kept = std::nullopt);
    ~HttpServer();
    // Before start(): serve live streams too.
    void set_stream_handler(StreamHandler handler);
    void start();
    void stop();
    // As stop(), but the listening socket is handed over (Listener::release).
    Fd release_listening();
    unsigned short port() const;  // the bound port (useful with :0)

    // Internal bookkeeping shared with sessions.
    struct Shared;

private:
    void end_live_streams();

    std::shared_ptr<Shared> shared_;
    Listener listener_;
};

Response text_response(const Request& req, http::status status, std::string body,
                       const std::string& content_type = "text/plain; charset=utf-8");

}  // namespace kg::web
