#pragma once
// An event message's `cause` (docs/mqtt.md: a camera's outage says why it cannot be read), as the
// room keeps and shows it: a short kind to sort by and the gateway's text, made short and printable.

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>

namespace kg::monitor {

// The text goes into notifications (a robot refuses a message over 4 KiB) and the dashboard.
inline constexpr std::size_t kMaxCauseTextBytes = 300;

struct CauseRead {
    std::optional<nlohmann::json> cause;  // {"kind", "text"}
    bool unusable = false;                // there was one, not an object of a kind and a text
};

// The payload's cause, if it has one the room can use; an event is never refused for its cause.
CauseRead read_event_cause(const nlohmann::json& payload);

}  // namespace kg::monitor
