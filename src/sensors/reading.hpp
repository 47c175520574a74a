#pragma once
// One value from one sensor, whichever protocol brought it.

#include <string>

#include "common/time.hpp"

namespace kg::sensors {

struct Reading {
    std::string sensor;  // sensor id
    double value = 0;
    TimePoint time{};
};

}  // namespace kg::sensors
