#pragma once
// The rules of one sensor, driven only by the times it is given (readings carry theirs; tick()
// brings the present), so 48-hour and 10-minute rules are tested in a second. Durations (`for`,
// `clear_for`, staleness) are timed on the monotonic clock, reports and schedules on the wall clock;
// callers without a monotonic time (scripted tests) let their wall times stand in:
// - thresholds with a duration and hysteresis ("sample fridge above 8 degC for 10 minutes"); a
//   reading holds until the next one while the sensor is online, so `for` runs out between readings;
//   a threshold with a schedule ends its open event when the schedule ends ("schedule ended");
// - a value outside the physically possible range is `sensor_health/invalid`, not a false alarm;
//   it tells no more than a missing reading, so the last good one holds over it as over a gap;
// - no reading for `stale_after` intervals (and a margin: config::Sensor::silence_limit()) is
//   `sensor_health/offline`, and ends the thresholds' open events ("sensor offline");
// - disinfection: a cycle counts only at or above the set point for the minimum time; at the end
//   of each window of its schedule without a complete cycle, `disinfection/missed_cycle` starts, and
//   ends with the next complete cycle. A cycle still running when the window ends is judged when it
//   ends. A window is not judged when a cycle the rules did not see begin could have completed it:
//   one already running at the start, or one hot at the first reading after the start.
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
    // Since when the sensor has been silent as the rules count it: its last reading's arrival, or
    // the run's start. Handed to the next run at a reload (resume_silence), so that a sensor never
    // read, offline at the reload, is offline again at once, not after a whole silence of the new
    // run (its alert ended by the stop and raised again minutes, or hours, later).
    SteadyPoint silent_since() const { return last_arrival_steady_.value_or(started_steady_); }
    void resume_silence(SteadyPoint since) {
        // Impossible readings after the last good one (which resume() takes) kept the sensor online
        // there: taken for silent since the good one, a broken probe went offline at each reload.
        if (last_arrival_steady_) {
            last_arrival_steady_ = std::max(*last_arrival_steady_, since);
        } else {
            started_steady_ = std::min(started_steady_, since);
        }
    }
    // What a disinfection cabinet's rules know that its readings do not: the last complete cycle,
    // and a missed cycle open since the end of a window. Handed to the next run at a reload.
    struct Cycles {
        std::optional<TimePoint> last_cycle;
        std::optional<TimePoint> missed_since;   // the start of the window judged missed, while open
        std::optional<TimePoint> hot_since;      // a cycle in progress: hot since then
        bool start_known = true;                 // whether that cycle was seen to begin
        std::optional<TimePoint> pending_since;  // the start of a window that ended during that cycle
        // The window running now, judged by that run since its start, and whether a cycle it did
        // not see begin was hot in it.
        std::optional<TimePoint> judging_since;
        bool unknown_cycle_in_window = false;
        // That run's last tick: a window that began or ended after it began or ended during the
        // reload, unseen by either run.
        std::optional<TimePoint> last_tick;
    };
    Cycles cycles() const;
    // The previous run's, at a reload: its stop ended an open missed_cycle, which the room would
    // take for mended, and nothing judged it again until the next window ended. It starts again now
    // (a new event, as a threshold's condition still there does), and ends with the next cycle.
    // A window the previous run judged from its start is judged here too, when the schedule (as
    // now configured) has been the same window since then.
    void resume_cycles(const Cycles& carried, TimePoint now, SteadyPoint steady_now,
                       std::vector<events::Event>& out);
    void tick(TimePoint now, SteadyPoint steady_now, std::vector<events::Event>& out);
    void tick(TimePoint now, std::vector<events::Event>& out) { tick(now, steady_from_wall(now), out); }
    // Ends every open event of this sensor with `reason` (the gateway stops or reloads).
    void close(TimePoint now, const std::string& reason, std::vector<events::Event>& out);
    // At a reload, instead of close(): the open events go to the next run unended, each with the
    // end close() would have sent (EventTracker::Handover). Nothing is left open here.
    std::vector<events::EventTracker::Handover> hand_over(TimePoint now, const std::string& reason);
    // Takes over an event the previous run handed over, if this run judges its condition as that
    // one did (`before`: the sensor as that run had it): read the same way, over the same range and
    // silence, and the same threshold or disinfection rule. Call before resume(). False: not taken,
    // and the caller sends its end.
    bool take_over(const events::EventTracker::Handover& h, const config::Sensor& before, TimePoint now,
                   SteadyPoint steady_now);
    // The thresholds whose condition is pending confirmation (`for` running): the threshold's index
    // -> since when. Read at a reload before hand_over() and close(), which forget them.
    std::map<std::size_t, TimePoint> pending_limits() const;
    // Before resume(): a condition the previous run had pending, of a threshold judged as there
    // (as take_over()), is pending here from the same moment. Its `for` started again at each
    // reload: a site that reloads every few minutes never heard of a fridge warm for an hour.
    void resume_pending(const std::map<std::size_t, TimePoint>& pending, const config::Sensor& before,
                        TimePoint now, SteadyPoint steady_now);
    // Whether its offline event is open, and that event again as an update (its input found
    // another reason for the silence: the broker gone too). Nothing when it is not open.
    bool offline() const { return offline_.active(); }
    void renew_offline(TimePoint now, std::vector<events::Event>& out) {
        emit(offline_.renew(now), value_, out);
    }
    SensorState state(SteadyPoint steady_now) const;
    SensorState state(TimePoint now) const { return state(steady_from_wall(now)); }
    const config::Sensor& sensor() const { return sensor_; }
    // Whether the disinfection window running now goes unjudged: it was already running when these
    // rules started, so a cycle before then is unknown (a reload's resume_cycles() may take it up).
    bool skips_current_window() const { return in_window_ && !judge_window_; }

private:
    struct Limit {
        const config::Threshold* config = nullptr;
        const rules::Schedule* schedule = nullptr;
        events::EventTracker tracker;
    };
    void emit(std::optional<events::Event> e, std::optional<double> value,
              std::vector<events::Event>& out) const;
    // Whether this sensor is read and judged as `before` was: the same source, unit, valid range
    // and silence.
    bool judged_alike(const config::Sensor& before) const;
    // The threshold at `index`, if `before` had it there with the same settings (labels need not
    // be unique: two thresholds of one label swapped their alerts).
    Limit* same_limit(std::size_t index, const config::Sensor& before);
    // What a sensor's messages carry beside the tracker's: the value, the unit.
    void decorate(events::Event& e, std::optional<double> value) const;
    void track_cycle(double value, TimePoint t);
    // The hot spell in progress lasted until `until`: a complete cycle then, if long enough.
    void extend_cycle(TimePoint until);
    // Feeds `v`, the value at `t` on the readings' clock (`steady` on the monotonic one), to every
    // threshold.
    void check_limits(double v, TimePoint t, SteadyPoint steady, std::vector<events::Event>& out);
    // Forgets conditions pending confirmation (`for` running) and a disinfection cycle in progress;
    // open events stay open.
    void forget_pending(TimePoint t);
    // The sensor went silent: its thresholds' and invalid's open events end as of its last reading.
    void end_for_offline(std::vector<events::Event>& out);
    // The sensor read only impossible values for as long as a silence: its thresholds' open events
    // end as of its last good reading, as at an outage.
    void end_for_invalid(std::vector<events::Event>& out);
    // A window that ended, to be judged: its start, and whether a cycle the rules did not see begin
    // was hot in it (it may have been complete: not judged).
    struct Window {
        TimePoint start;
        bool unknown_cycle = false;
    };
    // Whether the disinfection schedule began a window at `since` and was active from then to `now`.
    bool same_window_since(TimePoint since, TimePoint now) const;
    // Whether `w` had a complete cycle; raises missed_cycle if not, unless unknown_cycle.
    void judge(const Window& w, TimePoint now, SteadyPoint steady_now, std::vector<events::Event>& out);

    const config::Sensor& sensor_;
    const rules::Calendar& calendar_;
    std::vector<Limit> limits_;
    events::EventTracker offline_, invalid_;
    std::optional<events::EventTracker> missed_;
    std::uint32_t windows_missed_ = 0;  // by the open missed_cycle (Event::windows_missed)
    const rules::Schedule* window_ = nullptr;

    TimePoint started_;
    SteadyPoint started_steady_;
    std::optional<double> value_;
    bool binary_ = false;                 // value_ came as true/false
    bool last_valid_ = false;             // the newest reading was within valid_range
    std::optional<TimePoint> last_time_;  // the newest reading's own time
    // value_'s own time: a probe that reads only impossible values for hours keeps its last good
    // value, which must not show as taken now. And when it was measured and arrived on the
    // monotonic clock: it holds over impossible readings for as long as over silence.
    std::optional<TimePoint> value_time_;
    std::optional<SteadyPoint> value_measured_steady_, value_arrival_steady_;
    // The newest reading on the monotonic clock: when it was measured, and when it arrived (liveness).
    std::optional<SteadyPoint> last_measured_steady_, last_arrival_steady_;
    std::optional<SteadyPoint>
        late_arrival_steady_;  // the arrival of the latest reading older than the newest
    // Disinfection cycle tracking.
    std::optional<TimePoint> hot_since_;
    std::optional<TimePoint> last_cycle_;  // the latest moment of a complete cycle
    bool in_window_ = false;
    bool judge_window_ = false;  // false for a window already running when these rules started
    TimePoint window_start_{};
    std::optional<TimePoint> last_tick_;  // the wall time of the last tick()
    // A cycle's start is seen only from a reading under the set point: after the start or a
    // silence, a hot cabinet may have been hot for long unseen.
    bool cycle_start_known_ = false;
    bool unknown_cycle_in_window_ = false;  // such a cycle was hot during the window running now
    // A window that ended during a cycle: judged when the cycle ends (or has run long enough),
    // even after the next window began, for which the same cycle counts too.
    std::optional<Window> pending_;
};

}  // namespace kg::sensors
