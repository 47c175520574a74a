#include "monitor/http_post.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <regex>
#include <stdexcept>

namespace kg::monitor {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kMaxAnswer = 64 * 1024;

// A step that failed, and which one.
struct StepFailed : std::runtime_error {
    StepFailed(const std::string& step, beast::error_code ec) : std::runtime_error(step), code(ec) {}
    beast::error_code code;
};

// The steps run one after the other on a private io_context: each is started, then run to its end.
// The stream's expiry (the whole exchange's deadline) bounds every step but the name lookup, which
// is the system resolver's.
void finish(asio::io_context& io, const beast::error_code& ec, const std::string& step) {
    io.restart();
    io.run();
    if (ec) throw StepFailed(step, ec);
}

http::request<http::string_body> make_request(const WebUrl& url, const std::string& body,
                                              const std::string& content_type) {
    http::request<http::string_body> req{http::verb::post, url.target, 11};
    const bool default_port = url.port == (url.tls ? "443" : "80");
    const std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
    req.set(http::field::host, default_port ? host : host + ":" + url.port);
    req.set(http::field::user_agent, "kitchen-monitor");
    req.set(http::field::content_type, content_type);
    req.set(http::field::connection, "close");
    req.body() = body;
    req.prepare_payload();
    return req;
}

template <typename Stream>
void exchange(asio::io_context& io, Stream& stream, http::request<http::string_body>& req,
              HttpAnswer& answer) {
    beast::error_code ec;
    http::async_write(stream, req, [&ec](beast::error_code e, std::size_t) { ec = e; });
    finish(io, ec, "send");
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxAnswer);
    // An answer longer than we read is still an answer: its status line says whether the target
    // took the message (a ticket system that echoes the ticket, an HTML page). The header is read
    // on its own because Beast 1.74 checks a Content-Length against the limit there, and not when
    // http::async_read parses header and body in one go: it read the whole body, however long.
    const auto read = [&](const auto& start) {
        start();
        try {
            finish(io, ec, "read the answer");
        } catch (const StepFailed& e) {
            if (e.code != http::error::body_limit || !parser.is_header_done()) throw;
            return false;
        }
        return true;
    };
    if (read([&] {
            http::async_read_header(stream, buffer, parser,
                                    [&ec](beast::error_code e, std::size_t) { ec = e; });
        }) &&
        !parser.is_done())
        read([&] {
            http::async_read(stream, buffer, parser, [&ec](beast::error_code e, std::size_t) { ec = e; });
        });
    answer.status = static_cast<int>(parser.get().result_int());
    answer.body = std::move(parser.get().body());
}

void post(const WebUrl& url, http::request<http::string_body>& req,
          std::chrono::steady_clock::time_point deadline, const std::string& ca_file, HttpAnswer& answer) {
    asio::io_context io;
    beast::error_code ec;
    tcp::resolver resolver(io);
    tcp::resolver::results_type addresses;
    resolver.async_resolve(url.host, url.port, [&](beast::error_code e, tcp::resolver::results_type r) {
        ec = e;
        addresses = std::move(r);
    });
    finish(io, ec, "resolve " + url.host);
    beast::tcp_stream tcp_stream(io);
    tcp_stream.expires_at(deadline);
    tcp_stream.async_connect(addresses, [&ec](beast::error_code e, const tcp::endpoint&) { ec = e; });
    finish(io, ec, "connect");
    if (!url.tls) {
        exchange(io, tcp_stream, req, answer);
        return;
    }
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    if (ca_file.empty()) {
        ctx.set_default_verify_paths();
    } else {
        ctx.load_verify_file(ca_file);
    }
    ctx.set_verify_mode(asio::ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), ctx);
    stream.set_verify_callback(asio::ssl::host_name_verification(url.host));
    // SNI: a server behind a shared address picks its certificate by name (never an address:
    // RFC 6066 forbids it).
    beast::error_code not_ip;
    asio::ip::make_address(url.host, not_ip);
    if (not_ip && SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str()) != 1)
        throw StepFailed(
            "TLS", beast::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()));
    stream.async_handshake(asio::ssl::stream_base::client, [&ec](beast::error_code e) { ec = e; });
    finish(io, ec, "TLS handshake");
    exchange(io, stream, req, answer);
    // No TLS shutdown: the answer is in, and a slow close_notify must not cost the timeout.
}

}  // namespace

std::optional<WebUrl> parse_web_url(const std::string& text) {
    static const std::regex pattern(
        R"(^(https?)://(\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(:([0-9]{1,5}))?(/[^\s#]*)?$)");
    std::smatch m;
    if (!std::regex_match(text, m, pattern)) return std::nullopt;
    WebUrl url;
    url.tls = m[1] == "https";
    url.host = m[3].matched ? m[3].str() : m[4].str();
    url.port = m[6].matched ? m[6].str() : (url.tls ? "443" : "80");
    if (const int port = std::stoi(url.port); port < 1 || port > 65535) return std::nullopt;
    if (m[7].matched) url.target = m[7].str();
    return url;
}

HttpAnswer http_post(const WebUrl& url, const std::string& body, const std::string& content_type,
                     std::chrono::milliseconds timeout, const std::string& ca_file) {
    HttpAnswer answer;
    auto req = make_request(url, body, content_type);
    try {
        post(url, req, std::chrono::steady_clock::now() + timeout, ca_file, answer);
    } catch (const StepFailed& e) {
        answer.status = 0;
        answer.error = e.code == beast::error::timeout
                           ? fmt::format("{}: timed out after {} s", e.what(), timeout.count() / 1000.0)
                           : fmt::format("{}: {}", e.what(), e.code.message());
    } catch (const std::exception& e) {
        // A CA file that cannot be read, a TLS context that cannot be made.
        answer.status = 0;
        answer.error = e.what();
    }
    return answer;
}

}  // namespace kg::monitor
