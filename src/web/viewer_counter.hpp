#pragma once
// Who is watching which public camera, for the viewer caps and the metrics. HLS is plain HTTP
// polling, so an HLS viewer is a session (client address + the player's session id) seen within
// the last `hls_window`; an HTTP-FLV viewer is an open connection, counted while its stream lives.
// Per camera, each session watching it counts; per address, each session once (a page's players
// share one), and each FLV connection.
// Thread-safe: asked from the HTTP side, read by the metrics.

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "web/live_stream.hpp"

namespace kg::web {

struct ViewerLimits {
    std::size_t per_camera = 50;
    std::size_t per_address = 8;
};

class ViewerCounter {
public:
    using Clock = std::chrono::steady_clock;
    ViewerCounter(ViewerLimits limits, std::chrono::seconds hls_window)
        : limits_(limits), window_(hls_window) {}

    enum class Admit { ok, camera_full, address_full };

    // An HLS request. A session already counted is always let through (a viewer is never cut off
    // mid-stream by newcomers); a new one only within the caps.
    Admit hls(const std::string& camera, const std::string& address, const std::string& session,
              Clock::time_point now);
    // What hls() would answer, without counting anyone (a HEAD request).
    Admit peek_hls(const std::string& camera, const std::string& address, const std::string& session,
                   Clock::time_point now);
    // A playlist request: what hls() would answer, counting nobody new (a session is a viewer from
    // its first media segment); a session already counted is seen now, so a player polling its
    // playlist between two long segments keeps its place.
    Admit playlist(const std::string& camera, const std::string& address, const std::string& session,
                   Clock::time_point now);
    // A new HTTP-FLV viewer: checked against the caps; on ok, call add_flv with its stream.
    Admit admit_flv(const std::string& camera, const std::string& address, Clock::time_point now);
    void add_flv(const std::string& camera, const std::string& address,
                 const std::shared_ptr<LiveStream>& stream);

    struct Count {
        std::size_t hls = 0, flv = 0;
    };
    Count viewers(const std::string& camera, Clock::time_point now);

private:
    void expire(Clock::time_point now);
    std::size_t on_camera(const std::string& camera) const;
    // Viewers from `address`: its HLS sessions (each once, whatever the cameras it watches) and
    // FLV connections. `session_known`: set when `session` is one of them.
    std::size_t from_address(const std::string& address, const std::string* session = nullptr,
                             bool* session_known = nullptr) const;
    // `session`: an HLS session joining `camera`; one the address already counts adds no viewer.
    Admit check(const std::string& camera, const std::string& address, const std::string* session) const;
    // An HLS request: peek counts and refreshes nobody, refresh keeps a counted session, count also
    // counts a new one within the caps.
    enum class Seen { peek, refresh, count };
    Admit session(const std::string& camera, const std::string& address, const std::string& session,
                  Clock::time_point now, Seen seen);

    struct Flv {
        std::string camera, address;
        std::weak_ptr<LiveStream> stream;
    };
    const ViewerLimits limits_;
    const std::chrono::seconds window_;
    std::mutex mutex_;
    // (camera, address, session) -> last seen
    std::map<std::tuple<std::string, std::string, std::string>, Clock::time_point> hls_;
    std::vector<Flv> flv_;
};

}  // namespace kg::web
