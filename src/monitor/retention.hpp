#pragma once
// How long the monitoring room keeps what it no longer works on. A room taking alerts, pictures
// and per-minute sensor curves from hundreds of canteens for years would otherwise fill its disk.
// `nullopt`: kept for ever.

#include <chrono>
#include <optional>

namespace kg::monitor {

struct Retention {
    using Duration = std::chrono::milliseconds;
    // Closed alerts (closed by an operator this long ago), with their message history, snapshot and
    // actions. Open and acknowledged alerts are work still to do and are never deleted. Two years:
    // enough for a year-on-year look at a canteen's record.
    std::optional<Duration> alerts{std::chrono::hours(24 * 730)};
    // The snapshots (staff pictures) of closed alerts, and snapshots whose event never came. Shorter
    // than the alerts: the record stays, the pictures of people go.
    std::optional<Duration> snapshots{std::chrono::hours(24 * 180)};
    // Sensor roll-ups (one row per sensor and minute: the largest table by far).
    std::optional<Duration> rollups{std::chrono::hours(24 * 90)};
};

}  // namespace kg::monitor
