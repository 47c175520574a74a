// One camera's analysis side (src/app/camera_pipeline): frames through its checks into events,
// driven frame by frame with scripted checks, without a camera, a pool thread or a broker.
#include "app/camera_pipeline.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <string>
#include <vector>

#include "config/config_loader.hpp"

namespace {

using namespace std::chrono_literals;
using kg::events::Event;
using kg::events::EventState;

// confirm 2 s, clear 3 s, no smoothing; the mask's cooldown 5 s: each step below is one frame a
// second.
const char* kConfig = R"(site: {id: sch-0101, name: No. 1 canteen, timezone: Asia/Shanghai}
mqtt: {url: mqtt://127.0.0.1:1883}
cameras:
  - id: kitchen
    url: rtsp://127.0.0.1:8554/kitchen
    checks: [mask, head_covering]
    rules:
      mask: {confirm: 2s, clear: 3s, cooldown: 5s, median_window: 1}
      head_covering: {confirm: 2s, clear: 3s, cooldown: 0s, median_window: 1}
)";

// What a check sees on the next frame: a score for its label, or an exception. `check` and `label`
// name what its observations are of (a user's model reports a built-in check's); empty: its own.
struct Script {
    float score = 0;
    bool fail = false;
    bool fail_oddly = false;  // throws what is not a std::exception (a library's own type)
    std::string check, label;
    std::vector<kg::vision::Box> boxes;  // where it is seen (none: the whole picture)
};

class ScriptedCheck final : public kg::vision::Check {
public:
    ScriptedCheck(std::string name, std::string label, const Script& script)
        : name_(std::move(name)), label_(std::move(label)), script_(script) {}
    const std::string& name() const override { return name_; }
    void analyse(const kg::ingest::Frame&, std::vector<kg::vision::Observation>& out) override {
        if (script_.fail) throw std::runtime_error("the model's output is not what its manifest says");
        if (script_.fail_oddly) throw 42;
        kg::vision::Observation o;
        o.check = script_.check.empty() ? name_ : script_.check;
        o.label = script_.label.empty() ? label_ : script_.label;
        o.score = script_.score;
        o.present = script_.score >= 0.5f;
        o.boxes = script_.boxes;
        out.push_back(std::move(o));
    }

private:
    std::string name_, label_;
    const Script& script_;
};

class Events final : public kg::events::EventSink {
public:
    void submit(const Event& e) override { all.push_back(e); }
    void submit_snapshot(const Event&, std::string) override {}
    void submit_clip(const kg::events::ClipReport&) override {}
    std::vector<Event> of(const std::string& check) const {
        std::vector<Event> out;
        for (const auto& e : all) {
            if (e.check == check && e.state != EventState::update) out.push_back(e);
        }
        return out;
    }
    std::vector<Event> all;
};

// The same camera with a region check too: it has a motion map, which every frame updates before
// any check runs.
const char* kMotionConfig = R"(site: {id: sch-0101, name: No. 1 canteen, timezone: Asia/Shanghai}
mqtt: {url: mqtt://127.0.0.1:1883}
cameras:
  - id: kitchen
    url: rtsp://127.0.0.1:8554/kitchen
    checks: [mask, after_hours_motion]
    rules:
      mask: {confirm: 2s, clear: 3s, cooldown: 5s, median_window: 1}
)";

class CameraPipelineTest : public ::testing::Test {
protected:
    explicit CameraPipelineTest(const char* config = kConfig)
        : config_(kg::config::load_string(config, "gateway.yaml")),
          calendar_(config_.site.timezone, config_.site.holidays),
          logging_("error", false),
          site_{config_, calendar_, schedules_, nullptr, nullptr, events_, ids_, logging_, nullptr},
          pipeline_(config_.cameras.at(0), pool_, site_, checks()) {
        frame_.image = cv::Mat::zeros(36, 64, CV_8UC3);
    }

    // The scripted checks, for pipeline_ and for the pipeline of a next run (a reload).
    kg::app::CheckFactory checks() {
        return [this](const std::string& name) -> std::unique_ptr<kg::vision::Check> {
            if (name == "camera_health") return std::make_unique<ScriptedCheck>(name, "black", health_);
            return std::make_unique<ScriptedCheck>(name, name == "mask" ? "no_mask" : "bare_head",
                                                   name == "mask" ? mask_ : head_);
        };
    }

    // One frame, `seconds` after the first, to pipeline_ or to another (a next run's).
    void frame_at(int seconds) { frame_at(pipeline_, seconds); }
    void frame_at(kg::app::CameraPipeline& pipeline, int seconds) {
        frame_.seq = static_cast<std::uint64_t>(seconds);
        frame_.time = wall0_ + std::chrono::seconds(seconds);
        frame_.steady = steady0_ + std::chrono::seconds(seconds);
        pipeline.analyse(frame_);
    }

    kg::TimePoint at(int seconds) const { return wall0_ + std::chrono::seconds(seconds); }
    kg::SteadyPoint steady(int seconds) const { return steady0_ + std::chrono::seconds(seconds); }
    // Every message sent of the events of `label`, in order (updates too).
    std::vector<Event> labelled(const std::string& label) const {
        std::vector<Event> out;
        for (const auto& e : events_.all)
            if (e.label == label) out.push_back(e);
        return out;
    }

    kg::config::Gateway config_;
    kg::rules::Calendar calendar_;
    std::map<std::string, kg::rules::Schedule> schedules_;
    kg::Logging logging_;
    Events events_;
    kg::events::EventIdGenerator ids_;
    kg::app::AnalysisPool pool_{1};  // never started: the test is the analysis thread
    kg::app::SiteContext site_;
    Script mask_, head_, health_;  // health_: the picture black
    kg::app::CameraPipeline pipeline_;
    kg::ingest::Frame frame_;
    const kg::TimePoint wall0_ = kg::Clock::now();
    const kg::SteadyPoint steady0_ = std::chrono::steady_clock::now() + 1h;
};

TEST_F(CameraPipelineTest, ACheckThatFailsOnEveryFrameEndsItsOpenEventAfterTheRulesClearTime) {
    mask_.score = head_.score = 0.9f;
    for (int s = 0; s <= 4; ++s) frame_at(s);
    ASSERT_EQ(events_.of("mask").size(), 1u);
    ASSERT_EQ(events_.of("head_covering").size(), 1u);

    mask_.fail = true;  // from the frame at 5 s; 4 s was its last observation
    frame_at(5);
    frame_at(6);
    EXPECT_EQ(events_.of("mask").size(), 1u) << "ended before the rule's clear time (3 s) unseen";
    frame_at(7);
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 2u);
    EXPECT_EQ(mask[1].state, EventState::end);
    EXPECT_EQ(mask[1].id, mask[0].id);
    EXPECT_EQ(mask[1].end_reason, kg::events::kEndCheckFailing);
    ASSERT_TRUE(mask[1].end_time.has_value());
    EXPECT_EQ(*mask[1].end_time, at(4)) << "the end is dated at its last observation";

    // The other check saw the whole time: its event is untouched.
    EXPECT_EQ(events_.of("head_covering").size(), 1u);

    // Still failing: nothing more is sent, and no second end.
    for (int s = 8; s <= 20; ++s) frame_at(s);
    EXPECT_EQ(events_.of("mask").size(), 2u);

    // Back, with the condition still there: a new event once confirmed again.
    mask_.fail = false;
    for (int s = 21; s <= 23; ++s) frame_at(s);
    const auto again = events_.of("mask");
    ASSERT_EQ(again.size(), 3u);
    EXPECT_EQ(again[2].state, EventState::start);
    EXPECT_EQ(again[2].start_time, at(21));
    EXPECT_NE(again[2].id, mask[0].id);
    EXPECT_EQ(events_.of("head_covering").size(), 1u);
}

TEST_F(CameraPipelineTest, ACheckThatThrowsWhatIsNotAStdExceptionIsAFailingCheckToo) {
    // Out of analyse(), on a pool thread, it ended the process.
    mask_.score = head_.score = 0.9f;
    for (int s = 0; s <= 4; ++s) frame_at(s);
    ASSERT_EQ(events_.of("mask").size(), 1u);
    mask_.fail_oddly = true;
    for (int s = 5; s <= 7; ++s) EXPECT_NO_THROW(frame_at(s));
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 2u);
    EXPECT_EQ(mask[1].end_reason, kg::events::kEndCheckFailing);
    EXPECT_EQ(events_.of("head_covering").size(), 1u) << "the other check goes on";
}

class CameraPipelineWithMotionTest : public CameraPipelineTest {
protected:
    CameraPipelineWithMotionTest() : CameraPipelineTest(kMotionConfig) {}
};

TEST_F(CameraPipelineWithMotionTest, FramesLostOutsideTheChecksEndTheOpenEventsAsAFailingCheckWould) {
    // A picture the motion map cannot take (OpenCV throws): lost before any check sees it, as a
    // frame may be to anything outside the checks (zones, evidence). Out of analyse() it ended the
    // process; caught and nothing more, the open events stayed open for good behind a camera that
    // read as online and well.
    mask_.score = 0.9f;
    for (int s = 0; s <= 4; ++s) frame_at(s);
    ASSERT_EQ(events_.of("mask").size(), 1u);
    frame_.image = cv::Mat();
    for (int s = 5; s <= 7; ++s) EXPECT_NO_THROW(frame_at(s));
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 2u);
    EXPECT_EQ(mask[1].state, EventState::end);
    EXPECT_EQ(mask[1].end_reason, kg::events::kEndCheckFailing);
    EXPECT_EQ(*mask[1].end_time, at(4));
    // Pictures again: the condition, still there, is a new event once confirmed.
    frame_.image = cv::Mat::zeros(36, 64, CV_8UC3);
    for (int s = 13; s <= 15; ++s) frame_at(s);
    EXPECT_EQ(events_.of("mask").size(), 3u);
}

TEST_F(CameraPipelineTest, ACheckBackWithinTheCooldownOpensNoSecondAlertBeforeItEnds) {
    mask_.score = 0.9f;
    for (int s = 0; s <= 4; ++s) frame_at(s);
    mask_.fail = true;
    for (int s = 5; s <= 7; ++s) frame_at(s);  // ended at 7, the cooldown (5 s) from then
    ASSERT_EQ(events_.of("mask").size(), 2u);
    mask_.fail = false;
    for (int s = 8; s <= 11; ++s) frame_at(s);  // confirmed at 10, but within the cooldown
    EXPECT_EQ(events_.of("mask").size(), 2u) << "a second alert within the cooldown of the failing end";
    frame_at(12);
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 3u);
    EXPECT_EQ(mask[2].state, EventState::start);
}

TEST_F(CameraPipelineTest, FailuresShorterThanTheClearTimeLeaveTheEventOpen) {
    mask_.score = 0.9f;
    for (int s = 0; s <= 4; ++s) frame_at(s);
    ASSERT_EQ(events_.of("mask").size(), 1u);
    // Two failed frames at a time between good frames that still see the condition: never 3 s
    // unseen.
    for (int round = 0; round < 5; ++round) {
        const int t = 5 + round * 3;
        mask_.fail = true;
        frame_at(t);
        frame_at(t + 1);  // 2 s after its last observation: under clear
        mask_.fail = false;
        frame_at(t + 2);
    }
    EXPECT_EQ(events_.of("mask").size(), 1u) << "failures under clear must not end the event";

    // The condition clears as usual: the end is an ordinary one.
    mask_.score = 0;
    for (int s = 21; s <= 25; ++s) frame_at(s);
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 2u);
    EXPECT_EQ(mask[1].state, EventState::end);
    EXPECT_TRUE(mask[1].end_reason.empty() || mask[1].end_reason == "cleared") << mask[1].end_reason;
}

TEST_F(CameraPipelineTest, ACheckFailingFromTheStartOpensAndEndsNothing) {
    mask_.fail = true;
    head_.score = 0.9f;
    for (int s = 0; s <= 10; ++s) frame_at(s);
    EXPECT_TRUE(events_.of("mask").empty());
    EXPECT_EQ(events_.of("head_covering").size(), 1u);
    // Once it works, its condition is confirmed as any other.
    mask_.fail = false;
    mask_.score = 0.9f;
    for (int s = 11; s <= 13; ++s) frame_at(s);
    ASSERT_EQ(events_.of("mask").size(), 1u);
    EXPECT_EQ(events_.of("mask")[0].state, EventState::start);
}

TEST_F(CameraPipelineTest, AConditionPendingConfirmationWhenTheCheckFailsIsConfirmedAgainAfter) {
    mask_.score = 0.9f;
    frame_at(0);  // seen, not yet confirmed (2 s)
    mask_.fail = true;
    for (int s = 1; s <= 30; ++s) frame_at(s);
    mask_.fail = false;
    frame_at(31);
    frame_at(32);
    EXPECT_TRUE(events_.of("mask").empty()) << "started by the first frame after a long failure";
    frame_at(33);
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 1u);
    EXPECT_EQ(mask[0].start_time, at(31)) << "dated before the failure";
}

TEST_F(CameraPipelineTest, AConditionTwoChecksReportEndsOnlyWhenNeitherSeesIt) {
    // head_covering reports mask/no_mask too, as a user's model mapped to the mask check would.
    head_.check = "mask";
    head_.label = "no_mask";
    mask_.score = head_.score = 0.9f;
    for (int s = 0; s <= 4; ++s) frame_at(s);
    ASSERT_EQ(events_.of("mask").size(), 1u);
    mask_.fail = true;  // the other check still sees it
    for (int s = 5; s <= 20; ++s) frame_at(s);
    ASSERT_EQ(events_.of("mask").size(), 1u) << "ended while another check still saw it";
    head_.fail = true;
    for (int s = 21; s <= 23; ++s) frame_at(s);
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 2u);
    EXPECT_EQ(mask[1].end_reason, kg::events::kEndCheckFailing);
    EXPECT_EQ(*mask[1].end_time, at(20));
    for (int s = 24; s <= 40; ++s) frame_at(s);
    EXPECT_EQ(events_.of("mask").size(), 2u);
}

}  // namespace

namespace {

// The mask check with its built-in rule's threshold: only the timings of the fixture's.
const char* kDefaultThresholdConfig = R"(site: {id: sch-0101, name: No. 1 canteen, timezone: Asia/Shanghai}
mqtt: {url: mqtt://127.0.0.1:1883}
cameras:
  - id: kitchen
    url: rtsp://127.0.0.1:8554/kitchen
    checks: [mask, head_covering, cleanliness]
    rules:
      mask: {confirm: 2s, clear: 3s, cooldown: 5s}
)";

class CameraPipelineDefaultsTest : public CameraPipelineTest {
protected:
    CameraPipelineDefaultsTest() : CameraPipelineTest(kDefaultThresholdConfig) {}
};

// The mask rule under a schedule, all day here; the test turns it off.
const char* kScheduledConfig = R"(site: {id: sch-0101, name: No. 1 canteen, timezone: Asia/Shanghai}
mqtt: {url: mqtt://127.0.0.1:1883}
schedules: {service: {times: ['00:00-00:00']}}
cameras:
  - id: kitchen
    url: rtsp://127.0.0.1:8554/kitchen
    checks: [mask, head_covering]
    rules:
      mask: {confirm: 2s, clear: 3s, cooldown: 5s, median_window: 1, schedule: service}
)";

// With camera_health: its confirm and clear 2 s.
const char* kHealthConfig = R"(site: {id: sch-0101, name: No. 1 canteen, timezone: Asia/Shanghai}
mqtt: {url: mqtt://127.0.0.1:1883}
cameras:
  - id: kitchen
    url: rtsp://127.0.0.1:8554/kitchen
    checks: [camera_health, mask, after_hours_motion]
    health: {confirm: 2s, clear: 2s}
    rules:
      mask: {confirm: 2s, clear: 3s, cooldown: 0s, median_window: 1}
      after_hours_motion: {confirm: 2s, clear: 3s, median_window: 1}
)";

class CameraPipelineHealthTest : public CameraPipelineTest {
protected:
    CameraPipelineHealthTest() : CameraPipelineTest(kHealthConfig) {}
};

// Covering the lens ended an open no_mask as cleared half a second after the picture went black
// (the 54th session's review, with the real gateway): what the mask check "sees" in a black picture
// is nothing, and nothing for the clear time was taken for the condition gone. Unseen, it ends as
// "picture unusable", dated at its last usable frame; and a picture that is black opens nothing.
TEST_F(CameraPipelineHealthTest, ABlackPictureEndsNoEventAsClearedAndOpensNone) {
    mask_.score = 0.9f;
    for (int s = 0; s <= 4; ++s) frame_at(s);
    ASSERT_EQ(events_.of("mask").size(), 1u);
    // From 5 s the lens is covered: the picture black, the mask check sees no face in it.
    health_.score = 0.9f;
    mask_.score = 0.0f;
    frame_at(5);
    frame_at(6);
    frame_at(7);
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 2u);
    EXPECT_EQ(mask[1].state, EventState::end);
    EXPECT_EQ(mask[1].end_reason, kg::events::kEndPictureUnusable) << "ended as cleared";
    ASSERT_TRUE(mask[1].end_time.has_value());
    EXPECT_EQ(*mask[1].end_time, at(4)) << "the end is dated at the last usable frame";
    const auto health = events_.of("camera_health");
    ASSERT_EQ(health.size(), 1u);
    EXPECT_EQ(health[0].label, "black");
    // A black picture in which the check would see its condition opens nothing.
    mask_.score = 0.9f;
    for (int s = 8; s <= 20; ++s) frame_at(s);
    EXPECT_EQ(events_.of("mask").size(), 2u);
    // Uncovered with the condition there: a new event once confirmed.
    health_.score = 0.0f;
    for (int s = 21; s <= 23; ++s) frame_at(s);
    const auto again = events_.of("mask");
    ASSERT_EQ(again.size(), 3u);
    EXPECT_EQ(again[2].state, EventState::start);
    EXPECT_EQ(again[2].start_time, at(21));
}

// Two zones for the head covering check.
const char* kZonedConfig = R"(site: {id: sch-0101, name: No. 1 canteen, timezone: Asia/Shanghai}
mqtt: {url: mqtt://127.0.0.1:1883}
cameras:
  - id: kitchen
    url: rtsp://127.0.0.1:8554/kitchen
    checks: [head_covering]
    zones:
      left: {polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], checks: [head_covering]}
      right: {polygon: [[0.5, 0], [1, 0], [1, 1], [0.5, 1]], checks: [head_covering]}
    rules:
      head_covering: {confirm: 2s, clear: 3s, median_window: 1}
)";

class CameraPipelineZonedTest : public CameraPipelineTest {
protected:
    CameraPipelineZonedTest() : CameraPipelineTest(kZonedConfig) {}
};

// The camera's state lists each open condition once: a bare head open in each of two zones said
// ["bare_head", "bare_head"] (the 54th session's review, from reading).
TEST_F(CameraPipelineZonedTest, TheCamerasStateListsEachOpenConditionOnce) {
    head_.score = 0.9f;
    head_.boxes = {{0.1f, 0.2f, 0.1f, 0.1f, "bare_head", 0.9f}, {0.7f, 0.2f, 0.1f, 0.1f, "bare_head", 0.9f}};
    for (int s = 0; s <= 3; ++s) frame_at(s);
    ASSERT_EQ(events_.of("head_covering").size(), 2u) << "one in each zone";
    EXPECT_EQ(pipeline_.final_state(at(3)).conditions, std::vector<std::string>{"bare_head"});
}

// A condition seen gone before the picture went black cleared, when it was seen gone: a cleaner who
// switched the lights off on the way out ended "picture unusable", 4.5 s too long (the review of
// the change). And a dark room is "black", but motion in it (a torch, a rat) is what
// after_hours_motion is for: it is judged in a black picture (it never fired with the lights off).
TEST_F(CameraPipelineHealthTest, ABlackPictureLeavesAConditionSeenGoneClearedAndMotionJudged) {
    mask_.score = 0.9f;
    for (int s = 0; s <= 4; ++s) frame_at(s);
    ASSERT_EQ(events_.of("mask").size(), 1u);
    mask_.score = 0.0f;  // the face leaves at 5 s; the lights go off at 6 s
    frame_at(5);
    health_.score = 0.9f;
    for (int s = 6; s <= 9; ++s) frame_at(s);
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 2u);
    EXPECT_EQ(mask[1].end_reason, "") << "it was seen gone";
    ASSERT_TRUE(mask[1].end_time.has_value());
    EXPECT_EQ(*mask[1].end_time, at(5));
    // In the dark, a torch moves: after_hours_motion raises it.
    head_.score = 0.9f;
    for (int s = 10; s <= 13; ++s) frame_at(s);
    const auto motion = events_.of("after_hours_motion");
    ASSERT_EQ(motion.size(), 1u) << "motion in a black picture was not judged";
    EXPECT_EQ(motion[0].start_time, at(10));
}

class CameraPipelineScheduleTest : public CameraPipelineTest {
protected:
    CameraPipelineScheduleTest() : CameraPipelineTest(kScheduledConfig) {
        for (const auto& c : config_.schedules) {
            kg::rules::Schedule s{c.name, c.days, {}, c.on_holidays, c.inverted};
            for (const auto& t : c.times) s.windows.push_back(kg::rules::parse_window(t));
            schedules_[c.name] = s;
        }
    }
};

}  // namespace

// A detector's boxes passed its own threshold (the shipped models' 0.3): the rule's 0.5 on top made
// most of them raise nothing. Any box counts now; a region check keeps its 0.5.
TEST_F(CameraPipelineDefaultsTest, ABoxTheDetectorKeptAtItsOwnThresholdRaisesTheAlert) {
    EXPECT_EQ(config_.cameras.at(0).rules.at("mask").threshold, 0.0);
    EXPECT_EQ(config_.cameras.at(0).rules.at("head_covering").threshold, 0.0);
    EXPECT_EQ(config_.cameras.at(0).rules.at("cleanliness").threshold, 0.5);
    mask_.score = 0.38f;  // a no_mask box at 0.38, above kitchen-mask's min_score 0.3
    for (int s = 0; s <= 4; ++s) frame_at(s);
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 1u);
    EXPECT_EQ(mask[0].state, EventState::start);
    // No box (score 0) is nothing seen, though the threshold is 0: the event ends.
    mask_.score = 0;
    for (int s = 5; s <= 12; ++s) frame_at(s);
    ASSERT_EQ(events_.of("mask").size(), 2u);
    EXPECT_EQ(events_.of("mask")[1].state, EventState::end);
}

// Two checks reporting one condition, one seeing it on every frame and the other never: the
// tracker got 0.9 and 0 in turn, started its confirmation over at every 0, and never raised it.
TEST_F(CameraPipelineTest, TwoChecksThatDisagreeOnAConditionRaiseItOnTheOneThatSeesIt) {
    head_.check = "mask";
    head_.label = "no_mask";
    mask_.score = 0.9f;
    head_.score = 0;
    for (int s = 0; s <= 10; ++s) frame_at(s);
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 1u) << "the condition one check saw on every frame was never raised";
    EXPECT_EQ(mask[0].start_time, at(0));
    EXPECT_TRUE(events_.of("head_covering").empty());
}

// An event open when its rule's schedule ended was fed "nothing seen" and ended after the clear
// time as "cleared", though nobody looked: the room took it for mended (review). It ends at once,
// as "schedule ended"; nothing starts outside the schedule.
TEST_F(CameraPipelineScheduleTest, AnEventOpenWhenItsScheduleEndsEndsAsScheduleEnded) {
    mask_.score = 0.9f;
    for (int s = 0; s <= 4; ++s) frame_at(s);
    ASSERT_EQ(events_.of("mask").size(), 1u);
    schedules_["service"].inverted = true;  // the schedule ends
    frame_at(5);
    auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 2u);
    EXPECT_EQ(mask[1].state, EventState::end);
    EXPECT_EQ(mask[1].end_reason, kg::events::kEndScheduleEnded);
    EXPECT_EQ(*mask[1].end_time, at(5));
    for (int s = 6; s <= 20; ++s) frame_at(s);
    EXPECT_EQ(events_.of("mask").size(), 2u) << "nothing starts outside the schedule";
    schedules_["service"].inverted = false;  // the next service
    for (int s = 21; s <= 24; ++s) frame_at(s);
    mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 3u);
    EXPECT_EQ(mask[2].state, EventState::start);
}

// An outage says why the camera cannot be read: its latest failure after its last frame, at the
// start; another kind of failure later in an update (at most one a minute); the last one at the end.
TEST_F(CameraPipelineHealthTest, AnOutageSaysItsCauseAndACauseOfAnotherKindLater) {
    using kg::ingest::FailureCause;
    auto& stats = pipeline_.stats();
    const auto offline = [&] { return labelled("offline"); };
    stats.failed(FailureCause::stalled, "no data for 10000 ms", at(0), steady(0));
    pipeline_.supervise(at(0), steady(0));  // never a frame since the start: offline at once
    ASSERT_EQ(offline().size(), 1u);
    ASSERT_TRUE(offline()[0].cause);
    EXPECT_EQ(offline()[0].cause->kind, "stalled");
    EXPECT_EQ(offline()[0].cause->text, "no data for 10000 ms");

    // The camera stops answering: said, but not before a minute from the start.
    stats.failed(FailureCause::unreachable, "cannot open: Connection refused", at(10), steady(10));
    pipeline_.supervise(at(10), steady(10));
    EXPECT_EQ(offline().size(), 1u);
    pipeline_.supervise(at(61), steady(61));
    ASSERT_EQ(offline().size(), 2u);
    EXPECT_EQ(offline()[1].state, EventState::update);
    EXPECT_EQ(offline()[1].id, offline()[0].id);
    EXPECT_EQ(offline()[1].update_number, 1u);
    EXPECT_EQ(offline()[1].cause->kind, "unreachable");

    // The same kind in other words: no update; the end says the latest.
    stats.failed(FailureCause::unreachable, "no answer within 10000 ms while opening", at(70), steady(70));
    pipeline_.supervise(at(130), steady(130));
    EXPECT_EQ(offline().size(), 2u);
    stats.connected();
    stats.frame_decoded(at(140), steady(140));
    stats.frame_decoded(at(150), steady(150));
    pipeline_.supervise(at(150), steady(150));
    ASSERT_EQ(offline().size(), 3u);
    EXPECT_EQ(offline()[2].state, EventState::end);
    ASSERT_TRUE(offline()[2].cause);
    EXPECT_EQ(offline()[2].cause->text, "no answer within 10000 ms while opening");
}

// A failure from before the camera's last frame is not an outage's cause: nothing is known yet.
TEST_F(CameraPipelineHealthTest, AFailureBeforeTheLastFrameIsNotTheOutagesCause) {
    auto& stats = pipeline_.stats();
    stats.failed(kg::ingest::FailureCause::unauthorized, "cannot open: 401", at(0), steady0_);
    stats.connected();
    stats.frame_decoded(at(1), steady0_ + 1s);
    pipeline_.supervise(at(100), steady0_ + 100s);
    ASSERT_EQ(events_.all.size(), 1u);
    EXPECT_EQ(events_.all[0].label, "offline");
    EXPECT_FALSE(events_.all[0].cause);
}

// A stream that keeps breaking and coming back stays online, each gap shorter than offline_after:
// `unstable` once it broke health.unstable_after times in the last hour (6), with the latest
// failure as its cause; it ends once the hour holds fewer breaks. A failed try to reconnect is no
// break.
TEST_F(CameraPipelineHealthTest, AStreamThatKeepsBreakingIsUnstableUntilTheHourHoldsFewerBreaks) {
    using kg::ingest::FailureCause;
    auto& stats = pipeline_.stats();
    stats.connected();
    for (int i = 0; i < 6; ++i) {
        const int t = i * 40;
        stats.frame_decoded(at(t), steady(t));
        pipeline_.supervise(at(t), steady(t));
        if (i < 5) {
            EXPECT_TRUE(labelled("unstable").empty()) << i;
        }
        stats.broke(steady(t));
        stats.failed(FailureCause::stalled, "no data for 10000 ms", at(t), steady(t));
        stats.reconnect(steady(t));
        stats.reconnect(steady(t));  // a try that failed too: not a break
        stats.connected();
    }
    stats.frame_decoded(at(240), steady(240));
    const auto state = pipeline_.supervise(at(240), steady(240));
    ASSERT_EQ(labelled("unstable").size(), 1u);
    EXPECT_EQ(labelled("unstable")[0].state, EventState::start);
    ASSERT_TRUE(labelled("unstable")[0].cause);
    EXPECT_EQ(labelled("unstable")[0].cause->kind, "stalled");
    EXPECT_TRUE(state.online);
    EXPECT_EQ(state.stats.breaks_1h, 6);
    EXPECT_NE(std::find(state.conditions.begin(), state.conditions.end(), "unstable"),
              state.conditions.end());
    EXPECT_TRUE(labelled("offline").empty());
    // An hour after the first break, five are left in it: ended.
    stats.frame_decoded(at(3601), steady(3601));
    pipeline_.supervise(at(3601), steady(3601));
    ASSERT_EQ(labelled("unstable").size(), 2u);
    EXPECT_EQ(labelled("unstable")[1].state, EventState::end);
    EXPECT_EQ(labelled("unstable")[1].end_reason, "");
}

// A reload that keeps the camera's input keeps its counters, the breaks of the last hour among them:
// its open `unstable` ended `gateway stopped` and the next run raised it again at once from the
// same breaks, one more alert each reload. Handed over with the input it goes on as one alert, and
// ends when the hour holds fewer breaks; with another `unstable_after` the next run judges it
// afresh (its end sent at the reload).
TEST_F(CameraPipelineHealthTest, AnUnstableStreamAcrossAReloadThatKeepsItsInputIsOneAlert) {
    auto& stats = pipeline_.stats();
    stats.connected();
    for (int i = 0; i < 6; ++i) {
        stats.frame_decoded(at(i * 40), steady(i * 40));
        stats.broke(steady(i * 40));
        stats.connected();
    }
    stats.frame_decoded(at(240), steady(240));
    pipeline_.supervise(at(240), steady(240));
    ASSERT_EQ(labelled("unstable").size(), 1u);
    const auto id = labelled("unstable")[0].id;
    auto handed = pipeline_.hand_over_stream_events(at(241), kg::events::kEndStopped);
    pipeline_.close_events(at(241), kg::events::kEndStopped);
    EXPECT_EQ(labelled("unstable").size(), 1u) << "handed over, not ended";
    auto input = pipeline_.release_input();

    const auto& camera = config_.cameras.at(0);
    auto stricter = camera;
    stricter.health.unstable_after = 10;
    kg::app::CameraPipeline other(stricter, pool_, site_, checks());
    ASSERT_TRUE(other.take_over_input(input)) << "the same input: health is not part of it";
    auto copy = handed;
    const auto ends = other.take_over_stream_events(std::move(copy), camera);
    ASSERT_EQ(ends.size(), 1u) << "judged by another threshold";
    EXPECT_EQ(ends[0].id, id);
    EXPECT_EQ(ends[0].end_reason, kg::events::kEndStopped);
    input = other.release_input();

    kg::app::CameraPipeline next(camera, pool_, site_, checks());
    kg::app::CameraPipeline::StreamEvents none;
    EXPECT_TRUE(next.take_over_stream_events(std::move(none), camera).empty());
    ASSERT_TRUE(next.take_over_input(input));
    EXPECT_TRUE(next.take_over_stream_events(std::move(handed), camera).empty());
    auto& carried = next.stats();
    carried.frame_decoded(at(250), steady(250));
    next.supervise(at(250), steady(250));
    EXPECT_EQ(labelled("unstable").size(), 1u) << "raised again from the same breaks";
    carried.frame_decoded(at(3601), steady(3601));
    next.supervise(at(3601), steady(3601));
    ASSERT_EQ(labelled("unstable").size(), 2u);
    EXPECT_EQ(labelled("unstable")[1].id, id);
    EXPECT_EQ(labelled("unstable")[1].state, EventState::end);
    EXPECT_EQ(labelled("unstable")[1].end_reason, "");
}

// Pictures decoded with errors: `damaged` once a tenth of the last minute's are, ended below half
// that; a camera that goes offline ends it (nothing to judge).
TEST_F(CameraPipelineHealthTest, AStreamWithManyDamagedPicturesIsDamagedUntilItIsClean) {
    auto& stats = pipeline_.stats();
    const auto damaged = [&] { return labelled("damaged"); };
    stats.connected();
    // 25 pictures a second, 2 of them damaged (8%): not enough.
    int t = 0;
    const auto run = [&](int seconds, int damaged_per_second) {
        for (int end = t + seconds; t < end; ++t) {
            for (int i = 0; i < 25; ++i) stats.frame_decoded(at(t), steady(t));
            stats.frames_damaged(static_cast<std::uint64_t>(damaged_per_second));
            pipeline_.supervise(at(t), steady(t));
        }
    };
    run(90, 2);
    EXPECT_TRUE(damaged().empty());
    run(90, 5);  // 20%
    ASSERT_EQ(damaged().size(), 1u);
    EXPECT_EQ(damaged()[0].state, EventState::start);
    run(90, 2);  // 8%: over half the share, still damaged
    EXPECT_EQ(damaged().size(), 1u);
    run(90, 0);
    ASSERT_EQ(damaged().size(), 2u);
    EXPECT_EQ(damaged()[1].state, EventState::end);
    run(90, 5);
    ASSERT_EQ(damaged().size(), 3u);
    pipeline_.supervise(at(t + 100), steady(t + 100));  // no picture for 100 s: offline
    ASSERT_EQ(damaged().size(), 4u);
    EXPECT_EQ(damaged()[3].end_reason, "camera offline");
}

// A cause of another kind within the minute is not sent as an update, but the end says it (the
// review: the end said the older one, and the room kept it); and an outage found before any failure
// is told its first cause at once, not a minute after its start.
// A cause found within the minute before a reload, not yet told the room, is told by the next run:
// handed over as the latest, it was taken for told and never said while the outage lasted (the 65th
// session's review found it in the sensors' hand-over, written alike).
TEST_F(CameraPipelineHealthTest, ACauseNotYetToldAtAReloadIsToldByTheNextRun) {
    using kg::ingest::FailureCause;
    const auto offline = [&] { return labelled("offline"); };
    pipeline_.stats().failed(FailureCause::stalled, "no data for 10000 ms", at(0), steady(0));
    pipeline_.supervise(at(0), steady(0));
    pipeline_.stats().failed(FailureCause::unreachable, "cannot open: Connection refused", at(10),
                             steady(10));
    pipeline_.supervise(at(10), steady(10));
    ASSERT_EQ(offline().size(), 1u);  // the stall told; the refusal not yet, within the minute
    const auto handed = pipeline_.hand_over_offline(at(20), kg::events::kEndStopped);
    ASSERT_TRUE(handed);
    kg::app::CameraPipeline next(config_.cameras.at(0), pool_, site_, checks());
    ASSERT_TRUE(next.take_over_offline(*handed, config_.cameras.at(0), pipeline_.cause_told()));
    next.stats().failed(FailureCause::unreachable, "cannot open: Connection refused", at(30), steady(30));
    next.supervise(at(30), steady(30));
    EXPECT_EQ(offline().size(), 1u) << "still within the minute of the stall's message";
    next.supervise(at(61), steady(61));
    ASSERT_EQ(offline().size(), 2u);
    EXPECT_EQ(offline()[1].state, EventState::update);
    EXPECT_EQ(offline()[1].id, offline()[0].id);
    ASSERT_TRUE(offline()[1].cause);
    EXPECT_EQ(offline()[1].cause->kind, "unreachable");
}

TEST_F(CameraPipelineHealthTest, TheEndSaysTheLatestCauseAndAFirstCauseIsToldAtOnce) {
    using kg::ingest::FailureCause;
    auto& stats = pipeline_.stats();
    const auto offline = [&] { return labelled("offline"); };
    stats.failed(FailureCause::unreachable, "cannot open: Connection refused", at(0), steady(0));
    pipeline_.supervise(at(0), steady(0));
    stats.failed(FailureCause::not_found, "cannot open: Server returned 404 Not Found", at(20), steady(20));
    pipeline_.supervise(at(20), steady(20));
    ASSERT_EQ(offline().size(), 1u);  // within the minute: no update
    stats.connected();
    stats.frame_decoded(at(30), steady(30));
    stats.frame_decoded(at(40), steady(40));
    pipeline_.supervise(at(40), steady(40));
    ASSERT_EQ(offline().size(), 2u);
    EXPECT_EQ(offline()[1].state, EventState::end);
    ASSERT_TRUE(offline()[1].cause);
    EXPECT_EQ(offline()[1].cause->kind, "not_found");

    // Down again, a read hanging past offline_after (20 s): no cause at the start; the stall found
    // at once.
    pipeline_.supervise(at(61), steady(61));
    ASSERT_EQ(offline().size(), 3u);
    EXPECT_EQ(offline()[2].state, EventState::start);
    EXPECT_FALSE(offline()[2].cause);
    stats.failed(FailureCause::stalled, "no data for 30000 ms", at(70), steady(70));
    pipeline_.supervise(at(70), steady(70));
    ASSERT_EQ(offline().size(), 4u);
    EXPECT_EQ(offline()[3].state, EventState::update);
    EXPECT_EQ(offline()[3].cause->kind, "stalled");
}

// A reload showed every camera offline to the room for the seconds its stream took to open again
// (the 62nd session's reload review). A camera online at the reload hands its last frame to the
// next run: online until that run's own first frame, and offline `offline_after` from the last
// frame if none comes, the outage dated at it, as if the reload had not been.
TEST_F(CameraPipelineHealthTest, ACameraOnlineAtAReloadStaysOnlineUntilTheSilenceSinceItsLastFrame) {
    const auto offline = [&] { return labelled("offline"); };
    auto& stats = pipeline_.stats();
    stats.connected();
    for (int t = 0; t <= 5; ++t) stats.frame_decoded(at(t), steady(t));
    ASSERT_TRUE(pipeline_.supervise(at(5), steady(5)).online);

    auto moved = config_.cameras.at(0);
    moved.url = "rtsp://192.0.2.9/elsewhere";
    kg::app::CameraPipeline elsewhere(moved, pool_, site_, checks());
    EXPECT_FALSE(elsewhere.take_over_seen(config_.cameras.at(0), at(5), steady(5)))
        << "fetched from another place: its own start";

    kg::app::CameraPipeline next(config_.cameras.at(0), pool_, site_, checks());
    ASSERT_TRUE(next.take_over_seen(config_.cameras.at(0), at(5), steady(5)));
    auto state = next.supervise(at(10), steady(10));
    EXPECT_TRUE(state.online);
    ASSERT_TRUE(state.stats.last_frame);
    EXPECT_EQ(*state.stats.last_frame, at(5));
    EXPECT_TRUE(next.supervise(at(24), steady(24)).online) << "19 s since the last frame, offline after 20";
    EXPECT_TRUE(offline().empty());
    state = next.supervise(at(26), steady(26));
    EXPECT_FALSE(state.online);
    ASSERT_EQ(offline().size(), 1u);
    EXPECT_EQ(offline()[0].state, EventState::start);
    EXPECT_EQ(offline()[0].start_time, at(5)) << "dated at the last frame, before the reload";

    // One whose stream opens in the next run counts its silence from its own frames from then on.
    kg::app::CameraPipeline opened(config_.cameras.at(0), pool_, site_, checks());
    ASSERT_TRUE(opened.take_over_seen(config_.cameras.at(0), at(5), steady(5)));
    opened.stats().connected();
    opened.stats().frame_decoded(at(12), steady(12));
    state = opened.supervise(at(30), steady(30));
    EXPECT_TRUE(state.online) << "18 s since its own frame";
    EXPECT_EQ(*state.stats.last_frame, at(12));
    EXPECT_EQ(offline().size(), 1u);
}

// A reload ended a camera's open no_mask as `gateway stopped`, and the next run raised it again as
// a new alert once confirmed: the room was notified, and asked to acknowledge, twice for one
// condition (the 62nd session's reload review: 31 `black` alerts of one camera in 35 reloads).
// Handed over, it is one alert: its id and start kept, its best frame too, ending `cleared` when the
// next run no longer sees it.
TEST_F(CameraPipelineTest, AnOpenNoMaskGoesOnAcrossAReloadAsOneAlert) {
    const auto& camera = config_.cameras.at(0);
    mask_.score = 0.9f;
    for (int s = 0; s <= 4; ++s) frame_at(s);
    ASSERT_EQ(events_.of("mask").size(), 1u);
    const auto start = events_.of("mask")[0];
    auto handed = pipeline_.hand_over_events(at(5), kg::events::kEndStopped, camera);
    ASSERT_EQ(handed.size(), 1u);
    EXPECT_EQ(handed[0].label, "no_mask");
    pipeline_.close_events(at(5), kg::events::kEndStopped);
    EXPECT_EQ(events_.of("mask").size(), 1u) << "no end sent for the event handed over";

    kg::app::CameraPipeline next(camera, pool_, site_, checks());
    EXPECT_EQ(next.take_over_events(std::move(handed), camera), std::vector<std::string>{start.id});
    EXPECT_EQ(next.final_state(at(6)).conditions, std::vector<std::string>{"no_mask"});
    for (int s = 6; s <= 9; ++s) frame_at(next, s);
    EXPECT_EQ(events_.of("mask").size(), 1u) << "still seen: no second alert";
    mask_.score = 0;
    for (int s = 10; s <= 14; ++s) frame_at(next, s);
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 2u);
    EXPECT_EQ(mask[1].state, EventState::end);
    EXPECT_EQ(mask[1].id, start.id);
    EXPECT_EQ(mask[1].start_time, start.start_time);
    EXPECT_TRUE(mask[1].end_reason.empty()) << "seen to clear, not " << mask[1].end_reason;
}

// Judged otherwise by the next run (its rule edited), or judged over time (frozen), an open event
// ends at the reload as before: its end is sent, with the reason the stop gave.
TEST_F(CameraPipelineTest, AnEventTheNextRunJudgesOtherwiseEndsAtTheReload) {
    const auto& camera = config_.cameras.at(0);
    auto edited = camera;
    edited.rules.at("mask").clear = std::chrono::seconds(30);
    EXPECT_TRUE(kg::app::events_alike(camera, camera, "mask", "no_mask"));
    EXPECT_FALSE(kg::app::events_alike(camera, edited, "mask", "no_mask"));
    EXPECT_FALSE(kg::app::events_alike(camera, camera, "camera_health", "frozen"));
    // Against the sharpness learned from earlier pictures, which the next run has not: a lens still
    // covered read as uncovered, `cleared` 2 s after the reload (the review).
    EXPECT_FALSE(kg::app::events_alike(camera, camera, "camera_health", "covered"));
    EXPECT_FALSE(kg::app::events_alike(camera, camera, "mask", "mask_below_nose")) << "a user model's label";
    auto elsewhere = camera;
    elsewhere.url = "rtsp://192.0.2.9/other";
    EXPECT_FALSE(kg::app::events_alike(camera, elsewhere, "mask", "no_mask"));

    mask_.score = 0.9f;
    for (int s = 0; s <= 4; ++s) frame_at(s);
    auto handed = pipeline_.hand_over_events(at(5), kg::events::kEndStopped, camera);
    ASSERT_EQ(handed.size(), 1u);
    kg::app::CameraPipeline next(edited, pool_, site_, checks());
    EXPECT_TRUE(next.take_over_events(std::move(handed), camera).empty());
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 2u);
    EXPECT_EQ(mask[1].state, EventState::end);
    EXPECT_EQ(mask[1].end_reason, kg::events::kEndStopped);
    EXPECT_TRUE(next.final_state(at(6)).conditions.empty());
}

// A condition seen at a reload but not yet confirmed was forgotten by the stop, and the next run
// began its `confirm` again: each reload delayed it by that much, and reloads closer than its
// `confirm` kept it from ever being raised. Its confirmation goes on from when it was first seen,
// where the next run judges it alike; otherwise it starts again.
TEST_F(CameraPipelineTest, AConditionPendingAtAReloadIsConfirmedFromWhenItWasFirstSeen) {
    const auto& camera = config_.cameras.at(0);
    mask_.score = 0.9f;
    frame_at(0);  // seen; confirmed 2 s later
    frame_at(1);
    ASSERT_TRUE(events_.of("mask").empty());
    EXPECT_TRUE(pipeline_.hand_over_events(at(1), kg::events::kEndStopped, camera).empty()) << "none open";
    const auto pending = pipeline_.hand_over_pending(camera);
    ASSERT_EQ(pending.size(), 1u);
    EXPECT_EQ(pending[0].label, "no_mask");
    EXPECT_EQ(pending[0].since, at(0));
    pipeline_.close_events(at(1), kg::events::kEndStopped);
    EXPECT_TRUE(events_.of("mask").empty());

    auto edited = camera;
    edited.rules.at("mask").confirm = std::chrono::seconds(3);
    kg::app::CameraPipeline otherwise(edited, pool_, site_, checks());
    otherwise.take_over_pending(pending, camera);
    frame_at(otherwise, 2);
    EXPECT_TRUE(events_.of("mask").empty()) << "another confirm: seen afresh from now";

    kg::app::CameraPipeline next(camera, pool_, site_, checks());
    next.take_over_pending(pending, camera);
    frame_at(next, 2);
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 1u) << "confirmed 2 s after it was first seen, before the reload";
    EXPECT_EQ(mask[0].state, EventState::start);
    EXPECT_EQ(mask[0].start_time, at(0));
}

// A taken-over alert whose check then fails on every picture ends as `check failing`, as its own
// would: made without an observation, its tracker knew no check (the review of this change), and
// it stayed open for good, handed over again at each reload.
TEST_F(CameraPipelineTest, ATakenOverAlertWhoseCheckFailsEndsAsFailing) {
    const auto& camera = config_.cameras.at(0);
    mask_.score = 0.9f;
    for (int s = 0; s <= 4; ++s) frame_at(s);
    auto handed = pipeline_.hand_over_events(at(5), kg::events::kEndStopped, camera);
    ASSERT_EQ(handed.size(), 1u);
    kg::app::CameraPipeline next(camera, pool_, site_, checks());
    ASSERT_EQ(next.take_over_events(std::move(handed), camera).size(), 1u);
    mask_.fail = true;
    for (int s = 6; s <= 10; ++s) frame_at(next, s);
    const auto mask = events_.of("mask");
    ASSERT_EQ(mask.size(), 2u);
    EXPECT_EQ(mask[1].state, EventState::end);
    EXPECT_EQ(mask[1].end_reason, kg::events::kEndCheckFailing);
}

// Built-in checks that learn over time: a frozen picture (4 s) and a station nobody moves at (8 s).
const char* kLearningConfig = R"(site: {id: sch-0101, name: No. 1 canteen, timezone: Asia/Shanghai}
mqtt: {url: mqtt://127.0.0.1:1883}
cameras:
  - id: kitchen
    url: rtsp://127.0.0.1:8554/kitchen
    checks: [camera_health, unattended]
    health: {confirm: 2s, clear: 2s, frozen_after: 4s}
    scene: {unattended_after: 8s}
    rules:
      unattended: {confirm: 2s, clear: 2s, median_window: 1}
)";

class CameraPipelineLearningTest : public CameraPipelineTest {
protected:
    CameraPipelineLearningTest() : CameraPipelineTest(kLearningConfig) {
        // A tiled wall and a counter, the same picture frame after frame (frozen, and nobody there).
        frame_.image = cv::Mat(180, 320, CV_8UC3, cv::Scalar(150, 160, 170));
        for (int y = 0; y < 180; y += 12) cv::line(frame_.image, {0, y}, {320, y}, cv::Scalar(90, 90, 90), 1);
        for (int x = 0; x < 320; x += 12) cv::line(frame_.image, {x, 0}, {x, 100}, cv::Scalar(90, 90, 90), 1);
        cv::rectangle(frame_.image, {50, 110}, {270, 165}, cv::Scalar(60, 70, 200), cv::FILLED);
        still_ = frame_.image.clone();
    }
    // A cook crossing the picture, somewhere else at each second.
    void cook_at(int seconds) {
        still_.copyTo(frame_.image);
        const int x = 20 + (seconds * 40) % 260;
        cv::rectangle(frame_.image, {x, 30}, {x + 40, 170}, cv::Scalar(30, 30, 30), cv::FILLED);
    }
    // The open events of this camera, by label, as their starts and ends.
    std::vector<std::pair<std::string, std::string>> of(const std::string& label) const {
        std::vector<std::pair<std::string, std::string>> out;
        for (const auto& e : labelled(label))
            if (e.state != EventState::update)
                out.emplace_back(e.state == EventState::start ? "start" : "end:" + e.end_reason, e.id);
        return out;
    }
    cv::Mat still_;
};

// A reload ended a frozen picture's alert and an unattended station's as `gateway stopped`, and the
// next run, its checks made afresh, raised them again once they had seen the picture frozen, or the
// station still, for as long again: the room saw one more alert for each at every configuration
// edit, and the condition unreported meanwhile. With the camera's input kept, the next run's checks
// take what these learned and the alerts go on as one, ending when the condition does. A reload
// that changes how a check judges (`frozen_after`) ends its alert, as before.
TEST_F(CameraPipelineLearningTest, AFrozenPictureAndAnUnattendedStationAcrossAReloadAreOneAlertEach) {
    const auto& camera = config_.cameras.at(0);
    kg::app::CameraPipeline first(camera, pool_, site_);
    for (int s = 0; s <= 12; ++s) frame_at(first, s);
    ASSERT_EQ(of("frozen").size(), 1u);
    ASSERT_EQ(of("unattended").size(), 1u);
    const auto frozen = of("frozen")[0].second, unattended = of("unattended")[0].second;

    EXPECT_TRUE(first.hand_over_events(at(13), kg::events::kEndStopped, camera).empty())
        << "the input not kept: learned again, so ended";
    auto handed = first.hand_over_events(at(13), kg::events::kEndStopped, camera, true);
    ASSERT_EQ(handed.size(), 2u);
    first.close_events(at(13), kg::events::kEndStopped);
    EXPECT_EQ(of("frozen").size(), 1u) << "handed over, not ended";
    auto input = first.release_input();
    auto analysis = first.release_analysis();

    kg::app::CameraPipeline next(camera, pool_, site_);
    ASSERT_TRUE(next.take_over_input(input));
    EXPECT_EQ(next.take_over_analysis(*analysis, camera),
              (std::vector<std::string>{"camera_health", "unattended"}));
    EXPECT_EQ(next.take_over_events(std::move(handed), camera).size(), 2u);
    EXPECT_EQ(next.final_state(at(14)).conditions, (std::vector<std::string>{"frozen", "unattended"}));
    for (int s = 14; s <= 24; ++s) frame_at(next, s);
    EXPECT_EQ(of("frozen").size(), 1u) << "still frozen: no second alert";
    EXPECT_EQ(of("unattended").size(), 1u) << "still nobody: no second alert";
    for (int s = 25; s <= 32; ++s) {
        cook_at(s);
        frame_at(next, s);
    }
    using Seen = std::vector<std::pair<std::string, std::string>>;
    EXPECT_EQ(of("frozen"), (Seen{{"start", frozen}, {"end:", frozen}})) << "ended when the picture moved";
    EXPECT_EQ(of("unattended"), (Seen{{"start", unattended}, {"end:", unattended}})) << "ended by the cook";

    // Judged otherwise by the next run: its check takes nothing, and the alert ends at the reload.
    kg::app::CameraPipeline again(camera, pool_, site_);
    still_.copyTo(frame_.image);
    for (int s = 40; s <= 52; ++s) frame_at(again, s);
    ASSERT_EQ(of("frozen").size(), 3u);
    handed = again.hand_over_events(at(53), kg::events::kEndStopped, camera, true);
    input = again.release_input();
    analysis = again.release_analysis();
    auto slower = camera;
    slower.health.frozen_after = std::chrono::seconds(6);
    kg::app::CameraPipeline judged_otherwise(slower, pool_, site_);
    ASSERT_TRUE(judged_otherwise.take_over_input(input)) << "health is not part of the input";
    EXPECT_EQ(judged_otherwise.take_over_analysis(*analysis, camera),
              (std::vector<std::string>{"camera_health", "unattended"}))
        << "what the stream showed, whatever judges it now";
    EXPECT_EQ(judged_otherwise.take_over_events(std::move(handed), camera).size(), 1u) << "unattended alone";
    ASSERT_EQ(of("frozen").size(), 4u);
    EXPECT_EQ(of("frozen")[3].first, std::string("end:") + kg::events::kEndStopped);

    // Which edits end which alert (the review: a floor zone added for cleanliness ended an open
    // `frozen` and `unattended`; `offline_after` edited made the checks learn afresh).
    using kg::app::events_alike;
    auto floor = camera;
    floor.zones.push_back({"floor", {{0, 0.5f}, {1, 0.5f}, {1, 1}, {0, 1}}, {"cleanliness"}});
    floor.masks.push_back({{0, 0}, {0.1f, 0}, {0.1f, 0.1f}});
    floor.health.offline_after = std::chrono::seconds(60);
    EXPECT_TRUE(events_alike(camera, floor, "camera_health", "frozen", true));
    EXPECT_TRUE(events_alike(camera, floor, "unattended", "unattended", true));
    EXPECT_FALSE(events_alike(camera, floor, "unattended", "unattended", false)) << "learned afresh";
    auto station = camera;
    station.zones.push_back({"stove", {{0, 0}, {0.5f, 0}, {0.5f, 0.5f}}, {"unattended"}});
    EXPECT_TRUE(events_alike(camera, station, "camera_health", "frozen", true));
    EXPECT_FALSE(events_alike(camera, station, "unattended", "unattended", true)) << "its own zone";
    auto later = camera;
    later.scene.unattended_after = std::chrono::seconds(20);
    EXPECT_FALSE(events_alike(camera, later, "unattended", "unattended", true));
    EXPECT_TRUE(events_alike(camera, later, "camera_health", "frozen", true));
    auto moved = camera;
    moved.url = "rtsp://192.0.2.9/other";
    EXPECT_FALSE(events_alike(camera, moved, "camera_health", "frozen", true));

    // Only offline_after edited: the stream and what was learned of it go on.
    kg::app::CameraPipeline watched(camera, pool_, site_);
    for (int s = 60; s <= 72; ++s) frame_at(watched, s);
    input = watched.release_input();
    analysis = watched.release_analysis();
    auto patient = camera;
    patient.health.offline_after = std::chrono::seconds(60);
    kg::app::CameraPipeline after_edit(patient, pool_, site_);
    ASSERT_TRUE(after_edit.take_over_input(input));
    EXPECT_EQ(after_edit.take_over_analysis(*analysis, camera),
              (std::vector<std::string>{"camera_health", "unattended"}));
}

namespace {

// What a packet observer (the clip ring's place) was told, in order.
struct Told final : kg::ingest::PacketObserver {
    std::vector<std::string> calls;
    void on_stream_opened(const AVStream&) override { calls.push_back("opened"); }
    void on_packet(const AVPacket& p, const AVStream&) override {
        calls.push_back((p.flags & AV_PKT_FLAG_KEY) != 0 ? "key" : "packet");
    }
    void on_stream_closed() override { calls.push_back("closed"); }
};

}  // namespace

// A reload hands the camera's input to the next run's pipeline, which attaches its own clip ring
// while the stream is being read: the ring is told of the stream before its first packet (it keeps
// the codec's parameters for the clips), and the ring detached gets nothing more, since it goes with
// the run. The spec says when an input serves the next run: not for another URL, analysis, public
// feed or log, whatever else of the camera changes.
TEST(CameraInput, ARingAttachedWhileStreamingIsToldOfTheStreamFirstAndADetachedOneGetsNothing) {
    auto cfg = kg::config::load_string(kConfig, "camera_input_test.yaml");
    const auto& camera = cfg.cameras.at(0);
    kg::app::CameraInput input(camera, kg::app::CameraInput::spec_of(camera, cfg), nullptr,
                               kg::Logging::null_logger(), kg::Logging::null_logger());
    std::unique_ptr<AVFormatContext, void (*)(AVFormatContext*)> format(avformat_alloc_context(),
                                                                        avformat_free_context);
    AVStream* stream = avformat_new_stream(format.get(), nullptr);
    ASSERT_NE(stream, nullptr);
    stream->codecpar->codec_type = AVMEDIA_TYPE_VIDEO;
    stream->codecpar->codec_id = AV_CODEC_ID_H264;
    AVPacket key{}, other{};
    key.flags = AV_PKT_FLAG_KEY;

    Told first, second;
    input.set_clip_ring(&first);
    input.on_stream_opened(*stream);
    input.on_packet(key, *stream);
    input.set_clip_ring(nullptr);  // the run stops
    input.on_packet(other, *stream);
    input.set_clip_ring(&second);  // the next run starts, mid-stream
    input.on_packet(other, *stream);
    input.on_packet(key, *stream);
    input.on_stream_closed();
    EXPECT_EQ(first.calls, (std::vector<std::string>{"opened", "key"}));
    EXPECT_EQ(second.calls, (std::vector<std::string>{"opened", "packet", "key", "closed"}));

    const auto spec = kg::app::CameraInput::spec_of(camera, cfg);
    auto changed = cfg;
    auto& c = changed.cameras.at(0);
    c.name = "Another name";
    c.checks = {"camera_health"};
    c.health.black_luma = 10;
    changed.log.level = "debug";  // applied to the input's loggers as it is taken over
    EXPECT_EQ(kg::app::CameraInput::spec_of(c, changed), spec) << "what the input does not use";
    for (const auto& change : std::vector<std::function<void(kg::config::Gateway&)>>{
             [](auto& g) { g.cameras.at(0).url = "rtsp://127.0.0.1:8554/other"; },
             [](auto& g) { g.cameras.at(0).input.timeout = std::chrono::seconds(3); },
             [](auto& g) { g.cameras.at(0).analysis.width = 320; },
             [](auto& g) { g.cameras.at(0).analysis.keyframes_only = true; },
             [](auto& g) { g.log.json = true; },
             [](auto& g) {
                 g.cameras.at(0).is_public = true;
                 g.public_side.listen = "127.0.0.1:0";
             },
         }) {
        auto other_cfg = cfg;
        change(other_cfg);
        EXPECT_FALSE(kg::app::CameraInput::spec_of(other_cfg.cameras.at(0), other_cfg) == spec);
    }
    // A public camera's feed: its privacy masks and the site's id (its HLS folder) are part of it.
    auto shown = cfg;
    shown.cameras.at(0).is_public = true;
    shown.public_side.listen = "127.0.0.1:0";
    const auto shown_spec = kg::app::CameraInput::spec_of(shown.cameras.at(0), shown);
    ASSERT_TRUE(shown_spec.feed.has_value());
    auto masked = shown;
    masked.cameras.at(0).privacy_masks = {{{0.1f, 0.1f}, {0.5f, 0.1f}, {0.5f, 0.5f}}};
    EXPECT_FALSE(kg::app::CameraInput::spec_of(masked.cameras.at(0), masked) == shown_spec);
    auto moved = shown;
    moved.site.id = "another-site";
    EXPECT_FALSE(kg::app::CameraInput::spec_of(moved.cameras.at(0), moved) == shown_spec);
}
