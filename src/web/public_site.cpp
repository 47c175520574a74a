#include "web/public_site.hpp"

#include <fmt/format.h>

#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <sstream>

#include "common/log_throttle.hpp"
#include "stream/hls_writer.hpp"
#include "web/live_stream.hpp"
#include "web/url_query.hpp"
#include "web/viewer_token.hpp"

namespace kg::web {
namespace {

std::string value_of(const std::map<std::string, std::string>& query, const char* key) {
    const auto it = query.find(key);
    return it == query.end() ? std::string() : it->second;
}

// Session ids and tokens go back into playlists: only plain characters are accepted.
bool plain(const std::string& s, std::size_t max) {
    return s.size() <= max && std::all_of(s.begin(), s.end(), [](char c) {
               return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
           });
}

Response with_cors(Response res) {
    // Parents' apps and mini-programs load streams from their own origin.
    res.set(http::field::access_control_allow_origin, "*");
    return res;
}

Response refuse(const Request& req, http::status status, const std::string& why) {
    return with_cors(text_response(req, status, why + "\n"));
}

// A stream with nothing to serve yet (FLV: no key frame; HLS: no playlist): players retry a 503
// with Retry-After, where hls.js takes a 404 on the playlist as final.
Response starting(const Request& req) {
    auto res = refuse(req, http::status::service_unavailable, "the stream is starting; try again shortly");
    res.set(http::field::retry_after, "2");
    return res;
}

std::optional<std::string> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream data;
    data << in.rdbuf();
    return data.str();
}

// The playlist as the muxer wrote it, with this viewer's query on every URI in it, so the player's
// segment requests carry the token and session id without knowing about them.
std::string with_query(const std::string& playlist, const std::string& query) {
    if (query.empty()) return playlist;
    std::istringstream in(playlist);
    std::string line, out;
    while (std::getline(in, line)) {
        if (!line.empty() && line[0] != '#') {
            line += "?" + query;
        } else if (line.rfind("#EXT-X-MAP:URI=\"", 0) == 0) {
            const auto close = line.find('"', 16);
            if (close != std::string::npos) line.insert(close, "?" + query);
        }
        out += line + "\n";
    }
    return out;
}

struct Guard {
    // Spelt out: make_shared's parenthesised aggregate initialisation (C++20) is beyond clang-tidy
    // 14's parser, which then could not check this file.
    Guard(const PublicView& v, const config::Public& s, std::shared_ptr<spdlog::logger> l)
        : view(v), settings(s), log(std::move(l)) {}

    const PublicView& view;
    const config::Public& settings;
    std::shared_ptr<spdlog::logger> log;
    // Refusals are what clients cause, and are logged at most once a minute with their count.
    mutable LogThrottle token_refusals{};
    mutable LogThrottle viewer_refusals{};

    // Everything a stream request must pass: the camera is public, the hours are open, the token
    // (if required) is good. Returns the feed, or a refusal in `res`; `token_expires`, the token's
    // expiry when one was required.
    stream::PublicFeed* admit(const Request& req, const std::string& camera, const std::string& client,
                              std::optional<Response>& res,
                              std::optional<std::int64_t>& token_expires) const {
        auto* feed = view.public_feed(camera);
        if (feed == nullptr) {
            res = refuse(req, http::status::not_found, "not found");
            return nullptr;
        }
        if (!settings.token_secret.empty()) {
            const auto token =
                value_of(parse_query(std::string_view(req.target().data(), req.target().size())), "token");
            std::int64_t expires = 0;
            const auto check = check_viewer_token(settings.token_secret, camera, token,
                                                  std::chrono::duration_cast<std::chrono::seconds>(
                                                      std::chrono::system_clock::now().time_since_epoch())
                                                      .count(),
                                                  &expires);
            if (check != TokenCheck::ok) {
                if (const auto n = token_refusals.pass(); n == 1) {
                    log->info("stream {} refused to {}: {}", camera, client, to_string(check));
                } else if (n > 1) {
                    log->info(
                        "{} streams refused for their token since the last report, the last {} to {}: {}", n,
                        camera, client, to_string(check));
                }
                res = refuse(req, http::status::forbidden, to_string(check));
                return nullptr;
            }
            token_expires = expires;
        }
        if (!feed->open()) {
            res = refuse(req, http::status::forbidden, "outside public hours");
            return nullptr;
        }
        return feed;
    }

    std::optional<Response> over_cap(const Request& req, ViewerCounter::Admit admit,
                                     const std::string& camera, const std::string& client) const {
        if (admit == ViewerCounter::Admit::ok) return std::nullopt;
        const bool camera_full = admit == ViewerCounter::Admit::camera_full;
        const char* why =
            camera_full ? "the camera's viewer cap is reached" : "the address's viewer cap is reached";
        if (const auto n = viewer_refusals.pass(); n == 1) {
            log->warn("viewer of {} from {} refused: {}", camera, client, why);
        } else if (n > 1) {
            log->warn("{} viewers refused since the last report, the last of {} from {}: {}", n, camera,
                      client, why);
        }
        auto res =
            refuse(req, camera_full ? http::status::service_unavailable : http::status::too_many_requests,
                   camera_full ? "too many viewers on this camera; try again later"
                               : "too many streams from your address");
        res.set(http::field::retry_after, "30");
        return res;
    }
};

// Whether the playlist names `file` as a segment or as its init file (EXT-X-MAP).
bool playlist_names(const std::string& playlist, const std::string& file) {
    std::istringstream in(playlist);
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line == file) return true;
        if (line.rfind("#EXT-X-MAP:URI=\"", 0) == 0 && line.compare(16, file.size() + 1, file + "\"") == 0)
            return true;
    }
    return false;
}

// HLS segments and init files, read once and shared by every viewer: a segment is immutable once the
// playlist names it (names carry the writer's run and the connection's generation), so 100 viewers
// cost one copy. Only a file the current playlist names is read: before that the muxer may still be
// writing it, and a partial or empty read kept here would be served to every viewer after.
class SegmentCache {
public:
    Chunk get(const std::string& folder, const std::string& file) {
        const std::string path = folder + "/" + file;
        std::lock_guard lock(mutex_);
        // Named when it was read; a viewer a playlist behind may still ask for it once it is not.
        if (auto it = entries_.find(path); it != entries_.end()) return it->second;
        const auto playlist = read_file(folder + "/index.m3u8");
        if (!playlist || !playlist_names(*playlist, file)) return nullptr;
        auto data = read_file(path);
        if (!data || data->empty()) return nullptr;
        auto chunk = std::make_shared<const std::string>(std::move(*data));
        entries_.emplace(path, chunk);
        order_.push_back(path);
        bytes_ += chunk->size();
        // The newest is always kept; older ones go past either bound (a viewer still writing one
        // out holds its own reference).
        while (order_.size() > 1 && (order_.size() > kEntries || bytes_ > kBytes)) {
            const auto oldest = entries_.find(order_.front());
            bytes_ -= oldest->second->size();
            entries_.erase(oldest);
            order_.pop_front();
        }
        return chunk;
    }

private:
    // A few playlists' worth for a handful of public cameras; older ones are gone from the playlists.
    // In bytes too: segments are a GOP or more, and a camera with a long GOP (H.264+, 10 s at 4 Mbit/s:
    // 5 MB) would otherwise keep 64 of them, 300 MB, in memory.
    static constexpr std::size_t kEntries = 64;
    static constexpr std::size_t kBytes = std::size_t{64} << 20;
    std::mutex mutex_;
    std::map<std::string, Chunk> entries_;
    std::deque<std::string> order_;
    std::size_t bytes_ = 0;
};

}  // namespace

Limits public_limits(const config::Public& settings) {
    Limits limits;
    limits.header_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(settings.header_timeout);
    limits.idle_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(settings.idle_timeout);
    limits.header_limit = 4 * 1024;  // GET requests with short URLs: nothing legitimate is larger
    limits.body_limit = 0;
    limits.max_connections = settings.max_connections;
    // Connections per address cover the page, its status polls and the streams of every camera.
    limits.max_per_address = settings.max_viewers_per_address * 2 + 8;
    limits.ipv6_homes = true;
    limits.trusted_proxies = TrustedProxies::parse(settings.trusted_proxies);
    // A parents' app on another origin reads a 431 (its cookies grew too large) as one, not as the
    // network failure a refusal without CORS looks like to it.
    limits.allow_origin = "*";
    return limits;
}

PublicRoutes public_site(const PublicView& view, const config::Public& settings,
                         std::shared_ptr<spdlog::logger> log) {
    auto guard = std::make_shared<Guard>(view, settings, std::move(log));
    PublicRoutes routes;

    routes.handler = [guard](const Request& req, const std::string&) -> Response {
        // Every answer, refusals too, carries CORS: a parents' app on another origin then reads a 404
        // or a 405 as one, not as a network failure it cannot tell from the box being away.
        if (req.method() == http::verb::options) {
            // A CORS preflight: a browser asks before an app on another origin sends a header outside
            // the safelist (a player's Range). What every path serves is the same.
            Response res{http::status::no_content, req.version()};
            res.set(http::field::server, "kitchen-gateway");
            res.set(http::field::allow, "GET, HEAD, OPTIONS");
            res.set(http::field::access_control_allow_methods, "GET, HEAD");
            res.set(http::field::access_control_allow_headers, "Range");
            res.set(http::field::access_control_max_age, "86400");
            return with_cors(std::move(res));
        }
        if (req.method() != http::verb::get && req.method() != http::verb::head) {
            auto res = refuse(req, http::status::method_not_allowed, "only GET");
            res.set(http::field::allow, "GET, HEAD, OPTIONS");
            return res;
        }
        const std::string target(req.target());
        const std::string path = target.substr(0, target.find('?'));
        if (path == "/")
            return text_response(req, http::status::ok, parents_page(), "text/html; charset=utf-8");
        if (path == "/public/status") {
            return with_cors(text_response(
                req, http::status::ok,
                guard->view.public_status().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                    "\n",
                "application/json"));
        }
        return refuse(req, http::status::not_found, "not found");
    };

    // Every /live/ request is decided here, once: the playlist as a plain response, segments and
    // HTTP-FLV as streamed bodies, refusals with their reason.
    auto segments = std::make_shared<SegmentCache>();
    routes.stream_handler = [guard, segments, flv_on = settings.flv](
                                const Request& req, const std::string& client) -> StreamResult {
        const bool head = req.method() == http::verb::head;
        if (req.method() != http::verb::get && !head) return {};
        const std::string target(req.target());
        const std::string path = target.substr(0, target.find('?'));
        // Names are matched whole: a camera id, then the playlist or a file the muxer names, or .flv.
        static const std::regex hls(std::string(R"(^/live/([A-Za-z0-9_-]{1,64})/(index\.m3u8|)") +
                                    stream::kHlsFileName + ")$");
        static const std::regex flv(R"(^/live/([A-Za-z0-9_-]{1,64})\.flv$)");
        std::smatch m;
        const bool is_hls = std::regex_match(path, m, hls);
        if (!is_hls && !(flv_on && std::regex_match(path, m, flv))) return {};
        const std::string camera = m[1];
        std::optional<Response> refused;
        std::optional<std::int64_t> token_expires;
        auto* feed = guard->admit(req, camera, client, refused, token_expires);
        if (feed == nullptr) return std::move(*refused);
        const auto now = std::chrono::steady_clock::now();

        StreamReply reply;
        reply.head.version(req.version());
        reply.head.result(http::status::ok);
        reply.head.set(http::field::server, "kitchen-gateway");
        reply.head.set(http::field::access_control_allow_origin, "*");
        // HEAD: the head a GET gets, and no body (a finished, empty one).
        const auto head_only = [&reply]() -> StreamResult {
            reply.body = std::make_shared<LiveStream>(0);
            reply.body->finish();
            return std::move(reply);
        };
        if (!is_hls) {
            // A camera FLV cannot carry: refused for good, with where to look instead, not "starting"
            // forever (players would retry a stream that can never come).
            if (const auto codec = feed->flv().refused_codec(); !codec.empty()) {
                return refuse(req, http::status::unsupported_media_type,
                              fmt::format("this camera sends {}; HTTP-FLV carries H.264 only: watch "
                                          "/live/{}/index.m3u8 (HLS) instead",
                                          codec, camera));
            }
            if (auto cap = guard->over_cap(req, guard->view.viewers().admit_flv(camera, client, now), camera,
                                           client))
                return std::move(*cap);
            if (head) {
                // What a GET would get, without joining: a player or a monitor probing the stream.
                if (!feed->flv().live()) return starting(req);
                reply.head.set(http::field::content_type, "video/x-flv");
                reply.head.set(http::field::cache_control, "no-store");
                return head_only();
            }
            // Up to ~4 MiB queued per viewer: a few seconds of video; beyond it the viewer is too slow.
            auto stream = feed->flv().subscribe(4u << 20);
            if (!stream) return starting(req);
            // HLS asks for the token again at every playlist; an HTTP-FLV stream is one request,
            // and ends when its token expires (valid through its second, as at admission).
            // A token for "never" (9999999999 and the like) is past what a time_point holds.
            constexpr auto kLatest = std::chrono::duration_cast<std::chrono::seconds>(
                                         std::chrono::system_clock::time_point::max().time_since_epoch())
                                         .count() -
                                     1;
            if (token_expires && *token_expires < kLatest) {
                stream->end_at(
                    std::chrono::system_clock::time_point(std::chrono::seconds(*token_expires + 1)));
            }
            guard->view.viewers().add_flv(camera, client, stream);
            reply.head.set(http::field::content_type, "video/x-flv");
            reply.head.set(http::field::cache_control, "no-store");
            reply.body = std::move(stream);
            return reply;
        }

        const std::string file = m[2];
        const auto query = parse_query(target);
        const auto sid = value_of(query, "sid");
        const auto token = value_of(query, "token");
        if (!plain(sid, 64) || !plain(token, 128))
            return refuse(req, http::status::bad_request, "bad sid or token");
        // A HEAD is told what a GET would be told, but is not a viewer. Nor is a session that only
        // asks for the playlist or the init file: a viewer is one that is served a media segment.
        // Counted from the playlist on, made-up session ids from a few addresses held every place
        // of a camera (8 playlist requests an address every 10 s), at no cost to whoever sent them.
        auto& viewers = guard->view.viewers();
        const auto admit = !head && file == "index.m3u8" ? viewers.playlist(camera, client, sid, now)
                                                         : viewers.peek_hls(camera, client, sid, now);
        if (auto cap = guard->over_cap(req, admit, camera, client)) return std::move(*cap);
        if (file == "index.m3u8") {
            const auto data = read_file(feed->hls_folder() + "/" + file);
            if (!data) return starting(req);  // its first segment is not complete yet
            std::string query;
            if (!sid.empty()) query += "sid=" + sid;
            if (!token.empty()) query += (query.empty() ? "" : "&") + std::string("token=") + token;
            return with_cors(text_response(req, http::status::ok, with_query(*data, query),
                                           "application/vnd.apple.mpegurl"));
        }
        auto chunk = segments->get(feed->hls_folder(), file);
        if (!chunk) return refuse(req, http::status::not_found, "not found (not in the playlist now)");
        if (!head && file.ends_with(".m4s")) {
            // Counted once it gets video; a newcomer that lost the last place since the check above
            // is refused as the check would have.
            if (auto cap = guard->over_cap(req, viewers.hls(camera, client, sid, now), camera, client))
                return std::move(*cap);
        }
        reply.head.set(http::field::content_type, "video/mp4");
        reply.head.set(http::field::cache_control, "public, max-age=60");  // a segment never changes
        reply.head.content_length(chunk->size());
        if (head) return head_only();
        reply.body = std::make_shared<LiveStream>(chunk->size());
        reply.body->push(std::move(chunk));
        reply.body->finish();
        return reply;
    };
    return routes;
}

}  // namespace kg::web
