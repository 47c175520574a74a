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
// Monotonic time, for durations that must survive a step of the wall clock (NTP, an operator).
using SteadyPoint = std::chrono::steady_clock::time_point;

// For a caller whose times are scripted or come with the data (sensor readings, tests): its wall
// times stand in for monotonic ones.
inline SteadyPoint steady_from_wall(TimePoint t) {
    return SteadyPoint(std::chrono::duration_cast<SteadyPoint::duration>(t.time_since_epoch()));
}

// "2026-11-24T06:26:13.123Z": UTC, millisecond precision, as every payload carries it.
std::string iso8601_utc(TimePoint t);

inline double seconds_between(TimePoint from, TimePoint to) {
    return std::chrono::duration<double>(to - from).count();
}

}  // namespace kg
