// The region checks and the motion map they share, on synthetic pictures: a change of the lighting
// is neither motion nor dirt, while a thing that moves or is left behind still is.
#include "vision/region_checks.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <opencv2/imgproc.hpp>

#include "vision/detector_check.hpp"
#include "vision/motion.hpp"

using kg::vision::MotionCheck;
using kg::vision::MotionMap;
using kg::vision::Observation;
using kg::vision::ReferenceChangeCheck;

namespace {

// A kitchen-like scene, lit at `light` (1: as learned), with a sensor's noise in every frame.
cv::Mat scene(cv::RNG& rng, double light = 1.0) {
    cv::Mat img(360, 640, CV_8UC3, cv::Scalar(150, 160, 170));
    for (int y = 0; y < 360; y += 24) cv::line(img, {0, y}, {640, y}, cv::Scalar(90, 90, 90), 2);
    for (int x = 0; x < 640; x += 24) cv::line(img, {x, 0}, {x, 200}, cv::Scalar(90, 90, 90), 2);
    cv::rectangle(img, {100, 220}, {540, 330}, cv::Scalar(60, 70, 200), cv::FILLED);
    img.convertTo(img, -1, light);
    cv::Mat noise(img.size(), img.type());
    rng.fill(noise, cv::RNG::NORMAL, 0, 4);
    cv::add(img, noise, img);
    return img;
}

// One camera's motion map with its checks, fed one picture at a time as the pipeline does.
struct Regions {
    MotionMap motion;
    MotionCheck after_hours{{{"", {}}}, motion, 0.002};
    ReferenceChangeCheck cleanliness{"cleanliness", "dirty", {{"", {}}}, motion, 0.002, cv::Mat()};
    kg::ingest::Frame frame;
    std::vector<Observation> last;  // {motion, dirt} of the last picture

    // Returns whether {motion, dirt} are present in this picture.
    std::pair<bool, bool> feed(const cv::Mat& img) {
        img.copyTo(frame.image);
        ++frame.seq;
        frame.steady += std::chrono::milliseconds(500);  // analysed at 2 fps
        motion.update(frame.image);
        last.clear();
        after_hours.analyse(frame, last);
        cleanliness.analyse(frame, last);
        EXPECT_EQ(last.size(), 2u);
        return {last.at(0).present, last.at(1).present};
    }

    // Whether a sack left on the floor of the pictures `picture(i)` reads as dirt within 20 frames.
    bool sack_left(const std::function<cv::Mat(int)>& picture) {
        bool dirty = false;
        for (int i = 0; i < 20; ++i) {
            cv::Mat img = picture(i);
            cv::rectangle(img, {400, 60}, {480, 140}, cv::Scalar(30, 40, 50), cv::FILLED);
            dirty = feed(img).second;
        }
        return dirty;
    }
};

// One station under `unattended` (5 minutes), fed still pictures at the gaps a test gives.
struct Station {
    cv::RNG rng{5};
    MotionMap motion;
    kg::vision::UnattendedCheck check{{{"", {}}}, motion, 0.002, std::chrono::minutes(5)};
    kg::ingest::Frame frame;
    Station() { frame.steady = kg::SteadyPoint{} + std::chrono::hours(1); }

    // Whether `unattended` is present in a still picture `after` the last one.
    bool feed(kg::SteadyPoint::duration after) {
        frame.steady += after;
        scene(rng).copyTo(frame.image);
        motion.update(frame.image);
        std::vector<Observation> out;
        check.analyse(frame, out);
        return out.at(0).present;
    }
};

}  // namespace

TEST(RegionChecks, ALightingChangeIsNeitherMotionNorDirt) {
    cv::RNG rng(7);
    Regions r;
    for (int i = 0; i < 30; ++i) r.feed(scene(rng));
    ASSERT_EQ(r.feed(scene(rng)), std::make_pair(false, false)) << "the still scene is quiet once learned";

    // The lights are dimmed by 40% (a bank switched off), then the camera's exposure brings part of
    // it back: two changes of the whole picture, each within one frame.
    for (double light : {0.6, 0.8}) {
        for (int i = 0; i < 20; ++i) {
            const auto [moved, dirty] = r.feed(scene(rng, light));
            EXPECT_FALSE(moved) << "light " << light << ", frame " << i << " after the change";
            EXPECT_FALSE(dirty) << "light " << light << ", frame " << i << " after the change";
            if (i == 0) {
                EXPECT_TRUE(r.motion.lighting_changed()) << "light " << light;
            }
        }
    }
}

TEST(RegionChecks, AfterALightingChangeWhatMovesAndWhatIsLeftAreStillSeen) {
    cv::RNG rng(11);
    Regions r;
    for (int i = 0; i < 30; ++i) r.feed(scene(rng));
    for (int i = 0; i < 10; ++i) r.feed(scene(rng, 0.6));

    ASSERT_EQ(r.feed(scene(rng, 0.6)), std::make_pair(false, false)) << "the dimmed kitchen is quiet";

    // A rodent runs along the counter in the dimmed kitchen: boxed where it runs.
    bool moved = false;
    for (int i = 0; i < 8; ++i) {
        cv::Mat img = scene(rng, 0.6);
        const cv::Point rodent{120 + 40 * i, 240};
        cv::circle(img, rodent, 20, cv::Scalar(20, 20, 20), cv::FILLED);
        if (!r.feed(img).first) continue;
        moved = true;
        EXPECT_FALSE(r.motion.lighting_changed());
        for (const auto& b : r.last.at(0).boxes) {
            EXPECT_NEAR((b.x + b.w / 2) * 640, rodent.x, 60) << "frame " << i;
            EXPECT_NEAR((b.y + b.h / 2) * 360, rodent.y, 40) << "frame " << i;
        }
    }
    EXPECT_TRUE(moved);

    // A sack is left on the floor and stays there: boxed where it lies.
    bool dirty = false;
    for (int i = 0; i < 20; ++i) {
        cv::Mat img = scene(rng, 0.6);
        cv::rectangle(img, {400, 60}, {480, 140}, cv::Scalar(30, 40, 50), cv::FILLED);
        dirty = r.feed(img).second;
    }
    ASSERT_TRUE(dirty) << "the sack, at the dimmed kitchen's brightness";
    ASSERT_EQ(r.last.at(1).boxes.size(), 1u);
    const auto& sack = r.last.at(1).boxes[0];
    EXPECT_NEAR(sack.x * 640, 400, 12);
    EXPECT_NEAR(sack.y * 360, 60, 12);
    EXPECT_NEAR(sack.w * 640, 80, 16);
    EXPECT_NEAR(sack.h * 360, 80, 16);
}

TEST(RegionChecks, SomethingBrightInOnePartOfThePictureIsNoLightingChangeForTheRest) {
    // A cook in a white coat stands still at the right of the picture: only the floor zone at the
    // left is judged. Brought to the reference's brightness by the whole picture's mean, the floor
    // read 25% darker, and dirty; the gain is the median of still cells, which the coat does not
    // move.
    cv::RNG rng(5);
    MotionMap motion;
    const kg::rules::Polygon left{{0, 0}, {0.45, 0}, {0.45, 1}, {0, 1}};
    ReferenceChangeCheck floor{"cleanliness", "dirty", {{"floor", MotionMap::region_mask(left)}},
                               motion,        0.002,   cv::Mat()};
    kg::ingest::Frame frame;
    const auto dirty = [&](const cv::Mat& img) {
        img.copyTo(frame.image);
        motion.update(frame.image);
        std::vector<Observation> out;
        floor.analyse(frame, out);
        return out.at(0).present;
    };
    for (int i = 0; i < 30; ++i) dirty(scene(rng));
    for (int i = 0; i < 20; ++i) {
        cv::Mat img = scene(rng);
        cv::rectangle(img, {352, 0}, {640, 360}, cv::Scalar(250, 250, 250), cv::FILLED);
        EXPECT_FALSE(dirty(img)) << "frame " << i;
    }
}

namespace {

// Sees one bare face, counting how often it is asked to look; throws (after clearing its output,
// as the real ones do) while `fail` is set.
class FakeDetector final : public kg::vision::Detector {
public:
    FakeDetector(int& runs, const bool& fail) : runs_(runs), fail_(fail) {}
    void detect(const cv::Mat&, std::vector<kg::vision::Detection>& out) override {
        ++runs_;
        out.clear();
        if (fail_) throw std::runtime_error("the network's output is not what its manifest says");
        kg::vision::Detection d;
        d.label = "no_mask";
        d.score = 0.8f;
        d.w = d.h = 0.1f;
        out.push_back(d);
    }
    const std::vector<std::string>& labels() const override { return labels_; }

private:
    int& runs_;
    const bool& fail_;
    std::vector<std::string> labels_{"no_mask"};
};

// A motion-gated no_mask check over `detector`, refreshed only hourly, fed one picture at a time
// as the pipeline does (the motion map first).
struct Gated {
    explicit Gated(std::unique_ptr<kg::vision::Detector> detector)
        : check("mask", std::move(detector), {{"no_mask", "mask", "no_mask"}}, &motion,
                std::chrono::hours(1)) {}
    Observation feed(const cv::Mat& img) {
        img.copyTo(frame.image);
        motion.update(frame.image);
        std::vector<Observation> out;
        check.analyse(frame, out);
        return out.at(0);
    }

    MotionMap motion;
    kg::vision::DetectorCheck check;
    kg::ingest::Frame frame;
};

}  // namespace

TEST(RegionChecks, APictureThatChangedAsAWholeRunsTheMotionGatedDetectorsAgain) {
    // A scene that changes at once (the lights, a cut in the camera's picture) is no motion, but
    // the faces seen before may be gone: skipped until its refresh, a detector kept reporting them,
    // and an alert outlived its condition by up to the refresh time.
    cv::RNG rng(3);
    int runs = 0;
    const bool never = false;
    Gated gated(std::make_unique<FakeDetector>(runs, never));
    const auto feed = [&](const cv::Mat& img) { return gated.feed(img).present; };
    for (int i = 0; i < 30; ++i) feed(scene(rng));
    const int still = runs;
    for (int i = 0; i < 5; ++i) feed(scene(rng));
    EXPECT_EQ(runs, still) << "a still picture is not looked at again before the refresh";
    feed(scene(rng, 0.6));
    EXPECT_TRUE(gated.motion.lighting_changed());
    EXPECT_EQ(runs, still + 1);
}

namespace {

// Sees a bare face where the picture has a bright patch at (320, 100), as a person in view.
class PatchDetector final : public kg::vision::Detector {
public:
    explicit PatchDetector(int& runs) : runs_(runs) {}
    void detect(const cv::Mat& image, std::vector<kg::vision::Detection>& out) override {
        ++runs_;
        out.clear();
        if (image.at<cv::Vec3b>(100, 320)[0] < 230) return;
        kg::vision::Detection d;
        d.label = "no_mask";
        d.score = 0.8f;
        d.x = 0.45f, d.y = 0.2f, d.w = d.h = 0.1f;
        out.push_back(d);
    }
    const std::vector<std::string>& labels() const override { return labels_; }

private:
    int& runs_;
    std::vector<std::string> labels_{"no_mask"};
};

cv::Mat with_person(cv::RNG& rng) {
    cv::Mat img = scene(rng);
    cv::rectangle(img, {280, 60}, {360, 140}, cv::Scalar(245, 245, 245), cv::FILLED);
    return img;
}

}  // namespace

// The person leaves and the picture is the kitchen the background model knows again: by the model
// nothing moved, so the detector was skipped and the person's boxes stood until the refresh (10 s),
// an alert ending that late and a second offence merged into it (the 54th session's review, with
// the real gateway). The picture differs from the one the detector last looked at: it looks again.
TEST(RegionChecks, APictureBackToTheKnownBackgroundIsLookedAtAgain) {
    cv::RNG rng(5);
    int runs = 0;
    Gated gated(std::make_unique<PatchDetector>(runs));
    const auto feed = [&](const cv::Mat& img) { return gated.feed(img).present; };
    for (int i = 0; i < 100; ++i) EXPECT_FALSE(feed(scene(rng)));
    for (int k = 0; k < 3; ++k) {  // comes and goes, each time a few seconds
        EXPECT_TRUE(feed(with_person(rng))) << "visit " << k;
        for (int i = 0; i < 20; ++i) feed(with_person(rng));
        EXPECT_FALSE(feed(scene(rng))) << "the person left, visit " << k;
        for (int i = 0; i < 20; ++i) EXPECT_FALSE(feed(scene(rng))) << "visit " << k << ", frame " << i;
    }
    const int before = runs;
    for (int i = 0; i < 20; ++i) feed(scene(rng));
    EXPECT_EQ(runs, before) << "a still picture is not looked at again before the refresh";
}

// A dim picture's grain changes single pixels by more than the level at every frame: counted as a
// change of the picture, a still night camera ran its detector at every other frame (the review of
// the change above: 40 runs in 80 frames at 3.3 grey levels of noise). Grain is not a person.
TEST(RegionChecks, AGrainyStillPictureIsNotLookedAtAgainBeforeTheRefresh) {
    cv::RNG rng(9);
    int runs = 0;
    Gated gated(std::make_unique<PatchDetector>(runs));
    const auto grainy = [&] {
        cv::Mat img = scene(rng, 0.3);
        cv::Mat grain(img.size(), CV_16SC1), grain3;  // the sensor's: the same on every channel
        rng.fill(grain, cv::RNG::NORMAL, 0, 10);
        cv::merge(std::vector<cv::Mat>{grain, grain, grain}, grain3);
        img.convertTo(img, CV_16SC3);
        img += grain3;
        img.convertTo(img, CV_8UC3);
        return img;
    };
    for (int i = 0; i < 60; ++i) gated.feed(grainy());
    const int before = runs;
    for (int i = 0; i < 80; ++i) gated.feed(grainy());
    EXPECT_LE(runs - before, 2) << "runs in 80 still grainy frames";
}

// A run that throws keeps what the last run saw: the still frames after it reused an emptied list
// ("nothing seen") until the refresh, long enough to end an open no_mask as cleared and raise it
// again later, a second alert in the room.
TEST(RegionChecks, AFailedDetectorRunLeavesTheStillFramesAfterItWithWhatWasLastSeen) {
    cv::RNG rng(3);
    bool fail = false;
    int runs = 0;
    Gated gated(std::make_unique<FakeDetector>(runs, fail));
    const auto feed = [&](const cv::Mat& img) { return gated.feed(img); };
    for (int i = 0; i < 30; ++i) EXPECT_TRUE(feed(scene(rng)).present);
    fail = true;
    // A whole-picture change runs the detector: it throws, and the check fails that frame.
    EXPECT_THROW(feed(scene(rng, 0.6)), std::runtime_error);
    fail = false;
    const int ran = runs;
    const auto still = feed(scene(rng, 0.6));
    ASSERT_EQ(runs, ran) << "the still picture is not looked at again before the refresh";
    EXPECT_TRUE(still.present) << "a failed run left 'nothing seen' for the still frames after it";
    EXPECT_FLOAT_EQ(still.score, 0.8f);
}

// A station watched for 2 minutes without movement, then a camera outage of 10 minutes: the first
// frame back raised `unattended` at once (5 minutes without activity), though nothing could be
// seen meanwhile. The unseen time does not count; 3 more minutes of seen stillness do.
TEST(RegionChecks, TimeNobodySawDoesNotCountAsUnattended) {
    Station station;
    const auto feed = [&](std::chrono::seconds after) { return station.feed(after); };
    for (int i = 0; i < 120; ++i) EXPECT_FALSE(feed(std::chrono::seconds(1)));  // 2 minutes still
    EXPECT_FALSE(feed(std::chrono::minutes(10))) << "raised on the first frame after an outage";
    for (int i = 0; i < 170; ++i) EXPECT_FALSE(feed(std::chrono::seconds(1))) << i;
    bool raised = false;
    for (int i = 0; i < 20 && !raised; ++i) raised = feed(std::chrono::seconds(1));
    EXPECT_TRUE(raised) << "5 minutes of seen stillness";
}

// A camera analysed every 15 s (a low analysis.fps, key frames only with a long GOP): every gap was
// over the 10 s taken for an outage, and the station was never judged. Its usual gap is the measure.
TEST(RegionChecks, AStationAnalysedEveryFifteenSecondsIsStillJudged) {
    Station station;
    bool raised = false;
    int frames = 0;
    for (; frames < 30 && !raised; ++frames)  // 7.5 minutes of still frames, 15 s apart
        raised = station.feed(std::chrono::seconds(15));
    EXPECT_TRUE(raised) << "never raised in 7.5 minutes of stillness";
    EXPECT_LE(frames, 23);  // about 5 minutes after the first frame
}

// A camera analysed every second for 2 minutes, then every 12 s for good (a stretched GOP with key
// frames only, a loaded box), or whose first gap was a burst's few milliseconds at connect: every
// later gap was over 10 s and 5 usual gaps, taken for time nobody saw, and the station was never
// judged (the reviewer's program: never raised in an hour). Long gaps in a row are the new cadence.
TEST(RegionChecks, AStationWhoseAnalysisSlowsForGoodIsStillJudged) {
    using std::chrono::milliseconds;
    using std::chrono::seconds;
    struct Case {
        const char* name;
        milliseconds before;  // the gap of the first frames
        int frames_before;
    };
    for (const Case c :
         {Case{"1 s for 2 minutes", seconds(1), 120}, Case{"a burst at connect", milliseconds(5), 3}}) {
        Station station;
        auto& frame = station.frame;
        const auto first = frame.steady + c.before;
        const auto feed = [&](milliseconds after) { return station.feed(after); };
        for (int i = 0; i < c.frames_before; ++i) EXPECT_FALSE(feed(c.before)) << c.name;
        bool raised = false;
        for (int i = 0; i < 300 && !raised; ++i) raised = feed(seconds(12));  // an hour, 12 s apart
        EXPECT_TRUE(raised) << c.name << ": never raised in an hour of stillness";
        if (!raised) continue;
        // 5 minutes after the first frame, and at most the first 3 gaps of 12 s taken for unseen.
        EXPECT_GE(frame.steady - first, std::chrono::minutes(5)) << c.name;
        EXPECT_LE(frame.steady - first, std::chrono::minutes(5) + seconds(3 * 12 + 12)) << c.name;
    }
}

// No reference picture: the first 4 frames after start-up were the reference, whatever was in
// them. A cook walking across the floor then was a `dirty` alert once gone, until the next restart.
// The reference is learned from frames in which nothing moves.
// Something that never stops moving in the zone (a hood fan, steam) leaves no still frames in a
// row: after two minutes the reference is learned all the same, and the floor is judged.
TEST(RegionChecks, AZoneThatNeverStopsMovingIsStillLearnedAndJudged) {
    cv::RNG rng(5);
    Regions r;
    const auto with_fan = [&](int i) {
        cv::Mat img = scene(rng);
        const int x = 40 + 15 * (i % 4);  // a blade that is somewhere else at every frame
        cv::rectangle(img, {x, 250}, {x + 30, 330}, cv::Scalar(200, 200, 200), cv::FILLED);
        return img;
    };
    for (int i = 0; i < 300; ++i) EXPECT_FALSE(r.feed(with_fan(i)).second) << "frame " << i;  // 2.5 min
    EXPECT_TRUE(r.sack_left(with_fan)) << "a sack left beside the fan";
}

TEST(RegionChecks, SomeoneWalkingAtStartUpIsNotLearnedAsTheCleanFloor) {
    cv::RNG rng(3);
    Regions r;
    for (int i = 0; i < 16; ++i) {
        cv::Mat img = scene(rng);
        cv::rectangle(img, {100 + 12 * i, 60}, {160 + 12 * i, 330}, cv::Scalar(40, 40, 40), cv::FILLED);
        EXPECT_FALSE(r.feed(img).second) << "frame " << i << ", with the cook";
    }
    for (int i = 0; i < 200; ++i)
        EXPECT_FALSE(r.feed(scene(rng)).second) << "frame " << i << " after the cook left";
    // Still judged: a sack left on the floor.
    EXPECT_TRUE(r.sack_left([&](int) { return scene(rng); })) << "the sack";
}

// A reload that keeps the camera's stream going hands the next run's checks those of the run
// before (with the motion map they read): a station still for 4 minutes at the reload is
// `unattended` a minute after it, not 5 minutes after; a sack left on the floor before the reload
// is still `dirty` after it, judged against the reference learned from the clean floor (a check
// made afresh learned the floor with the sack on it as clean). Another station, or a reference
// picture replaced, takes nothing.
TEST(RegionChecks, TheNextRunsChecksTakeWhatTheChecksBeforeLearned) {
    Station station;
    for (int i = 0; i < 240; ++i) ASSERT_FALSE(station.feed(std::chrono::seconds(1))) << i;
    Station next;
    next.frame.steady = station.frame.steady;
    const auto corner = MotionMap::region_mask({{0.0f, 0.0f}, {0.5f, 0.0f}, {0.5f, 0.5f}, {0.0f, 0.5f}});
    kg::vision::UnattendedCheck elsewhere{{{"stove", corner}}, next.motion, 0.002, std::chrono::minutes(5)};
    EXPECT_FALSE(elsewhere.take_state_from(station.check)) << "another station";
    next.motion.take_state_from(station.motion);
    ASSERT_TRUE(next.check.take_state_from(station.check));
    int seconds = 0;
    while (seconds < 120 && !next.feed(std::chrono::seconds(1))) ++seconds;
    EXPECT_GE(seconds, 55);
    EXPECT_LE(seconds, 65) << "5 minutes of stillness in all, the reload within them";

    cv::RNG rng(7);
    Regions before;
    for (int i = 0; i < 40; ++i) ASSERT_FALSE(before.feed(scene(rng)).second) << i;  // the clean floor
    const auto with_sack = [&](int) {
        cv::Mat img = scene(rng);
        cv::rectangle(img, {400, 60}, {480, 140}, cv::Scalar(30, 40, 50), cv::FILLED);
        return img;
    };
    ASSERT_TRUE(before.sack_left(with_sack));
    Regions fresh;
    for (int i = 0; i < 60; ++i)
        EXPECT_FALSE(fresh.feed(with_sack(i)).second) << "learned with the sack, " << i;
    Regions after;
    after.motion.take_state_from(before.motion);
    ReferenceChangeCheck bin{"bin_lid", "open", {{"", {}}}, after.motion, 0.002, cv::Mat()};
    EXPECT_FALSE(bin.take_state_from(before.cleanliness)) << "another check";
    ASSERT_TRUE(after.after_hours.take_state_from(before.after_hours));
    ASSERT_TRUE(after.cleanliness.take_state_from(before.cleanliness));
    for (int i = 0; i < 10; ++i) EXPECT_TRUE(after.feed(with_sack(i)).second) << "still there, " << i;
    bool cleared = false;
    for (int i = 0; i < 20 && !cleared; ++i) cleared = !after.feed(scene(rng)).second;
    EXPECT_TRUE(cleared) << "the sack taken away";

    // Given a reference picture, the next run's check reads it again: alike only if it is the same.
    const cv::Mat clean = scene(rng);
    cv::Mat other = clean.clone();
    cv::rectangle(other, {10, 10}, {60, 60}, cv::Scalar(0, 0, 0), cv::FILLED);
    MotionMap motion;
    ReferenceChangeCheck given{"cleanliness", "dirty", {{"", {}}}, motion, 0.002, clean};
    ReferenceChangeCheck same{"cleanliness", "dirty", {{"", {}}}, motion, 0.002, clean};
    ReferenceChangeCheck replaced{"cleanliness", "dirty", {{"", {}}}, motion, 0.002, other};
    EXPECT_TRUE(same.take_state_from(given));
    EXPECT_FALSE(replaced.take_state_from(given)) << "the file replaced under the same name";
    EXPECT_FALSE(given.take_state_from(before.cleanliness)) << "a learned reference for a given one";
}
