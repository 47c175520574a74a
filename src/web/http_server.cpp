#include "web/http_server.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/system_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <optional>
#include <vector>

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
    std::vector<std::weak_ptr<LiveStream>> live;  // streaming sessions, ended by stop()
};

namespace {

// The kernel's send buffer of a live stream's connection.
constexpr int kLiveSendBuffer = 256 * 1024;

// One client connection: requests answered by the handlers, or a body streamed from a LiveStream.
class Session : public HttpSession {
public:
    Session(tcp::socket socket, ConnectionTicket ticket, std::shared_ptr<HttpServer::Shared> shared)
        : HttpSession(std::move(socket), std::move(ticket), shared->limits), shared_(std::move(shared)) {}

    ~Session() override {
        if (live_) live_->cancel();
        // Before the socket goes: every end of a live stream closes gracefully (end_stream(), and a
        // stopping server's cancel, which drops the waker's last reference); only the write timer's
        // own close, before, resets.
        abortive_close(false);
    }

private:
    std::shared_ptr<Session> self() { return std::static_pointer_cast<Session>(shared_from_this()); }

    void on_unreadable(beast::error_code ec, http::status status) override {
        Request dummy;
        dummy.version(11);
        const bool over_limit = ec == http::error::header_limit || ec == http::error::body_limit;
        dummy.keep_alive(false);
        auto res = text_response(dummy, status,
                                 over_limit ? ec.message() + "\n" : "bad request: " + ec.message() + "\n");
        if (!shared_->limits.allow_origin.empty())
            res.set(http::field::access_control_allow_origin, shared_->limits.allow_origin);
        send(std::move(res), dummy);
    }

    void on_request(Request req) override {
        Answer answer;
        try {
            client_ = client_of(req);
            StreamResult routed;
            if (shared_->stream_handler) routed = shared_->stream_handler(req, client_);
            if (auto* reply = std::get_if<StreamReply>(&routed))
                return stream(std::move(*reply), req.keep_alive());
            if (auto* plain = std::get_if<Response>(&routed)) {
                answer = std::move(*plain);
            } else {
                answer = shared_->handler(req, client_);
            }
        } catch (const std::exception& e) {
            shared_->log->error("{} {} from {}: {}", std::string(req.method_string()),
                                std::string(req.target()), client_, e.what());
            answer = text_response(req, http::status::internal_server_error, "internal error\n");
        }
        std::visit([&](auto& res) { send(std::move(res), req); }, answer);
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
        if (!finite_keep_alive_) {
            // The kernel's own buffer grows to megabytes for a client that stops reading (about
            // 2.7 MiB a stuck viewer here, 40 of them 107 MiB): the queue in front of it is the
            // stream's, which drops such a viewer. A quarter of a megabyte still carries 20 Mbit/s
            // at 100 ms of round trip. And a viewer cut for taking nothing (the write timer closes
            // the socket) is reset, not closed gracefully: its unsent bytes stayed with the kernel
            // for minutes after the cut. ~Session() restores the graceful close.
            beast::error_code ignored;
            stream_.socket().set_option(net::socket_base::send_buffer_size(kLiveSendBuffer), ignored);
            abortive_close(true);
        }
        stamp_date(*head_);
        serializer_.emplace(*head_);
        stream_.expires_after(limits_.idle_timeout);
        http::async_write_header(stream_, *serializer_, [self = self()](beast::error_code ec, std::size_t) {
            if (ec) return self->end_stream();
            self->writing_ = false;
            // The waker keeps the session alive between writes (nothing else holds it while it
            // waits for the camera's next packet); every way out of the stream cancels it, which
            // drops the waker and with it this reference.
            self->live_->set_waker(
                [self, ex = self->stream_.get_executor()] { net::post(ex, [self] { self->pump(); }); });
            self->watch_deadline();
            self->pump();
        });
        writing_ = true;
    }

    // A stream with a deadline (the viewer's token) ends at it even when the camera sends nothing
    // (a stalled camera held an expired viewer until its next packet). The timer holds the session
    // weakly: a viewer who leaves is not kept until its token's end.
    void watch_deadline() {
        const auto deadline = live_->deadline();
        if (!deadline) return;
        deadline_timer_.expires_at(*deadline);
        deadline_timer_.async_wait([weak = std::weak_ptr<Session>(self())](beast::error_code ec) {
            auto self = weak.lock();
            if (ec || !self || !self->live_) return;
            // A clock stepped back since: wait again for the deadline on the new clock.
            if (!self->live_->expire_if_due() && !self->live_->finished()) self->watch_deadline();
        });
    }

    void pump() {
        if (writing_ || !live_) return;
        chunks_.clear();
        if (!live_->take(chunks_)) {
            if (live_->overflowed())
                shared_->log->warn("live stream to {} dropped: the client reads too slowly", client_);
            if (finite_keep_alive_ && !ticket_.server_stopped()) {
                live_->cancel();  // drops the waker's hold on this session; the read below holds it
                live_.reset();
                deadline_timer_.cancel();
                serializer_.reset();
                return next_request();
            }
            return end_stream();
        }
        if (chunks_.empty()) return;  // woken early; the next push wakes again
        buffers_.clear();
        for (const auto& c : chunks_) buffers_.emplace_back(c->data(), c->size());
        writing_ = true;
        stream_.expires_after(limits_.idle_timeout);
        net::async_write(stream_, buffers_, [self = self()](beast::error_code ec, std::size_t) {
            self->writing_ = false;
            if (ec == beast::error::timeout) {
                // Said, as a queue overflow is: a viewer cut for taking nothing is otherwise silent.
                self->shared_->log->warn("live stream to {} dropped: the client took nothing for {} s",
                                         self->client_, self->limits_.idle_timeout.count() / 1000);
            }
            if (ec) return self->end_stream();
            self->pump();
        });
    }

    void end_stream() {
        if (live_) live_->cancel();
        deadline_timer_.cancel();
        close();
    }

    std::shared_ptr<HttpServer::Shared> shared_;
    std::string client_;  // of the request being answered
    // Live body state (HTTP-FLV).
    std::shared_ptr<LiveStream> live_;
    std::shared_ptr<http::response<http::empty_body>> head_;
    std::optional<http::response_serializer<http::empty_body>> serializer_;
    std::vector<Chunk> chunks_;
    std::vector<net::const_buffer> buffers_;
    net::system_timer deadline_timer_{stream_.get_executor()};
    bool writing_ = false;
    bool finite_keep_alive_ = false;
};

}  // namespace

Response text_response(const Request& req, http::status status, std::string body,
                       const std::string& content_type) {
    return plain_response(req, status, std::move(body), content_type, "kitchen-gateway");
}

HttpServer::HttpServer(net::io_context& io, const std::string& listen, const Limits& limits, Handler handler,
                       std::shared_ptr<spdlog::logger> log, std::optional<Fd> kept)
    : shared_(std::make_shared<Shared>()),
      listener_(io, parse_listen(listen), listen, limits, log, std::move(kept)) {
    shared_->limits = limits;
    shared_->handler = std::move(handler);
    shared_->log = std::move(log);
}

HttpServer::~HttpServer() { stop(); }

unsigned short HttpServer::port() const { return listener_.port(); }

void HttpServer::set_stream_handler(StreamHandler handler) { shared_->stream_handler = std::move(handler); }

void HttpServer::start() {
    listener_.start([shared = shared_](tcp::socket socket, ConnectionTicket ticket) {
        std::make_shared<Session>(std::move(socket), std::move(ticket), shared)->start();
    });
}

void HttpServer::stop() {
    listener_.stop();
    end_live_streams();
}

Fd HttpServer::release_listening() {
    auto fd = listener_.release();
    end_live_streams();
    return fd;
}

void HttpServer::end_live_streams() {
    // A live stream's session lives as long as its stream: end them, or they would outlive the server.
    for (auto& w : shared_->live) {
        if (auto s = w.lock()) s->cancel();
    }
    shared_->live.clear();
}

}  // namespace kg::web
