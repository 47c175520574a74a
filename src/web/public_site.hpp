#pragma once
// The public side, for parents: only cameras marked `public` exist here, only within public hours,
// and nothing else of the gateway is reachable from it.
//   GET /                               the parents' page (live players, today's checks, fridges)
//   GET /public/status                  site, public hours, cameras, today's counts, temperatures
//   GET /live/<camera>/index.m3u8       live HLS (fMP4); /live/<camera>/<gN-...> its init and segments
//   GET /live/<camera>.flv              HTTP-FLV (flv.js, WeChat live-player)
// Stream URLs take ?token=<expiry>.<signature> when public.token_secret is set, and ?sid=<id>
// (the player's session, for the viewer caps).

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "stream/public_feed.hpp"
#include "web/http_server.hpp"
#include "web/viewer_counter.hpp"

namespace kg::web {

class PublicView {
public:
    virtual ~PublicView() = default;
    virtual nlohmann::json public_status() const = 0;
    // The feed of a public camera; null for any other id (private or unknown: they do not exist here).
    virtual stream::PublicFeed* public_feed(const std::string& camera) const = 0;
    virtual ViewerCounter& viewers() const = 0;
};

// The page, embedded at build time from web/assets/parents.html.
const char* parents_page();

struct PublicRoutes {
    Handler handler;
    StreamHandler stream_handler;
};
PublicRoutes public_site(const PublicView& view, const config::Public& settings,
                         std::shared_ptr<spdlog::logger> log);

// Limits of the public HTTP server from the config.
Limits public_limits(const config::Public& settings);

}  // namespace kg::web
