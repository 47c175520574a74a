#pragma once
// The rules of one sensor, driven only by the times it is given (readings carry theirs; tick()
// brings the present), so 48-hour and 10-minute rules are tested in a second. Durations (`for`,
// `clear_for`, staleness) are timed on the monotonic clock, reports and schedules on the wall clock;
// callers without a monotonic time (scripted tests) let their wall times stand in:
// - thresholds with a duration and hysteresis ("sample fridge above 8 degC for 10 minutes"); a
//   reading holds until the next one while the sensor is online, so `for` runs out between readings;
// - a value outside the physically possible range is `sensor_health/invalid`, not a false alarm;
// - no reading for `stale_after` intervals (and a margin: config::Sensor::silence_limit()) is
//   `sensor_health/offline`;
// - disinfection: a cycle counts only at or above the set point for the minimum time; at the end
//   of each window of its schedule without a complete cycle, `disinfection/missed_cycle` starts, and
//   ends with the next complete cycle. A window already running at the start is not judged.
// Events share the cameras' life cycle (start/end, ids, severities) and go to the same outbox.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "events/event_tracker.hpp"
#include "rules/schedule.hpp"
#include "sensors/reading.hpp"

namespace kg::sensors {

struct SensorState {
    std::optional<double> value;    // the last valid reading
    std::optional<TimePoint> time;  // its own time (not that of an invalid reading since)
    bool online = false;
    std::vector<std::string> conditions;  // labels of the open events
};

// Whether `value` is physically possible for the sensor (its valid_range; any finite value without one).
bool in_valid_range(const config::Sensor& sensor, double value);

class SensorRules {
public:
    SensorRules(const config::Sensor& sensor, const rules::Calendar& calendar,
                const std::map<std::string, rules::Schedule>& schedules, events::EventIdGenerator& ids,
                TimePoint started, std::optional<SteadyPoint> started_steady = std::nullopt);

    void observe(const Reading& reading, std::vector<events::Event>& out);
    // The previous run's last reading, at a reload: it holds here as it did there (a door contact
    // that reported "open" and then nothing), with its own times, so the sensor is no fresher than it
    // was; but its limits are judged from `now` on, since the stop ended their events and a new one
    // must not start before that end. An impossible value is not taken over.
    void resume(const Reading& last, SteadyPoint steady_now, std::vector<events::Event>& out);
    void resume(const Reading& last, TimePoint now, std::vector<events::Event>& out) {
        resume(last, steady_from_wall(now), out);
    }
    // What a disinfection cabinet's rules know that its readings do not: the last complete cycle,
    // and a missed cycle open since the end of a window. Handed to the next run at a reload.
    struct Cycles {
        std::optional<TimePoint> last_cycle;
        std::optional<TimePoint> missed_since;  // the start of the window judged missed, while open
        std::optional<TimePoint> hot_since;     // a cycle in progress: hot since then
    };
    Cycles cycles() const;
    // The previous run's, at a reload: its stop ended an open missed_cycle, which the room would
    // take for mended, and nothing judged it again until the next window ended. It starts again now
    // (a new event, as a threshold's condition still there does), and ends with the next cycle.
    void resume_cycles(const Cycles& carried, TimePoint now, SteadyPoint steady_now,
                       std::vector<events::Event>& out);
    void tick(TimePoint now, SteadyPoint steady_now, std::vector<events::Event>& out);
    void tick(TimePoint now, std::vector<events::Event>& out) { tick(now, steady_from_wall(now), out); }
    // Ends every open event of this sensor with `reason` (the gateway stops or reloads).
    void close(TimePoint now, const std::string& reason, std::vector<events::Event>& out);
    SensorState state(SteadyPoint steady_now) const;
    SensorState state(TimePoint now) const { return state(steady_from_wall(now)); }
    const config::Sensor& sensor() const { return sensor_; }
    // Whether the disinfection window running now goes unjudged: it was already running when these
    // rules started, so a cycle before then is unknown.
    bool skips_current_window() const { return in_window_ && !judge_window_; }

private:
    struct Limit {
        const config::Threshold* config;
        const rules::Schedule* schedule;
        events::EventTracker tracker;
    };
    void emit(std::optional<events::Event> e, std::optional<double> value,
              std::vector<events::Event>& out) const;
    void track_cycle(double value, TimePoint t);
    // The hot spell in progress lasted until `until`: a complete cycle then, if long enough.
    void extend_cycle(TimePoint until);
    // Feeds `v`, the value at `t` on the readings' clock (`steady` on the monotonic one), to every
    // threshold.
    void check_limits(double v, TimePoint t, SteadyPoint steady, std::vector<events::Event>& out);
    // Forgets conditions pending confirmation (`for` running) and a disinfection cycle in progress;
    // open events stay open.
    void forget_pending(TimePoint t);

    const config::Sensor& sensor_;
    const rules::Calendar& calendar_;
    std::vector<Limit> limits_;
    events::EventTracker offline_, invalid_;
    std::optional<events::EventTracker> missed_;
    const rules::Schedule* window_ = nullptr;

    TimePoint started_;
    SteadyPoint started_steady_;
    std::optional<double> value_;
    bool binary_ = false;                 // value_ came as true/false
    bool last_valid_ = false;             // the newest reading was within valid_range
    std::optional<TimePoint> last_time_;  // the newest reading's own time
    // value_'s own time: a probe that reads only impossible values for hours keeps its last good
    // value, which must not show as taken now.
    std::optional<TimePoint> value_time_;
    // The newest reading on the monotonic clock: when it was measured, and when it arrived (liveness).
    std::optional<SteadyPoint> last_measured_steady_, last_arrival_steady_;
    // Disinfection cycle tracking.
    std::optional<TimePoint> hot_since_;
    std::optional<TimePoint> last_cycle_;  // the latest moment of a complete cycle
    bool in_window_ = false;
    bool judge_window_ = false;  // false for a window already running when these rules started
    TimePoint window_start_{};
};

}  // namespace kg::sensors
