#pragma once
// One value from one sensor, whichever protocol brought it.

#include <optional>
#include <string>

#include "common/time.hpp"

namespace kg::sensors {

struct Reading {
    std::string sensor;  // sensor id
    double value = 0;
    TimePoint time{};  // when it was measured: the device's own time when it gives one
    // When it reached the gateway, if not `time`: whether the sensor is alive is judged on this,
    // so a device whose clock runs a minute behind is not taken for silent.
    std::optional<TimePoint> arrival;
    // The payload said true/false (a door contact, a gas or leak detector): two states, so a
    // threshold's hysteresis does not apply (it would put the end beyond the value that ends it).
    bool binary = false;
    // When it reached the gateway on the monotonic clock: liveness and durations are timed on it,
    // so a step of the wall clock (NTP at boot) neither takes every sensor for silent nor confirms a
    // threshold's `for` at once. Absent (scripted readings): the wall times stand in.
    std::optional<SteadyPoint> arrived_steady{};
};

}  // namespace kg::sensors
