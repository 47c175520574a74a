#pragma once
// Time types shared by every stage. Event and frame times are wall-clock (system_clock) because
// they are reported to people; durations between them are computed in the same clock so a test
// can script them.

#include <chrono>
#include <string>

namespace kg {

using Clock = std::chrono::system_clock;
using TimePoint = Clock::time_point;
using Duration = std::chrono::milliseconds;

// "2026-11-24T06:26:13.123Z": UTC, millisecond precision, as every payload carries it.
std::string iso8601_utc(TimePoint t);

inline double seconds_between(TimePoint from, TimePoint to) {
    return std::chrono::duration<double>(to - from).count();
}

}  // namespace kg
