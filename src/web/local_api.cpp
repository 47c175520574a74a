#include "web/local_api.hpp"

#include <fmt/format.h>

#include <boost/beast/core/string.hpp>
#include <optional>
#include <regex>

#include "web/file_response.hpp"
#include "web/url_query.hpp"

namespace kg::web {
namespace {

// Constant-time comparison: the token must not leak through response timing.
bool same_secret(const std::string& given, const std::string& token) {
    if (token.empty()) return false;
    unsigned char diff = given.size() == token.size() ? 0 : 1;
    const std::string& a = given.size() == token.size() ? given : token;
    for (std::size_t i = 0; i < token.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ token[i]);
    return diff == 0;
}

Response json_response(const Request& req, const nlohmann::json& body,
                       http::status status = http::status::ok) {
    return text_response(req, status,
                         body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                         "application/json");
}

// `?limit=N` of a list: 100 when it is not given. A value that is not a whole number from 1 to
// kMaxLimit is the client's mistake, answered as such (400), not quietly read as something else.
constexpr std::size_t kDefaultLimit = 100;
constexpr long kMaxLimit = 1000;
struct Limit {
    std::size_t n = kDefaultLimit;
    std::optional<std::string> bad;  // the value as given, when it is not one
};
Limit limit_of(const std::string& target) {
    const auto query = parse_query(target);
    const auto it = query.find("limit");
    if (it == query.end()) return {};
    if (const auto n = whole_number(it->second, 1, kMaxLimit))
        return {static_cast<std::size_t>(*n), std::nullopt};
    return {kDefaultLimit, it->second.substr(0, 32)};
}

}  // namespace

Handler local_api(GatewayView& view, std::string token, std::shared_ptr<spdlog::logger> log,
                  ReloadFn reload) {
    return [&view, token = std::move(token), log = std::move(log), reload = std::move(reload)](
               const Request& req, const std::string& client) -> Answer {
        const std::string target(req.target());
        const std::string path = target.substr(0, target.find('?'));
        // The two actions are POST only; everything else is read with GET or HEAD.
        const bool action = (path == "/api/reload" && reload) || path == "/api/outbox/requeue";
        const bool post = req.method() == http::verb::post;
        const bool read = req.method() == http::verb::get || req.method() == http::verb::head;
        if (action ? !post : !read) {
            auto res =
                text_response(req, http::status::method_not_allowed, action ? "only POST\n" : "only GET\n");
            res.set(http::field::allow, action ? "POST" : "GET, HEAD");
            return res;
        }
        const bool post_reload = post && path == "/api/reload";
        if (path == "/healthz") return text_response(req, http::status::ok, "ok\n");
        if (path == "/readyz") {
            std::string why;
            return view.ready(why) ? text_response(req, http::status::ok, "ready\n")
                                   : text_response(req, http::status::service_unavailable, why + "\n");
        }
        if (path == "/metrics") {
            return text_response(req, http::status::ok, view.metrics(),
                                 "text/plain; version=0.0.4; charset=utf-8");
        }
        if (path.rfind("/api/", 0) != 0) return text_response(req, http::status::not_found, "not found\n");

        if (token.empty())
            return text_response(req, http::status::forbidden, "the API is off: set api.token\n");
        const auto auth = req[http::field::authorization];
        // The scheme is case-insensitive (RFC 9110 11.1): "bearer x" is the same credential.
        const bool bearer = auth.size() > 7 && boost::beast::iequals(auth.substr(0, 7), "Bearer ");
        const std::string given = bearer ? std::string(auth.substr(7)) : std::string();
        if (!same_secret(given, token)) {
            log->warn("{} {} from {}: bad or missing bearer token", std::string(req.method_string()), path,
                      client);
            auto res = text_response(req, http::status::unauthorized, "bearer token required\n");
            res.set(http::field::www_authenticate, "Bearer");
            return res;
        }
        if (post_reload) {
            log->info("configuration reload asked by {}", client);
            if (auto errors = reload()) {
                return json_response(req, {{"reloading", false}, {"errors", *errors}},
                                     http::status::unprocessable_entity);
            }
            return json_response(req, {{"reloading", true}}, http::status::accepted);
        }
        if (path == "/api/outbox/requeue") {
            try {
                const auto back = view.requeue_dead();
                log->info("{} messages moved aside put back in the queue, asked by {}", back, client);
                return json_response(req, {{"requeued", back}});
            } catch (const std::exception& e) {
                return text_response(req, http::status::service_unavailable,
                                     std::string("the outbox cannot take them now: ") + e.what() + "\n");
            }
        }
        if (path == "/api/outbox/dead" || path == "/api/events") {
            const auto limit = limit_of(target);
            if (limit.bad) {
                return text_response(req, http::status::bad_request,
                                     fmt::format("limit: expected a whole number from 1 to {}, not '{}'\n",
                                                 kMaxLimit, *limit.bad));
            }
            return json_response(
                req, path == "/api/events" ? view.recent_events(limit.n) : view.dead_messages(limit.n));
        }
        if (path == "/api/cameras") return json_response(req, view.cameras());
        if (path == "/api/sensors") return json_response(req, view.sensors());

        // /api/events/<id>[/snapshot.jpg|/best.jpg|/clip.mp4]; ids are [A-Za-z0-9_-], nothing else
        // reaches the file system.
        static const std::regex event(
            R"(^/api/events/([A-Za-z0-9_-]{8,80})(/(snapshot\.jpg|best\.jpg|clip\.mp4))?$)");
        std::smatch m;
        if (std::regex_match(path, m, event)) {
            const std::string id = m[1];
            if (!m[3].matched) {
                if (auto e = view.event(id)) return json_response(req, *e);
                return text_response(req, http::status::not_found, "no such event\n");
            }
            const std::string what = m[3];
            const std::string kind = what == "clip.mp4"   ? "clip"
                                     : what == "best.jpg" ? "snapshot_end"
                                                          : "snapshot";
            const auto file = view.evidence_file(id, kind);
            if (!file && kind == "clip" && view.clip_pending(id)) {
                // Not written yet is not "never existed": a room that fetches at the start's
                // message asks again instead of taking the event for one without a clip.
                auto res =
                    text_response(req, http::status::service_unavailable,
                                  "the clip is still being recorded (its post-roll); ask again shortly\n");
                res.set(http::field::retry_after, "5");
                return res;
            }
            if (!file) return text_response(req, http::status::not_found, "no such evidence\n");
            return file_response(req, *file, kind == "clip" ? "video/mp4" : "image/jpeg");
        }
        return text_response(req, http::status::not_found, "not found\n");
    };
}

}  // namespace kg::web
