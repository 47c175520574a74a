#pragma once
// The public side, for parents: only cameras marked `public` exist here, and nothing else of the
// gateway is reachable from it.
//   GET /                         the parents' page
//   GET /public/status            site name, public cameras and whether they are live, fridge temperatures
//   GET /live/<camera>/index.m3u8 live HLS playlist; /live/<camera>/<segment>.ts its segments

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "web/http_server.hpp"

namespace kg::web {

class PublicView {
public:
    virtual ~PublicView() = default;
    virtual nlohmann::json public_status() const = 0;
    // The HLS folder of a public camera; nullopt for any other id.
    virtual std::optional<std::string> public_hls_folder(const std::string& camera) const = 0;
};

Handler public_site(const PublicView& view, std::shared_ptr<spdlog::logger> log);

}  // namespace kg::web
