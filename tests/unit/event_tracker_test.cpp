// The event life cycle: debounce, hysteresis, cooldown, smoothing, updates.
#include "events/event_tracker.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using kg::TimePoint;
using kg::events::EventIdGenerator;
using kg::events::EventState;
using kg::events::EventTracker;
using kg::events::TrackerRule;

namespace {

TimePoint at(double seconds) {
    return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::duration<double>(seconds)));
}

struct Script {
    EventIdGenerator ids;
    std::vector<kg::events::Event> sent;
    // Feeds one score every `step` seconds from `from` (inclusive) to `to` (exclusive).
    void feed(EventTracker& t, double from, double to, float score, double step = 0.5) {
        for (double s = from; s < to - 1e-9; s += step) {
            if (auto e = t.observe(at(s), score)) sent.push_back(*e);
        }
    }
};

TrackerRule rule(kg::Duration confirm, kg::Duration clear) {
    TrackerRule r;
    r.confirm = confirm;
    r.clear = clear;
    r.severity = 2;
    return r;
}

}  // namespace

TEST(EventTracker, StartsOnlyAfterConfirmAndEndsOnlyAfterClear) {
    Script s;
    EventTracker t("cam1", "camera_health", "black", "", rule(3s, 2s), s.ids);
    s.feed(t, 0, 10, 0.0f);
    EXPECT_TRUE(s.sent.empty());
    s.feed(t, 10, 12.5, 1.0f);  // 2.5 s present: not yet confirmed
    EXPECT_TRUE(s.sent.empty());
    s.feed(t, 12.5, 30, 1.0f);
    ASSERT_EQ(s.sent.size(), 1u);
    EXPECT_EQ(s.sent[0].state, EventState::start);
    EXPECT_EQ(s.sent[0].start_time, at(10));  // when the condition began, not when confirmed
    EXPECT_EQ(s.sent[0].time, at(13));
    EXPECT_EQ(s.sent[0].severity, 2);
    s.feed(t, 30, 31.5, 0.0f);  // 1.5 s clear: still open
    EXPECT_EQ(s.sent.size(), 1u);
    s.feed(t, 31.5, 40, 0.0f);
    ASSERT_EQ(s.sent.size(), 2u);
    EXPECT_EQ(s.sent[1].state, EventState::end);
    EXPECT_EQ(s.sent[1].id, s.sent[0].id);
    ASSERT_TRUE(s.sent[1].end_time.has_value());
    EXPECT_EQ(*s.sent[1].end_time, at(30));
    EXPECT_EQ(s.sent[1].message_id(), s.sent[0].id + ":end");
}

TEST(EventTracker, FlickerShorterThanConfirmNeverOpens) {
    Script s;
    EventTracker t("cam1", "c", "l", "", rule(2s, 2s), s.ids);
    for (int i = 0; i < 20; ++i) {
        s.feed(t, i * 3.0, i * 3.0 + 1.5, 1.0f);  // 1.5 s on
        s.feed(t, i * 3.0 + 1.5, i * 3.0 + 3.0, 0.0f);
    }
    EXPECT_TRUE(s.sent.empty());
}

TEST(EventTracker, GapShorterThanClearKeepsOneEvent) {
    Script s;
    EventTracker t("cam1", "c", "l", "", rule(1s, 3s), s.ids);
    s.feed(t, 0, 5, 1.0f);
    s.feed(t, 5, 7, 0.0f);  // 2 s gap < clear
    s.feed(t, 7, 12, 1.0f);
    s.feed(t, 12, 20, 0.0f);
    ASSERT_EQ(s.sent.size(), 2u);
    EXPECT_EQ(s.sent[0].state, EventState::start);
    EXPECT_EQ(s.sent[1].state, EventState::end);
    EXPECT_EQ(*s.sent[1].end_time, at(12));
}

TEST(EventTracker, CooldownDelaysTheNextStart) {
    Script s;
    TrackerRule r = rule(1s, 1s);
    r.cooldown = 10s;
    EventTracker t("cam1", "c", "l", "", r, s.ids);
    s.feed(t, 0, 3, 1.0f);
    s.feed(t, 3, 5, 0.0f);  // ends at t=4
    ASSERT_EQ(s.sent.size(), 2u);
    s.feed(t, 5, 13, 1.0f);  // present again, but within the cooldown
    EXPECT_EQ(s.sent.size(), 2u);
    s.feed(t, 13, 16, 1.0f);  // cooldown over at t=14
    ASSERT_EQ(s.sent.size(), 3u);
    EXPECT_EQ(s.sent[2].state, EventState::start);
    EXPECT_NE(s.sent[2].id, s.sent[0].id);
    EXPECT_EQ(s.sent[2].time, at(14));
    // Present since t=5, within the cooldown: it starts where the cooldown ends (dated from t=5,
    // its clip reached back beyond what the packet ring holds).
    EXPECT_EQ(s.sent[2].start_time, at(14));
}

TEST(EventTracker, MedianIgnoresASingleSpike) {
    Script s;
    TrackerRule r = rule(0s, 1s);
    r.median_window = 5;
    EventTracker t("cam1", "c", "l", "", r, s.ids);
    s.feed(t, 0, 5, 0.1f);
    if (auto e = t.observe(at(5), 0.99f)) s.sent.push_back(*e);  // one false detection
    s.feed(t, 5.5, 10, 0.1f);
    EXPECT_TRUE(s.sent.empty());
    s.feed(t, 10, 12, 0.9f);  // sustained: the median crosses after three frames
    ASSERT_EQ(s.sent.size(), 1u);
    EXPECT_EQ(s.sent[0].time, at(11));
}

// With a median over frames, the confirmation can end on a frame that saw nothing: the start then
// carried no box and its snapshot showed no offender (the 54th session's review: a bare_head start
// with "boxes": [] and a picture of two workers in hard hats). The start waits for a frame that
// shows the condition, dated from when it began; a better frame is one with a higher score of its
// own.
TEST(EventTracker, AStartAndABetterFrameAreFramesThatShowTheCondition) {
    Script s;
    TrackerRule r = rule(2s, 5s);
    r.median_window = 3;
    EventTracker t("cam1", "head_covering", "bare_head", "", r, s.ids);
    const std::vector<kg::vision::Box> head{{0.4f, 0.2f, 0.1f, 0.1f, "bare_head", 0.7f}};
    const auto observe = [&](double when, float score) {
        auto e = t.observe(at(when), score, score > 0 ? head : std::vector<kg::vision::Box>{});
        if (e) s.sent.push_back(*e);
        return t.improved();
    };
    // Seen for 2 s, then a frame that saw nothing: the median still says present, and the
    // condition is confirmed at that frame.
    for (double when = 0; when < 2.0; when += 0.5) observe(when, 0.7f);
    observe(2.0, 0.0f);
    EXPECT_TRUE(s.sent.empty()) << "a start on a frame that saw nothing";
    observe(2.5, 0.7f);
    ASSERT_EQ(s.sent.size(), 1u);
    EXPECT_EQ(s.sent[0].state, EventState::start);
    EXPECT_EQ(s.sent[0].start_time, at(0));
    EXPECT_EQ(s.sent[0].time, at(2.5));
    ASSERT_EQ(s.sent[0].boxes.size(), 1u);
    // A frame that saw nothing is no better frame, a frame with a higher own score is.
    EXPECT_FALSE(observe(3.0, 0.0f));
    EXPECT_FALSE(observe(3.5, 0.7f));
    EXPECT_TRUE(observe(4.0, 0.8f));
    EXPECT_FALSE(observe(4.5, 0.75f));
}

TEST(EventTracker, UpdatesAreMaterialAndRateLimited) {
    Script s;
    TrackerRule r = rule(0s, 1s);
    r.update_interval = 5s;
    r.update_delta = 0.2f;
    EventTracker t("cam1", "c", "l", "", r, s.ids);
    s.feed(t, 0, 2, 0.6f);
    s.feed(t, 2, 4, 0.65f);   // not material
    s.feed(t, 4, 20, 0.95f);  // material, at most one update per 5 s
    ASSERT_GE(s.sent.size(), 2u);
    EXPECT_EQ(s.sent[0].state, EventState::start);
    EXPECT_EQ(s.sent[1].state, EventState::update);
    EXPECT_EQ(s.sent[1].time, at(5));
    EXPECT_EQ(s.sent[1].message_id(), s.sent[0].id + ":update-1");
    EXPECT_EQ(s.sent.size(), 2u);  // the score no longer changes, so no further updates
    EXPECT_FLOAT_EQ(s.sent[1].top_score, 0.95f);
}

TEST(EventIdGenerator, IdsAreUniqueAndTimeOrdered) {
    EventIdGenerator ids;
    std::set<std::string> seen;
    std::string previous;
    for (int i = 0; i < 1000; ++i) {
        auto id = ids.next(at(1000 + i));
        EXPECT_TRUE(seen.insert(id).second);
        EXPECT_GT(id.substr(0, 11), previous.substr(0, std::min<size_t>(11, previous.size())));
        previous = id;
    }
}

TEST(EventTracker, CloseEndsAnOpenEventWithTheReasonAndStartsAfresh) {
    Script s;
    EventTracker t("cam", "camera_health", "black", "", rule(2s, 2s), s.ids);
    EXPECT_FALSE(t.close(at(1), kg::events::kEndStopped));  // nothing open: nothing to end
    s.feed(t, 0, 5, 1.0f);
    ASSERT_EQ(s.sent.size(), 1u);
    const auto end = t.close(at(5), kg::events::kEndStopped);
    ASSERT_TRUE(end);
    EXPECT_EQ(end->state, EventState::end);
    EXPECT_EQ(end->id, s.sent[0].id);
    EXPECT_EQ(end->end_reason, "gateway stopped");
    ASSERT_TRUE(end->end_time);
    EXPECT_EQ(*end->end_time, at(5));
    EXPECT_FALSE(t.active());
    EXPECT_FALSE(t.close(at(5.5), kg::events::kEndStopped));  // ended once
}

TEST(EventTracker, AnEndForAnOutageStartsTheCooldown) {
    // A camera that went offline ends its events; back within the cooldown with the condition still
    // there, it must not open a second alert at once (nor without the outage's end: a plain close).
    for (const bool cooldown : {true, false}) {
        Script s;
        TrackerRule r = rule(1s, 1s);
        r.cooldown = 10s;
        EventTracker t("cam1", "mask", "no_mask", "", r, s.ids);
        s.feed(t, 0, 3, 1.0f);
        ASSERT_EQ(s.sent.size(), 1u);
        const auto end = cooldown ? t.close(at(3), kg::events::kEndCameraOffline, kg::steady_from_wall(at(3)))
                                  : t.close(at(3), kg::events::kEndCameraOffline);
        ASSERT_TRUE(end);
        s.feed(t, 5, 16, 1.0f);  // frames again from t=5, the condition still there
        ASSERT_EQ(s.sent.size(), 2u) << cooldown;
        EXPECT_EQ(s.sent[1].time, cooldown ? at(13) : at(6)) << cooldown;
    }
}

namespace {
kg::SteadyPoint steady(double seconds) {
    return kg::SteadyPoint(
        std::chrono::duration_cast<kg::SteadyPoint::duration>(std::chrono::duration<double>(seconds)));
}
}  // namespace

TEST(EventTracker, AWallClockStepBackNeitherHoldsAStartNorAnEnd) {
    EventIdGenerator ids;
    EventTracker t("cam", "camera_health", "black", "", rule(5s, 5s), ids);
    const double step_back = -3600;  // NTP steps the wall clock back an hour after the first frame
    std::optional<kg::events::Event> start, end;
    for (int i = 0; i <= 40 && !start; ++i) {
        const double s = 1000 + 0.5 * i;
        start = t.observe(at(s + (i > 0 ? step_back : 0)), steady(s), 1.0f);
    }
    ASSERT_TRUE(start) << "no start in 20 s of a present condition";
    EXPECT_EQ(start->time, at(1005 + step_back));  // 5 s later on the monotonic clock
    EXPECT_EQ(start->start_time, at(1000));        // the wall time it was first seen, as reported
    for (int i = 0; i <= 40 && !end; ++i) {
        const double s = 1010 + 0.5 * i;
        end = t.observe(at(s + 2 * step_back), steady(s), 0.0f);  // and once more, while clearing
    }
    ASSERT_TRUE(end) << "no end in 20 s of a clear condition";
    EXPECT_EQ(end->time, at(1015 + 2 * step_back));
    // Its wall time was an hour before the start: the end is the start plus the 10 s the condition
    // lasted on the monotonic clock (it was -3590 s, which the schema refuses).
    ASSERT_TRUE(end->end_time);
    EXPECT_EQ(*end->end_time, at(1010));

    // Closed (a stop) with the wall clock behind the start: ended neither before the start nor
    // before the start message that said the condition was there (5 s after it).
    std::optional<kg::events::Event> again;
    for (int i = 0; i <= 40 && !again; ++i)
        again = t.observe(at(2000 + 0.5 * i), steady(2000 + 0.5 * i), 1.0f);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->time, at(2005));
    const auto stopped = t.close(at(2000 + step_back), kg::events::kEndStopped);
    ASSERT_TRUE(stopped && stopped->end_time);
    EXPECT_EQ(*stopped->end_time, at(2005));
    EXPECT_EQ(stopped->time, at(2005));
}

TEST(EventTracker, AWallClockStepForwardDoesNotOpenAnEventEarly) {
    EventIdGenerator ids;
    EventTracker t("cam", "camera_health", "black", "", rule(5s, 5s), ids);
    EXPECT_FALSE(t.observe(at(1000), steady(1000), 1.0f));
    EXPECT_FALSE(t.observe(at(1000 + 3600.5), steady(1000.5), 1.0f));  // 0.5 s later, +1 h on the wall
    EXPECT_FALSE(t.active());
    std::optional<kg::events::Event> start;
    for (int i = 2; i <= 12 && !start; ++i)
        start = t.observe(at(4600 + 0.5 * i), steady(1000 + 0.5 * i), 1.0f);
    ASSERT_TRUE(start);
    EXPECT_EQ(start->time, at(4605));  // after 5 real seconds
}

// A reload hands an open event to the next run's tracker: nothing is sent at the hand-over or the
// take-over, the updates go on numbered after the last run's, and the end carries the id.
TEST(EventTracker, AnEventHandedOverGoesOnInTheTrackerThatTakesItOver) {
    kg::events::EventIdGenerator ids;
    kg::events::TrackerRule rule;
    rule.confirm = 0s;
    rule.clear = 2s;
    rule.update_interval = 1s;
    rule.update_delta = 0.1f;
    kg::events::EventTracker first("fridge", "sensor", "too_warm", "", rule, ids);
    const auto t0 = kg::TimePoint(std::chrono::hours(24 * 365 * 50));
    ASSERT_TRUE(first.observe(t0, 0.6f));
    const auto update = first.observe(t0 + 2s, 0.9f);
    ASSERT_TRUE(update);
    EXPECT_EQ(update->message_id(), update->id + ":update-1");
    const auto h = first.hand_over(t0 + 3s, kg::events::kEndStopped);
    ASSERT_TRUE(h);
    EXPECT_FALSE(first.active());
    EXPECT_EQ(h->end.message_id(), h->id() + ":end");
    EXPECT_EQ(h->end.end_reason, "gateway stopped");
    EXPECT_FALSE(first.hand_over(t0 + 3s, kg::events::kEndStopped)) << "nothing open any more";

    kg::events::EventTracker next("fridge", "sensor", "too_warm", "", rule, ids);
    ASSERT_TRUE(next.take_over(*h, t0 + 4s, kg::steady_from_wall(t0 + 4s)));
    EXPECT_TRUE(next.active());
    EXPECT_FALSE(next.observe(t0 + 4s, 0.9f)) << "the condition goes on: nothing to send";
    const auto later = next.observe(t0 + 6s, 0.5f);
    ASSERT_TRUE(later);
    EXPECT_EQ(later->message_id(), h->id() + ":update-2");
    EXPECT_EQ(later->start_time, t0);
    EXPECT_FALSE(next.observe(t0 + 7s, 0.0f));
    const auto end = next.observe(t0 + 9s, 0.0f);
    ASSERT_TRUE(end);
    EXPECT_EQ(end->message_id(), h->id() + ":end");
    EXPECT_EQ(end->end_reason, "");
    EXPECT_EQ(end->end_time, t0 + 7s);
    EXPECT_FLOAT_EQ(end->top_score, 0.9f);
}

// renew(): an update of the open event whatever its score (its cause changed), numbered on; nothing
// when no event is open.
TEST(EventTracker, RenewSendsAnUpdateOfTheOpenEventNumberedOn) {
    EventIdGenerator ids;
    EventTracker t("kitchen", "camera_health", "offline", "", rule(0s, 0s), ids);
    EXPECT_FALSE(t.renew(at(0)));
    const auto start = t.observe(at(1), 1.0f);
    ASSERT_TRUE(start);
    ASSERT_EQ(start->state, EventState::start);
    const auto update = t.renew(at(2));
    ASSERT_TRUE(update);
    EXPECT_EQ(update->state, EventState::update);
    EXPECT_EQ(update->id, start->id);
    EXPECT_EQ(update->update_number, 1u);
    EXPECT_EQ(update->start_time, start->start_time);
    EXPECT_NE(update->message_id(), start->message_id());
    const auto end = t.close(at(3), "");
    ASSERT_TRUE(end);
    EXPECT_EQ(end->update_number, 1u);
}
