#pragma once
// The local side, for installers and the monitor (loopback by default):
//   GET /healthz            liveness
//   GET /readyz             cameras delivering frames and the broker connected (503 with reasons if not)
//   GET /metrics            Prometheus text format
//   GET /api/cameras, /api/sensors, /api/events?limit=N, /api/events/<id>,
//       /api/events/<id>/snapshot.jpg, /api/events/<id>/clip.mp4 (whole or in byte ranges)
//   GET /api/outbox/dead?limit=N   the messages the broker refused, moved aside
//   POST /api/outbox/requeue       puts them back in the queue (after the cause was mended)
// The /api routes need `Authorization: Bearer <token>` with the configured token; without a token
// configured they are off (there is never a default token).

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "web/http_server.hpp"

namespace kg::web {

// What the local API may see of the gateway. Called on the HTTP server's thread.
class GatewayView {
public:
    virtual ~GatewayView() = default;
    virtual nlohmann::json cameras() const = 0;
    virtual nlohmann::json sensors() const = 0;
    virtual nlohmann::json recent_events(std::size_t limit) const = 0;
    // One event: its latest message, with the evidence its earlier messages named, and which of its
    // files are on disk now (`has_snapshot`, `has_best`, `has_clip`); nothing if no message of it
    // is kept (in memory, or in the outbox for outbox.keep_sent).
    virtual std::optional<nlohmann::json> event(const std::string& event_id) const = 0;
    // Its clip is being recorded (its post-roll) and not yet reported.
    virtual bool clip_pending(const std::string& event_id) const = 0;
    // The evidence file of an event ("snapshot", "snapshot_end", "clip"), as an absolute path.
    virtual std::optional<std::string> evidence_file(const std::string& event_id,
                                                     const std::string& kind) const = 0;
    virtual bool ready(std::string& why_not) const = 0;
    virtual std::string metrics() const = 0;
    virtual nlohmann::json dead_messages(std::size_t limit) const = 0;
    // Puts the messages moved aside back in the outbox's queue; how many went back.
    virtual std::size_t requeue_dead() = 0;
};

// Asks for a reload of the configuration: nothing when it goes ahead, else why not (the errors).
using ReloadFn = std::function<std::optional<std::string>()>;

// POST /api/reload is served when `reload` is given.
Handler local_api(GatewayView& view, std::string token, std::shared_ptr<spdlog::logger> log,
                  ReloadFn reload = {});

}  // namespace kg::web
