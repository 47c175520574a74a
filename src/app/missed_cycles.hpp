#pragma once
// The missed disinfection cycles a previous run left raised. Its stop (or, after a crash, this
// start) ended them in the room with a reason the room does not take for mended, yet nothing raised
// them again until the next window ended, hours later, while no cycle had been seen. A reload hands
// them over itself (CarryOver); a restart finds them in the event messages the outbox keeps.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/time.hpp"

namespace kg::app {

struct MissedCycleLeft {
    TimePoint raised;
    std::optional<TimePoint> stopped;  // when the stop ended it; unset: left open (a crash)
};

// Sensor id -> its missed cycle, for each sensor whose newest `missed_cycle` message in `payloads`
// (event messages as published, oldest first) is a start not ended (a crash), or an end made by
// the gateway's stop: not one that a cycle cleared, nor the end a start made of a crashed run's
// raise (that start already judged it).
std::map<std::string, MissedCycleLeft> missed_cycles_left(const std::vector<std::string>& payloads);

// The newest `time` (or a roll-up's `minute`, plus the minute) among `payloads`: when the run that
// published them was last seen alive.
std::optional<TimePoint> newest_time(const std::vector<std::string>& payloads);

}  // namespace kg::app
