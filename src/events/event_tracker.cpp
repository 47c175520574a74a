#include "events/event_tracker.hpp"

#include <algorithm>
#include <cmath>

namespace kg::events {

EventTracker::EventTracker(std::string source, std::string check, std::string label, std::string zone,
                           TrackerRule rule, EventIdGenerator& ids)
    : source_(std::move(source)),
      check_(std::move(check)),
      label_(std::move(label)),
      zone_(std::move(zone)),
      rule_(rule),
      ids_(ids) {
    window_.reserve(static_cast<std::size_t>(std::max(1, rule_.median_window)));
    sort_buffer_.reserve(window_.capacity());
}

float EventTracker::smoothed(float score) {
    const auto n = static_cast<std::size_t>(std::max(1, rule_.median_window));
    if (window_.size() < n) {
        window_.push_back(score);
    } else {
        window_[window_next_] = score;
    }
    window_next_ = (window_next_ + 1) % n;
    sort_buffer_.assign(window_.begin(), window_.end());
    const auto mid = sort_buffer_.begin() + static_cast<std::ptrdiff_t>(sort_buffer_.size() / 2);
    std::nth_element(sort_buffer_.begin(), mid, sort_buffer_.end());
    return *mid;
}

std::optional<Event> EventTracker::renew(TimePoint t) {
    if (!active_) return std::nullopt;
    ++updates_;
    last_sent_at_ = std::max(last_sent_at_, t);
    return message(EventState::update, t);
}

Event EventTracker::message(EventState state, TimePoint t) const {
    Event e;
    e.id = id_;
    e.source = source_;
    e.check = check_;
    e.label = label_;
    e.zone = zone_;
    e.severity = rule_.severity;
    e.state = state;
    e.update_number = updates_;
    e.start_time = start_time_;
    e.time = t;
    e.score = score_;
    e.top_score = top_score_;
    e.boxes = boxes_;
    return e;
}

std::optional<Event> EventTracker::observe(TimePoint t, SteadyPoint now, float score,
                                           const std::vector<vision::Box>& boxes) {
    const float s = smoothed(score);
    // A score of 0 is nothing seen, whatever the threshold (a detector check's is 0: its boxes
    // passed the detector's own).
    const bool present = s > 0.0f && s >= rule_.threshold;
    // Whether this observation shows the condition by itself: with a median over several, the
    // smoothed score can say present on a frame that saw nothing.
    const bool seen_here = score > 0.0f && score >= rule_.threshold;
    improved_ = false;

    if (!active_) {
        if (!present) {
            present_since_.reset();
            pending_top_ = 0;
            return std::nullopt;
        }
        if (!present_since_) present_since_ = Moment{t, now};
        pending_top_ = std::max(pending_top_, s);
        if (now - present_since_->steady < rule_.confirm) return std::nullopt;
        if (last_end_ && now - *last_end_ < rule_.cooldown) return std::nullopt;
        // The start's boxes, and the snapshot of its frame, are its evidence: a frame that saw
        // nothing gave a start with no box and a picture of people in hats (the 54th session's
        // review). Confirmed, it starts at the next frame that shows the condition, still dated
        // from when the condition began.
        if (!seen_here) return std::nullopt;
        // Back within the cooldown and held through it: the new event starts where the cooldown
        // ends. Dated from its return, it began up to a cooldown before its confirmation, asked for
        // a clip from then that the packet ring (sized for the confirmation) no longer held, and
        // placed a new alert within the cooldown of the last one's end.
        Moment since = *present_since_;
        if (last_end_ && since.steady < *last_end_ + rule_.cooldown) {
            const auto shift = *last_end_ + rule_.cooldown - since.steady;
            since.steady += shift;
            since.wall += std::chrono::duration_cast<TimePoint::duration>(shift);
        }
        active_ = true;
        id_ = ids_.next(since.wall);
        start_time_ = since.wall;
        start_steady_ = since.steady;
        score_ = s;
        top_score_ = pending_top_;
        evidence_score_ = score;
        last_sent_score_ = s;
        updates_ = 0;
        boxes_ = boxes;
        absent_since_.reset();
        last_update_ = now;
        last_sent_at_ = t;
        return message(EventState::start, t);
    }

    if (present) {
        absent_since_.reset();
        score_ = s;
        top_score_ = std::max(top_score_, s);
        // A better frame for the evidence: one showing the condition with a higher score of its
        // own than the kept one's (the top score, from frames whose picture was not kept, made
        // every later frame look no better).
        if (seen_here && score > evidence_score_) {
            evidence_score_ = score;
            boxes_ = boxes;
            improved_ = true;
        }
        const bool material = std::fabs(s - last_sent_score_) >= rule_.update_delta;
        if (material && now - *last_update_ >= rule_.update_interval) {
            ++updates_;
            last_sent_score_ = s;
            last_update_ = now;
            if (seen_here) boxes_ = boxes;  // else the last frame that showed it
            last_sent_at_ = std::max(last_sent_at_, t);
            return message(EventState::update, t);
        }
        return std::nullopt;
    }

    if (!absent_since_) absent_since_ = Moment{t, now};
    if (now - absent_since_->steady < rule_.clear) return std::nullopt;
    active_ = false;
    present_since_.reset();
    pending_top_ = 0;
    last_end_ = now;
    Event e = message(EventState::end, t);
    // The condition ended when it was first seen gone, not when that was confirmed. A wall clock
    // stepped back meanwhile (NTP on a box without a battery clock) put that before the start: a
    // negative duration the schema refuses, and a room that validates would keep the alert open.
    // Then the end is the start plus the time the condition lasted on the monotonic clock.
    e.end_time = absent_since_->wall >= start_time_
                     ? absent_since_->wall
                     : start_time_ + std::chrono::duration_cast<TimePoint::duration>(std::max(
                                         absent_since_->steady - start_steady_, SteadyPoint::duration{}));
    absent_since_.reset();
    return e;
}

std::optional<Event> EventTracker::close(TimePoint t, const std::string& reason,
                                         std::optional<SteadyPoint> cooldown_from) {
    // What was seen before is forgotten, open or not: a condition pending confirmation when the
    // frames stopped must be confirmed again on frames seen after, not be started by the first.
    present_since_.reset();
    absent_since_.reset();
    pending_top_ = 0;
    window_.clear();
    window_next_ = 0;
    if (!active_) return std::nullopt;
    active_ = false;
    if (cooldown_from) last_end_ = *cooldown_from;
    Event e = message(EventState::end, t);
    // Never before the start, whatever the wall clock did, nor before a message that said the
    // condition was there: a sensor's alarm confirmed by its held reading (a door contact that
    // reported once, `for` later) ended "as of the last reading", before its own start message,
    // with a duration of 0 (the sensors review).
    e.end_time = e.time = std::max({t, start_time_, last_sent_at_});
    e.end_reason = reason;
    return e;
}

std::optional<EventTracker::Handover> EventTracker::hand_over(TimePoint t, const std::string& reason) {
    if (!active_) {
        close(t, reason);  // a condition pending confirmation is forgotten, as at a stop
        return std::nullopt;
    }
    Handover h{{}, last_sent_at_, last_sent_score_, clearing_since()};
    h.end = *close(t, reason);
    return h;
}

bool EventTracker::take_over(const Handover& h, TimePoint t, SteadyPoint steady) {
    if (active_) return false;
    active_ = true;
    improved_ = false;
    const Event& e = h.end;
    id_ = e.id;
    start_time_ = e.start_time;
    // The start on this run's monotonic clock, as far as the wall clock tells: an end whose wall
    // time the clock set back before the start is dated from it (observe()).
    start_steady_ = steady - std::chrono::duration_cast<SteadyPoint::duration>(
                                 std::max(t - e.start_time, TimePoint::duration::zero()));
    score_ = e.score;
    top_score_ = e.top_score;
    evidence_score_ = e.top_score;
    last_sent_score_ = h.last_sent_score;
    updates_ = e.update_number;
    boxes_ = e.boxes;
    last_sent_at_ = h.last_sent_at;
    last_update_ = steady;
    present_since_ = Moment{t, steady};
    absent_since_.reset();
    if (h.clearing_since && *h.clearing_since <= t)
        absent_since_ =
            Moment{*h.clearing_since,
                   steady - std::chrono::duration_cast<SteadyPoint::duration>(t - *h.clearing_since)};
    pending_top_ = 0;
    return true;
}

void EventTracker::date_start(TimePoint since) {
    if (!active_ || since >= start_time_) return;
    start_steady_ -= std::chrono::duration_cast<SteadyPoint::duration>(start_time_ - since);
    start_time_ = since;
}

void EventTracker::resume_pending(TimePoint since, TimePoint now, SteadyPoint steady) {
    if (active_ || since > now) return;
    present_since_ = Moment{since, steady - std::chrono::duration_cast<SteadyPoint::duration>(now - since)};
}

}  // namespace kg::events
