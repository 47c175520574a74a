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
};

}  // namespace kg::sensors
