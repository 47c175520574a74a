#pragma once
// Turns a stream of per-frame observations of one (source, check, label, zone) into an event's
// life: start only after the smoothed score held for `confirm`, end only after it stayed clear for
// `clear`, no new start within `cooldown` of an end, and rate-limited updates in between. A single
// false detection therefore never opens an alert.

#include <optional>
#include <string>
#include <vector>

#include "events/event.hpp"
#include "events/event_id.hpp"

namespace kg::events {

struct TrackerRule {
    Duration confirm{std::chrono::seconds(5)};
    Duration clear{std::chrono::seconds(5)};
    Duration cooldown{0};
    Duration update_interval{std::chrono::seconds(30)};  // at most one update per interval
    float update_delta = 0.1f;                           // a score change this large is material
    float threshold = 0.5f;                              // a smoothed score at or above this is "present"
    int median_window = 1;                               // smoothed score: median of the last N observations
    int severity = 3;
};

class EventTracker {
public:
    EventTracker(std::string source, std::string check, std::string label, std::string zone, TrackerRule rule,
                 EventIdGenerator& ids);

    // Returns the message this observation causes, if any. confirm, clear, cooldown and the update
    // interval are timed on `steady`, so a step of the wall clock neither holds an event back nor
    // opens one early; `t` (wall) only goes into the messages.
    std::optional<Event> observe(TimePoint t, SteadyPoint steady, float score,
                                 const std::vector<vision::Box>& boxes = {});
    // For callers whose times are their own (sensor readings, scripted tests).
    std::optional<Event> observe(TimePoint t, float score, const std::vector<vision::Box>& boxes = {}) {
        return observe(t, steady_from_wall(t), score, boxes);
    }

    // Ends an open event now, whatever the condition (the gateway stops or reloads, the camera went
    // offline): the end carries `reason`, and the tracker starts afresh. Nothing if no event is open,
    // but a condition pending confirmation is forgotten all the same.
    // With `cooldown_from`, the rule's cooldown runs from then, as after an end of its own: a tracker
    // that lives on (a camera back from an outage) opens no second event for a condition that held.
    std::optional<Event> close(TimePoint t, const std::string& reason,
                               std::optional<SteadyPoint> cooldown_from = std::nullopt);

    // An open event handed from one run to the next at a reload, not ended: the next run's tracker
    // of the same condition takes it over, so the room sees one alert going on instead of an end
    // ("gateway stopped", not seen to clear) and a new start with a new id, which it notified and
    // asked to be acknowledged again after every configuration edit. `end` is what close() would
    // have sent at the stop: sent instead when the next run judges the condition otherwise. It
    // carries what the event is (id, start, scores, boxes, updates so far); the rest is the tracker's.
    struct Handover {
        Event end;
        const std::string& id() const { return end.id; }
        TimePoint last_sent_at{};
        float last_sent_score = 0;
        // Since when its condition has been seen gone, waiting out `clear`: the clear goes on from
        // then in the next run (restarted, a reload every few minutes kept an alert open for good).
        std::optional<TimePoint> clearing_since;
        // Which of its owner's trackers it came from (SensorRules: the threshold's index), where
        // labels alone may not tell (two thresholds of one label).
        int slot = -1;
    };
    // As close(t, reason), but the open event is handed over instead of ended (nothing if none).
    std::optional<Handover> hand_over(TimePoint t, const std::string& reason);
    // Makes `h` this tracker's open event, its condition present as of `t`: nothing is sent; what
    // this run observes goes on with it (updates numbered after the last run's) or clears it. False,
    // and nothing taken, if an event is open here already.
    bool take_over(const Handover& h, TimePoint t, SteadyPoint steady);

    // Since when a condition not yet confirmed has been present (its `confirm` running); none when
    // an event is open or nothing is pending.
    std::optional<TimePoint> pending_since() const {
        return !active_ && present_since_ ? std::optional<TimePoint>(present_since_->wall) : std::nullopt;
    }
    // A condition the previous run saw pending since `since` (a reload): its `confirm` runs on from
    // then, as far as the wall clock tells, instead of from this run's first observation.
    void resume_pending(TimePoint since, TimePoint now, SteadyPoint steady);

    // Dates the open event's start back to `since` (no later than it is), for a condition that is
    // known to have begun before it could be observed: a camera's outage begins at its last frame,
    // `offline_after` before it is found.
    void date_start(TimePoint since);

    // An update of the open event now, whatever its score: something the room should know of it
    // changed (a camera's outage found to have another cause). Nothing if no event is open.
    std::optional<Event> renew(TimePoint t);

    bool active() const { return active_; }
    // Since when an open event's condition has been seen gone, waiting out `clear`; none otherwise.
    std::optional<TimePoint> clearing_since() const {
        return active_ && absent_since_ ? std::optional<TimePoint>(absent_since_->wall) : std::nullopt;
    }
    // True when the last observe() raised an open event's top score (a better frame for evidence).
    bool improved() const { return improved_; }
    // The open event as it stands, for evidence of the best frame.
    Event current(TimePoint t) const { return message(EventState::update, t); }
    const std::string& label() const { return label_; }
    const TrackerRule& rule() const { return rule_; }

private:
    float smoothed(float score);
    Event message(EventState state, TimePoint t) const;

    std::string source_, check_, label_, zone_;
    TrackerRule rule_;
    EventIdGenerator& ids_;

    std::vector<float> window_;  // ring of the last median_window scores
    std::size_t window_next_ = 0;
    std::vector<float> sort_buffer_;

    bool active_ = false;
    bool improved_ = false;
    // When, on both clocks: steady for the durations, wall for the messages.
    struct Moment {
        TimePoint wall;
        SteadyPoint steady;
    };
    std::optional<Moment> present_since_, absent_since_;
    std::optional<SteadyPoint> last_end_, last_update_;
    std::string id_;
    TimePoint start_time_{};
    TimePoint last_sent_at_{};  // the time of its latest start or update message
    SteadyPoint start_steady_{};
    float score_ = 0, top_score_ = 0, last_sent_score_ = 0, pending_top_ = 0;
    float evidence_score_ = 0;  // the own score of the frame whose boxes (and snapshot) are kept
    std::uint32_t updates_ = 0;
    std::vector<vision::Box> boxes_;
};

}  // namespace kg::events
