#pragma once
// What an event message says beyond its common fields, as the room keeps and shows it: its `cause`
// (docs/mqtt.md: a camera's outage says why it cannot be read), a short kind to sort by and the
// gateway's text, made short and printable; a missed disinfection's `windows_missed`.

#include <cstddef>
#include <cstdint>
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

struct WindowsRead {
    std::optional<std::int64_t> windows;
    bool unusable = false;  // there was one, not a whole number from 1
};
// The payload's windows_missed, if it is a whole number from 1; an event is never refused for it.
WindowsRead read_windows_missed(const nlohmann::json& payload);

}  // namespace kg::monitor
