#pragma once
// The missed disinfection cycles a previous run left raised. Its stop (or, after a crash, this
// start) ended them in the room with a reason the room does not take for mended, yet nothing raised
// them again until the next window ended, hours later, while no cycle had been seen. A reload hands
// them over itself (CarryOver); a restart finds them in the event messages the outbox keeps.

#include <map>
#include <string>
#include <vector>

#include "common/time.hpp"

namespace kg::app {

// Sensor id -> when its missed cycle was raised, for each sensor whose newest `missed_cycle`
// message in `payloads` (event messages as published, oldest first) is a start not ended, or an end
// the gateway made itself (a stop, a restart): not one that a cycle cleared. Only those raised within
// `max_age` before `now`: after a longer outage a cycle may have run unseen.
std::map<std::string, TimePoint> missed_cycles_left(const std::vector<std::string>& payloads, TimePoint now,
                                                    Duration max_age);

}  // namespace kg::app
