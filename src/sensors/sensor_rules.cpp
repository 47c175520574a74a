#include "sensors/sensor_rules.hpp"

#include <algorithm>
#include <cmath>

namespace kg::sensors {
namespace {

events::TrackerRule immediate(int severity) {
    events::TrackerRule r;
    r.confirm = Duration(0);
    r.clear = Duration(0);
    r.cooldown = Duration(0);
    r.median_window = 1;
    r.severity = severity;
    return r;
}

// When the reading arrived, and when it was measured, on the monotonic clock. A device's own time
// (believed only within minutes of the arrival, MqttSensorInput::reading_time) says how long before
// its arrival it was measured.
struct SteadyTimes {
    SteadyPoint arrived, measured;
};
SteadyTimes steady_times(const Reading& r) {
    const TimePoint arrival = r.arrival.value_or(r.time);
    const SteadyPoint arrived = r.arrived_steady.value_or(steady_from_wall(arrival));
    return {arrived, arrived - std::chrono::duration_cast<SteadyPoint::duration>(arrival - r.time)};
}

// A probe that reads impossible values now and then (a DS18B20's -127 or 85 on a loose wire) is one
// fault, not an alert per glitch: the condition ends only once the readings have stayed possible for
// ten minutes (or two intervals, if longer). Two intervals alone ended it between glitches a few
// readings apart: twelve alerts an hour from a probe read every minute and glitching every fifth.
constexpr Duration kInvalidClearAtLeast = std::chrono::minutes(10);

events::TrackerRule invalid_rule(const config::Sensor& sensor) {
    events::TrackerRule r = immediate(2);
    r.clear = std::max<Duration>(sensor.interval * 2, kInvalidClearAtLeast);
    return r;
}

}  // namespace

bool in_valid_range(const config::Sensor& sensor, double value) {
    return std::isfinite(value) && (!sensor.min_valid || value >= *sensor.min_valid) &&
           (!sensor.max_valid || value <= *sensor.max_valid);
}

SensorRules::SensorRules(const config::Sensor& sensor, const rules::Calendar& calendar,
                         const std::map<std::string, rules::Schedule>& schedules,
                         events::EventIdGenerator& ids, TimePoint started,
                         std::optional<SteadyPoint> started_steady)
    : sensor_(sensor),
      calendar_(calendar),
      offline_(sensor.id, "sensor_health", "offline", "", immediate(2), ids),
      invalid_(sensor.id, "sensor_health", "invalid", "", invalid_rule(sensor), ids),
      started_(started),
      started_steady_(started_steady.value_or(steady_from_wall(started))) {
    for (const auto& th : sensor_.thresholds) {
        events::TrackerRule r = immediate(th.severity);
        r.confirm = th.for_time;
        r.clear = th.clear_for;
        r.cooldown = th.cooldown;
        limits_.push_back({&th, th.schedule.empty() ? nullptr : &schedules.at(th.schedule),
                           events::EventTracker(sensor_.id, "sensor", th.label, "", r, ids)});
    }
    if (sensor_.disinfection) {
        missed_.emplace(sensor_.id, "disinfection", "missed_cycle", "",
                        immediate(sensor_.disinfection->severity), ids);
        window_ = &schedules.at(sensor_.disinfection->schedule);
        // Started inside a window (a reload, a restart): a cycle may have run before, unseen, so that
        // window is not judged; the next one is, from its start.
        in_window_ = calendar_.active(*window_, started);
        judge_window_ = !in_window_;
    }
}

void SensorRules::decorate(events::Event& e, std::optional<double> value) const {
    e.from_sensor = true;
    // A device's "no measurement" (NaN) is no value to show: the message has none.
    if (value && std::isfinite(*value)) e.value = value;
    e.unit = sensor_.unit;
    if (e.check == "disinfection" && e.label == "missed_cycle") e.windows_missed = windows_missed_;
}

void SensorRules::emit(std::optional<events::Event> e, std::optional<double> value,
                       std::vector<events::Event>& out) const {
    if (!e) return;
    decorate(*e, value);
    out.push_back(std::move(*e));
}

std::vector<events::EventTracker::Handover> SensorRules::hand_over(TimePoint now, const std::string& reason) {
    std::vector<events::EventTracker::Handover> out;
    const auto take = [&](events::EventTracker& tracker, int slot) {
        if (auto h = tracker.hand_over(now, reason)) {
            decorate(h->end, value_);
            h->slot = slot;
            out.push_back(std::move(*h));
        }
    };
    for (std::size_t i = 0; i < limits_.size(); ++i) take(limits_[i].tracker, static_cast<int>(i));
    take(offline_, -1);
    take(invalid_, -1);
    if (missed_) take(*missed_, -1);
    return out;
}

bool SensorRules::judged_alike(const config::Sensor& before) const {
    // A new valid_range or silence may make the condition another one (a sensor "offline" under the
    // old silence that is not under the new, ended as cleared unread).
    return before.id == sensor_.id && before.source == sensor_.source && before.unit == sensor_.unit &&
           before.min_valid == sensor_.min_valid && before.max_valid == sensor_.max_valid &&
           before.interval == sensor_.interval && before.stale_after == sensor_.stale_after;
}

SensorRules::Limit* SensorRules::same_limit(std::size_t index, const config::Sensor& before) {
    // A threshold changed (an installer raising a limit that alarmed falsely) judges anew.
    if (index >= limits_.size() || index >= before.thresholds.size()) return nullptr;
    return before.thresholds[index] == *limits_[index].config ? &limits_[index] : nullptr;
}

std::map<std::size_t, TimePoint> SensorRules::pending_limits() const {
    std::map<std::size_t, TimePoint> out;
    for (std::size_t i = 0; i < limits_.size(); ++i) {
        if (const auto since = limits_[i].tracker.pending_since()) out[i] = *since;
    }
    return out;
}

void SensorRules::resume_pending(const std::map<std::size_t, TimePoint>& pending,
                                 const config::Sensor& before, TimePoint now, SteadyPoint steady_now) {
    if (!judged_alike(before)) return;
    for (const auto& [index, since] : pending) {
        if (auto* l = same_limit(index, before)) l->tracker.resume_pending(since, now, steady_now);
    }
}

bool SensorRules::take_over(const events::EventTracker::Handover& h, const config::Sensor& before,
                            TimePoint now, SteadyPoint steady_now) {
    if (!judged_alike(before) || h.end.source != sensor_.id) return false;
    events::EventTracker* tracker = nullptr;
    const auto& check = h.end.check;
    const auto& label = h.end.label;
    if (check == "sensor_health") {
        tracker = label == "offline" ? &offline_ : label == "invalid" ? &invalid_ : nullptr;
    } else if (check == "disinfection") {
        if (missed_ && label == "missed_cycle" && before.disinfection == sensor_.disinfection) {
            tracker = &*missed_;
            if (!missed_->active()) windows_missed_ = std::max<std::uint32_t>(1, h.end.windows_missed);
        }
    } else if (check == "sensor" && h.slot >= 0) {
        // The alert of a changed threshold ends as at a stop.
        auto* l = same_limit(static_cast<std::size_t>(h.slot), before);
        if (l != nullptr && l->config->label == label) tracker = &l->tracker;
    }
    return tracker != nullptr && tracker->take_over(h, now, steady_now);
}

void SensorRules::close(TimePoint now, const std::string& reason, std::vector<events::Event>& out) {
    for (auto& l : limits_) emit(l.tracker.close(now, reason), value_, out);
    emit(offline_.close(now, reason), value_, out);
    emit(invalid_.close(now, reason), value_, out);
    if (missed_) emit(missed_->close(now, reason), value_, out);
}

void SensorRules::track_cycle(double value, TimePoint t) {
    if (value >= sensor_.disinfection->setpoint) {
        if (!hot_since_) hot_since_ = t;
        extend_cycle(t);
        // Hot since before these rules started, for all they know: a cycle begun at 12:15 and seen
        // from a restart at 12:27 on ran 20 minutes, not the 8 seen, and its window is not judged.
        if (!cycle_start_known_ && in_window_ && judge_window_) unknown_cycle_in_window_ = true;
    } else {
        // The last hot reading held until this one, as a threshold's does: a probe read every 5
        // minutes saw a 13-minute cycle hot for 5 of them.
        extend_cycle(t);
        hot_since_.reset();
        cycle_start_known_ = true;
    }
}

void SensorRules::extend_cycle(TimePoint until) {
    // Complete once it has held long enough, and a cycle at every moment it goes on: one that
    // began before the window and ran into it, or a cabinet hot all through the window, counts for
    // that window (only the moment it first held long enough was kept, before the window: missed).
    if (hot_since_ && until - *hot_since_ >= sensor_.disinfection->min_time)
        last_cycle_ = std::max(last_cycle_.value_or(until), until);
}

void SensorRules::observe(const Reading& reading, std::vector<events::Event>& out) {
    const double v = reading.value;
    const TimePoint t = reading.time;
    const TimePoint arrived = reading.arrival.value_or(t);
    const auto steady = steady_times(reading);
    // Measured before the newest reading already taken (a device's queued message sent late, its
    // own `time` believed): it says the sensor is alive, but not what it reads now. Taken as the
    // current value it ended a real too_warm as "cleared" and set the state's time back (the sensors
    // review); the roll-ups place it in its own minute. Only a reading that carries the device's
    // time, compared on the monotonic clock: one timed by its arrival is the newest by definition,
    // whatever the gateway's wall clock did (set back, every reading would have been "late").
    const bool late = reading.arrival && last_measured_steady_ && steady.measured < *last_measured_steady_;
    last_time_ = std::max(last_time_.value_or(t), t);
    last_measured_steady_ = std::max(last_measured_steady_.value_or(steady.measured), steady.measured);
    last_arrival_steady_ = std::max(last_arrival_steady_.value_or(steady.arrived), steady.arrived);
    // On the arrival's clock, like tick(): a device whose clock lags must not read as silent.
    emit(offline_.observe(arrived, steady.arrived, 0.0f), v, out);
    if (late) {
        // The newest value still holds while the device keeps talking (its clock set back a few
        // minutes sends only "late" readings until it catches up): not ended as impossible readings.
        late_arrival_steady_ = steady.arrived;
        return;
    }

    const bool valid = in_valid_range(sensor_, v);
    emit(invalid_.observe(t, steady.measured, valid ? 0.0f : 1.0f), v, out);
    last_valid_ = valid;
    // An impossible value says the probe is broken, not that the fridge is warm. It tells no more
    // than a missing reading, so the last good one holds over it as over a gap (tick()), and only a
    // run of them as long as a silence forgets what was pending: forgotten at every glitch, a fridge
    // at 12 degC whose probe read -127 every fifth minute never raised its 10-minute too_warm.
    if (!valid) return;
    value_ = v;
    value_time_ = t;
    value_measured_steady_ = steady.measured;
    value_arrival_steady_ = steady.arrived;
    binary_ = reading.binary;

    check_limits(v, t, steady.measured, out);
    if (sensor_.disinfection) {
        track_cycle(v, t);
        // A complete cycle clears a missed one.
        if (missed_->active() && last_cycle_ && *last_cycle_ >= window_start_)
            emit(missed_->observe(t, steady.measured, 0.0f), v, out);
    }
}

void SensorRules::resume(const Reading& last, SteadyPoint steady_now, std::vector<events::Event>& out) {
    if (!in_valid_range(sensor_, last.value)) return;
    const auto steady = steady_times(last);
    last_time_ = last.time;
    last_measured_steady_ = steady.measured;
    last_arrival_steady_ = steady.arrived;
    last_valid_ = true;
    value_ = last.value;
    value_time_ = last.time;
    value_measured_steady_ = steady.measured;
    value_arrival_steady_ = steady.arrived;
    binary_ = last.binary;
    // Judged now, on the readings' clock, as tick() does; not a reading older than a silence, which
    // no longer holds (a detector offline at the reload raised its alarm again in the next run).
    const auto since = steady_now - steady.arrived;
    if (since >= sensor_.silence_limit()) return;
    check_limits(last.value, last.time + std::chrono::duration_cast<Duration>(since), steady.measured + since,
                 out);
}

void SensorRules::forget_pending(TimePoint t) {
    for (auto& l : limits_) {
        if (!l.tracker.active()) l.tracker.close(t, {});  // an open event stays; nothing is sent
    }
    // Nor does a disinfection cycle count across a gap nobody saw: hot before and after is not hot
    // throughout.
    hot_since_.reset();
}

void SensorRules::check_limits(double v, TimePoint t, SteadyPoint steady, std::vector<events::Event>& out) {
    for (auto& l : limits_) {
        const auto& th = *l.config;
        // Hysteresis: a violation ends only once the value is back past the limit by `hysteresis`.
        // Not for true/false: `above: 0` on a gas detector's 1/0 would then never end.
        double h = binary_ ? 0.0 : th.hysteresis;
        // Nor past the valid range's edge, the furthest value an end can wait for: an MQTT alarm
        // that sends 1 and 0 as numbers ({"alarm": 1}, valid_range [0, 1]) under `above: 0` ended
        // only at -0.5, never. (A Modbus sensor so configured is refused at load.)
        if (th.above && sensor_.min_valid) h = std::min(h, std::max(0.0, th.value - *sensor_.min_valid));
        if (!th.above && sensor_.max_valid) h = std::min(h, std::max(0.0, *sensor_.max_valid - th.value));
        if (l.schedule != nullptr && !calendar_.active(*l.schedule, t)) {
            // Outside its schedule the rule judges nothing: an open event ends, not as cleared (the
            // room took a fridge still at 10 degC for mended when the window closed), and nothing
            // pending carries over to the next window.
            emit(l.tracker.close(t, events::kEndScheduleEnded), v, out);
            continue;
        }
        // And the band holds on the way up too: a condition pending its `for` is not started again
        // by a reading just back inside the limit (a fridge at 8.3, 8.4, 7.9, 8.5 degC repeated
        // never confirmed `above: 8` while its food stayed warm for hours).
        const bool held = l.tracker.active() || l.tracker.pending_since().has_value();
        const double limit = held ? (th.above ? th.value - h : th.value + h) : th.value;
        const bool violated = th.above ? v > limit : v < limit;
        emit(l.tracker.observe(t, steady, violated ? 1.0f : 0.0f), v, out);
    }
}

void SensorRules::end_for_offline(std::vector<events::Event>& out) {
    // As of the last reading, as a camera's events end as of its last frame: an outage of hours is
    // not hours of the condition. Still there when readings return, it is a new event once
    // confirmed again. No cooldown runs from these ends: the condition was not seen to clear, and
    // a gas alarm back with the detector must not wait out a cooldown unsaid.
    const TimePoint last = last_time_.value_or(started_);
    for (auto& l : limits_) emit(l.tracker.close(last, events::kEndSensorOffline), value_, out);
    emit(invalid_.close(last, events::kEndSensorOffline), value_, out);
}

void SensorRules::end_for_invalid(std::vector<events::Event>& out) {
    const TimePoint last = value_time_.value_or(started_);
    for (auto& l : limits_) emit(l.tracker.close(last, events::kEndSensorInvalid), value_, out);
}

void SensorRules::judge(const Window& w, TimePoint now, SteadyPoint steady_now,
                        std::vector<events::Event>& out) {
    const bool done = last_cycle_ && *last_cycle_ >= w.start;
    if (done || w.unknown_cycle) return;
    if (missed_->active()) {
        // Another window without a cycle: the room (and a regulator's tally of missed services)
        // counts two where the alert open since the first said nothing more.
        ++windows_missed_;
        emit(missed_->renew(now), value_, out);
        return;
    }
    windows_missed_ = 1;
    emit(missed_->observe(now, steady_now, 1.0f), value_, out);
}

void SensorRules::tick(TimePoint now, SteadyPoint steady_now, std::vector<events::Event>& out) {
    last_tick_ = now;
    const SteadyPoint seen = last_arrival_steady_.value_or(started_steady_);
    const bool stale = steady_now - seen >= sensor_.silence_limit();
    auto offline = offline_.observe(now, steady_now, stale ? 1.0f : 0.0f);
    const bool went_offline = offline && offline->state == events::EventState::start;
    emit(std::move(offline), value_, out);
    if (went_offline) end_for_offline(out);
    // The last good reading holds until the next one: a door contact reports when the door opens,
    // then nothing while it stays open, and `for` must run out all the same. Over impossible
    // readings too, for as long as over silence. On the readings' clock, as they are timed (the
    // time since its arrival added to its own time).
    const bool held =
        value_ && value_arrival_steady_ &&
        (steady_now - *value_arrival_steady_ < sensor_.silence_limit() ||
         (late_arrival_steady_ && steady_now - *late_arrival_steady_ < sensor_.silence_limit()));
    if (held) {
        const auto since = steady_now - *value_arrival_steady_;
        const TimePoint at = *value_time_ + std::chrono::duration_cast<Duration>(since);
        check_limits(*value_, at, *value_measured_steady_ + since, out);
        if (sensor_.disinfection) extend_cycle(at);
    } else {
        // `for` counts what the sensor keeps seeing: a condition pending confirmation when it went
        // silent (or read only impossible values as long) starts afresh at its next good reading,
        // not dated back over the gap. An event open through impossible readings ends, as one
        // open through silence does: left open, it outlived its schedule and spanned the night.
        forget_pending(now);
        if (!stale) end_for_invalid(out);
    }

    if (window_ != nullptr) {
        const bool active = calendar_.active(*window_, now);
        if (pending_ && (!hot_since_ || (last_cycle_ && *last_cycle_ >= pending_->start))) {
            judge(*pending_, now, steady_now, out);
            pending_.reset();
        }
        if (active && !in_window_) {
            window_start_ = now;
            judge_window_ = true;
            unknown_cycle_in_window_ = hot_since_ && !cycle_start_known_;
        }
        if (!active && in_window_ && judge_window_) {
            // The window just ended: was there a complete cycle in it? A cycle still running is
            // judged when it ends: a 45-minute cycle begun 15 minutes before the window's end
            // raised missed_cycle at the end, with the cabinet at 125 degC.
            const Window ended{window_start_, unknown_cycle_in_window_};
            if (!hot_since_ || (last_cycle_ && *last_cycle_ >= window_start_)) {
                judge(ended, now, steady_now, out);
            } else if (!pending_) {  // an earlier window waiting on the same cycle is judged first
                pending_ = ended;
            }
        } else if (missed_->active() && last_cycle_ && *last_cycle_ >= window_start_) {
            // A cycle complete since (one the last reading, still hot, completed by holding).
            emit(missed_->observe(now, steady_now, 0.0f), value_, out);
        }
        in_window_ = active;
    }
}

SensorRules::Cycles SensorRules::cycles() const {
    Cycles c;
    c.last_cycle = last_cycle_;
    if (missed_ && missed_->active()) c.missed_since = window_start_;
    c.hot_since = hot_since_;
    c.start_known = cycle_start_known_;
    if (pending_) c.pending_since = pending_->start;
    if (in_window_ && judge_window_) {
        c.judging_since = window_start_;
        c.unknown_cycle_in_window = unknown_cycle_in_window_;
    }
    c.last_tick = last_tick_;
    return c;
}

void SensorRules::resume_cycles(const Cycles& carried, TimePoint now, SteadyPoint steady_now,
                                std::vector<events::Event>& out) {
    if (!missed_) return;
    if (carried.last_cycle)
        last_cycle_ = std::max(last_cycle_.value_or(*carried.last_cycle), *carried.last_cycle);
    // A cycle running at the reload goes on, if the last reading taken over (resume()) is hot: a
    // 20-minute cycle cut by a reload at its 13th minute counted 7, and its window was missed.
    if (carried.hot_since && value_ && last_valid_ && *value_ >= sensor_.disinfection->setpoint) {
        hot_since_ = std::min(hot_since_.value_or(*carried.hot_since), *carried.hot_since);
        cycle_start_known_ = carried.start_known;
    } else {
        cycle_start_known_ = true;  // the previous run saw the cabinet cool, or no cycle at all
    }
    // A window that ended during a cycle, not yet judged: judged when the cycle ends (tick()).
    if (carried.pending_since) pending_ = Window{*carried.pending_since, false};
    if (carried.missed_since && !(last_cycle_ && *last_cycle_ >= *carried.missed_since)) {
        // A cycle from that window's start on ends it, as before the reload.
        window_start_ = *carried.missed_since;
        if (!missed_->active()) windows_missed_ = 1;  // else taken over with its count (take_over())
        emit(missed_->observe(now, steady_now, 1.0f), value_, out);
    }
    // A reload within a window the previous run watched from its start: a cycle before the reload
    // is known, so the window is judged (left unjudged, a site that pushes its configuration by
    // reload around meal times missed its alerts: the 52nd session's review). Only while the
    // schedule as now configured began that window then and has not left it since.
    if (carried.judging_since && in_window_ && !judge_window_ &&
        same_window_since(*carried.judging_since, now)) {
        judge_window_ = true;
        window_start_ = *carried.judging_since;
        unknown_cycle_in_window_ = carried.unknown_cycle_in_window;
    } else if (carried.judging_since && !in_window_) {
        // The window ended during the reload (the run before stopped ticking while the next was
        // built): judged now, as its end would have been.
        const Window ended{*carried.judging_since, carried.unknown_cycle_in_window};
        if (!hot_since_ || (last_cycle_ && *last_cycle_ >= ended.start)) {
            judge(ended, now, steady_now, out);
        } else if (!pending_) {
            pending_ = ended;
        }
    } else if (!carried.judging_since && in_window_ && !judge_window_ && carried.last_tick &&
               *carried.last_tick <= now && !calendar_.active(*window_, *carried.last_tick)) {
        // The window began during the reload: the run before watched the cabinet up to it.
        TimePoint start = *carried.last_tick;
        while (start < now && !calendar_.active(*window_, start)) start += std::chrono::minutes(1);
        start = std::min(start, now);
        if (same_window_since(start, now)) {
            judge_window_ = true;
            window_start_ = start;
            unknown_cycle_in_window_ = hot_since_ && !cycle_start_known_;
        }
    }
}

bool SensorRules::same_window_since(TimePoint since, TimePoint now) const {
    using std::chrono::minutes;
    if (since > now || now - since > std::chrono::hours(24 * 8)) return false;
    if (calendar_.active(*window_, since - minutes(1))) return false;  // began earlier: not the same
    for (TimePoint t = since; t < now; t += minutes(1)) {
        if (!calendar_.active(*window_, t)) return false;
    }
    return true;
}

SensorState SensorRules::state(SteadyPoint steady_now) const {
    SensorState s;
    s.value = value_;
    s.time = value_time_;
    s.online = last_arrival_steady_ && steady_now - *last_arrival_steady_ < sensor_.silence_limit();
    if (offline_.active()) s.conditions.push_back("offline");
    if (invalid_.active()) s.conditions.push_back("invalid");
    for (const auto& l : limits_) {
        if (l.tracker.active()) s.conditions.push_back(l.config->label);
    }
    if (missed_ && missed_->active()) s.conditions.push_back("missed_cycle");
    return s;
}

}  // namespace kg::sensors
