// The parents' "today" figures (src/app/event_log): raised and resolved by check, across a reload.
#include "app/event_log.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "app/missed_cycles.hpp"
#include "common/iso_time.hpp"
#include "publish/payloads.hpp"

namespace {

using namespace std::chrono_literals;
using kg::events::Event;
using kg::events::EventState;

struct Discard final : kg::events::EventSink {
    void submit(const Event&) override {}
    void submit_snapshot(const Event&, std::string) override {}
    void submit_clip(const kg::events::ClipReport&) override {}
};

const kg::TimePoint kT0 = kg::Clock::now();

Event event(const std::string& id, EventState state, int second, std::string end_reason = {},
            std::string source = "kitchen") {
    Event e;
    e.id = id;
    e.source = std::move(source);
    e.check = "mask";
    e.label = "no_mask";
    e.state = state;
    e.time = e.start_time = kT0 + std::chrono::seconds(second);
    if (state == EventState::end) {
        e.end_time = e.time;
        e.end_reason = std::move(end_reason);
    }
    return e;
}

// A morning: `a` raised and cleared, `b` raised.
void raise_a_and_clear_it_then_raise_b(kg::app::EventLog& log) {
    log.submit(event("a", EventState::start, 0));
    log.submit(event("a", EventState::end, 5));
    log.submit(event("b", EventState::start, 6));
}

kg::app::EventLog::DayCount today(const kg::app::EventLog& log) {
    const auto all = log.day_summary([](kg::TimePoint) { return std::string("2026-12-02"); }, kT0 + 1min);
    const auto it = all.find("mask");
    return it == all.end() ? kg::app::EventLog::DayCount{} : it->second;
}

}  // namespace

// An end the gateway forced is not a resolution: every end used to count as resolved, and the
// ends a start sends for what a crashed run left open were "resolved" with no raise before them.
TEST(EventLog, OnlyAConditionThatClearedIsResolved) {
    Discard next;
    kg::app::EventLog log(next, "s");
    raise_a_and_clear_it_then_raise_b(log);
    log.submit(event("b", EventState::end, 9, kg::events::kEndCameraOffline));
    log.submit(event("c", EventState::end, 10, kg::events::kEndRestarted));
    const auto n = today(log);
    EXPECT_EQ(n.raised, 2u);
    EXPECT_EQ(n.resolved, 1u);
    EXPECT_EQ(n.open, 0u);
}

// An event stamped while the clock ran a year ahead, then set back: the day's entries behind it
// were never pruned until the clock caught up (the review of the 53rd session). Each goes by its
// own time, and one two days ahead of the clock goes too.
TEST(EventLog, TheDayIsPrunedByEachEntrysTimeAfterTheClockWasSetBack) {
    Discard next;
    kg::app::EventLog log(next, "s");
    auto ahead = event("ahead", EventState::start, 0);
    ahead.time = ahead.start_time = kT0 + 24h * 365;
    log.submit(ahead);
    for (int i = 0; i < 100; ++i) log.submit(event("e" + std::to_string(i), EventState::start, i));
    auto later = event("later", EventState::start, 0);
    later.time = later.start_time = kT0 + 72h;
    log.submit(later);
    EXPECT_EQ(log.take_day().size(), 1u) << "only the last raise is within two days of it";
}

// A reload made a new log, and the page said "nothing today" after a morning of alerts. The day is
// handed over; an alert the stop ended is raised again by the next run if it is still there, and
// counted once.
TEST(EventLog, TheDayIsCarriedAcrossAReloadAndAnAlertStillThereCountsOnce) {
    Discard next;
    kg::app::EventLog before(next, "s");
    raise_a_and_clear_it_then_raise_b(before);
    before.submit(event("b", EventState::end, 9, kg::events::kEndStopped));  // the reload's stop
    kg::app::EventLog after(next, "s");
    after.adopt_day(before.take_day());
    after.submit(event("b2", EventState::start, 12));  // the same condition, raised again
    const auto n = today(after);
    EXPECT_EQ(n.raised, 2u);
    EXPECT_EQ(n.resolved, 1u);
    EXPECT_EQ(n.open, 1u);
}

// A raise the reload's stop ended that the next run does not raise again (a missed disinfection
// cycle is raised when its window closes, once) dropped out of "raised today"; so did a condition
// that cleared during the reload. It stays counted; another camera's raise is a raise of its own.
TEST(EventLog, ARaiseTheReloadEndedThatIsNotRaisedAgainStaysCounted) {
    Discard next;
    kg::app::EventLog before(next, "s");
    raise_a_and_clear_it_then_raise_b(before);
    before.submit(event("b", EventState::end, 9, kg::events::kEndStopped));
    kg::app::EventLog after(next, "s");
    after.adopt_day(before.take_day());
    EXPECT_EQ(today(after).raised, 2u);
    after.submit(event("c", EventState::start, 12, {}, "hall"));  // the same check, another camera
    const auto n = today(after);
    EXPECT_EQ(n.raised, 3u);
    EXPECT_EQ(n.resolved, 1u);
    EXPECT_EQ(n.open, 1u);
}

namespace {

// As the outbox keeps a published event message: numbered.
std::string published(const Event& e, int seq) {
    auto payload = kg::publish::event_payload(e, "s");
    payload.pop_back();
    return payload + ",\"stream\":\"00000000000000aa\",\"seq\":" + std::to_string(seq) + "}";
}

}  // namespace

// A restart (a power cut, an upgrade) made a new log from nothing: at noon the parents' page said
// "nothing today" and the local API listed no event. Both come back from what the runs before
// published; `b`, left open by the crash, is ended by the start and raised again: one alert.
TEST(EventLog, TheDayAndTheListComeBackFromWhatEarlierRunsPublished) {
    Discard next;
    const std::vector<std::string> history = {
        published(event("a", EventState::start, 0), 1), published(event("a", EventState::end, 5), 2),
        R"({"not":"an event"})", "not json", published(event("b", EventState::start, 6), 3)};
    kg::app::EventLog after(next, "s");
    after.adopt_history(history, true);
    EXPECT_EQ(today(after).raised, 2u);
    EXPECT_EQ(today(after).resolved, 1u);
    EXPECT_EQ(today(after).open, 0u) << "the start ends what a crash left open itself";
    after.submit(event("b", EventState::end, 10, kg::events::kEndRestarted));
    after.submit(event("b2", EventState::start, 12));
    auto n = today(after);
    EXPECT_EQ(n.raised, 2u);
    EXPECT_EQ(n.resolved, 1u);
    EXPECT_EQ(n.open, 1u);

    const auto list = after.recent(10);
    ASSERT_EQ(list.size(), 5u);
    EXPECT_EQ(list[0]["id"], "b2");
    EXPECT_EQ(list[2]["id"], "b");
    EXPECT_EQ(list[4]["id"], "a");
    EXPECT_EQ(list[4]["state"], "start");
    EXPECT_FALSE(list[4].contains("seq")) << "listed as this run's own are, without the outbox's numbering";

    // An end the gateway forced for another reason than a stop (the camera went offline) is a
    // raise of its own: the next raise of the condition is a second alert.
    kg::app::EventLog other(next, "s");
    other.adopt_history({published(event("c", EventState::start, 0), 1),
                         published(event("c", EventState::end, 3, kg::events::kEndCameraOffline), 2)},
                        true);
    other.submit(event("c2", EventState::start, 20));
    EXPECT_EQ(today(other).raised, 2u);
}

// A reload hands its day over itself: the history fills the list only.
TEST(EventLog, AfterAReloadTheHistoryFillsTheListAndNotTheDay) {
    Discard next;
    kg::app::EventLog after(next, "s");
    after.adopt_history({published(event("a", EventState::start, 0), 1)}, false);
    EXPECT_EQ(today(after).raised, 0u);
    EXPECT_EQ(after.recent(10).size(), 1u);
}

namespace {

// A sensor event as published: `source` a sensor's id.
std::string missed(const std::string& id, EventState state, int raised_s, int second,
                   std::string end_reason = {}, const std::string& sensor = "cabinet") {
    Event e = event(id, state, second, std::move(end_reason), sensor);
    e.from_sensor = true;
    e.check = "disinfection";
    e.label = "missed_cycle";
    e.start_time = kT0 + std::chrono::seconds(raised_s);
    return kg::publish::event_payload(e, "s");
}

}  // namespace

// The missed cycles a previous run left raised are found in its event messages: a start it never
// ended, or one its stop ended, with when it stopped; not one a cycle cleared.
TEST(MissedCyclesLeft, FindsTheRaisesAStopEndedOrACrashLeftOpenAndNoOther) {
    using kg::app::missed_cycles_left;
    const std::vector<std::string> history = {
        // cabinet: raised at 0, ended by the stop at 600.
        missed("c1", EventState::start, 0, 0),
        missed("c1", EventState::end, 0, 600, kg::events::kEndStopped),
        // a camera's event and another check are not missed cycles.
        kg::publish::event_payload(event("m1", EventState::start, 10), "s"),
        // dish: raised at 100, cleared by a cycle at 200.
        missed("d1", EventState::start, 100, 100, {}, "dish"),
        missed("d1", EventState::end, 100, 200, {}, "dish"),
        // oven: raised at 300, never ended (the run crashed).
        missed("o1", EventState::start, 300, 300, {}, "oven"),
        // steamer: raised 2 days ago, its end made by a restart. That start judged the crashed
        // run's raise already (had it carried it, its own raise would be newer): not left, or a
        // second restart soon after took the end's time (the first restart's start) for a stop
        // and raised it again after the first had let it go.
        missed("s1", EventState::start, -48 * 3600, -48 * 3600, {}, "steamer"),
        missed("s1", EventState::end, -48 * 3600, 500, kg::events::kEndRestarted, "steamer"),
        // rack: raised, stopped, raised again by the next run and then cleared.
        missed("r1", EventState::start, 0, 0, {}, "rack"),
        missed("r1", EventState::end, 0, 50, kg::events::kEndStopped, "rack"),
        missed("r2", EventState::start, 60, 60, {}, "rack"),
        missed("r2", EventState::end, 60, 70, {}, "rack"),
        // shelf: the outbox no longer keeps its start; its end by a stop says when it was raised.
        missed("h1", EventState::end, 30, 900, kg::events::kEndStopped, "shelf"),
        "not json",
        R"({"check": "disinfection", "label": "missed_cycle", "sensor": 5, "state": "start"})",
    };
    const auto left = missed_cycles_left(history);
    // As published: to the millisecond.
    const auto ms = [](kg::TimePoint t) { return std::chrono::floor<std::chrono::milliseconds>(t); };
    std::map<std::string, std::pair<kg::TimePoint, std::optional<kg::TimePoint>>> got;
    for (const auto& [sensor, l] : left) got[sensor] = {l.raised, l.stopped};
    const std::map<std::string, std::pair<kg::TimePoint, std::optional<kg::TimePoint>>> expected = {
        {"cabinet", {ms(kT0), ms(kT0 + 600s)}},
        {"oven", {ms(kT0 + 300s), std::nullopt}},
        {"shelf", {ms(kT0 + 30s), ms(kT0 + 900s)}}};
    EXPECT_EQ(got, expected);
    // When the run was last seen: the newest message's time (a roll-up's minute counts to its end).
    EXPECT_EQ(kg::app::newest_time(history), ms(kT0 + 900s));
    EXPECT_EQ(kg::app::newest_time({R"({"minute": "2026-12-04T05:00:00.000Z"})"}),
              kg::parse_iso8601_utc("2026-12-04T05:01:00.000Z"));
}

// A reading of 1e308 (a device's error value, with no valid_range to catch it) went out as
// "value": null: rounding to three places overflowed to infinity (review).
TEST(EventPayload, AHugeValueIsSentAsItIsNotAsNull) {
    auto e = event("v", EventState::start, 0);
    e.from_sensor = true;
    e.value = 1e308;
    const auto j = nlohmann::json::parse(kg::publish::event_payload(e, "s"));
    ASSERT_TRUE(j["value"].is_number()) << j.dump();
    EXPECT_DOUBLE_EQ(j["value"].get<double>(), 1e308);
    e.value = 24.98765;
    EXPECT_DOUBLE_EQ(nlohmann::json::parse(kg::publish::event_payload(e, "s"))["value"].get<double>(),
                     24.988);
}

// An outage's cause goes out as an object of its kind and text; no other event has one.
TEST(EventPayload, ACauseIsSentAsItsKindAndText) {
    auto e = event("c", EventState::start, 0);
    EXPECT_FALSE(nlohmann::json::parse(kg::publish::event_payload(e, "s")).contains("cause"));
    e.cause = kg::events::EventCause{"unreachable", "cannot open: Connection refused"};
    const auto j = nlohmann::json::parse(kg::publish::event_payload(e, "s"));
    EXPECT_EQ(j["cause"],
              (nlohmann::json{{"kind", "unreachable"}, {"text", "cannot open: Connection refused"}}));
}
