// Zones and masks: which detections count where.
#include "rules/zones.hpp"

#include <gtest/gtest.h>

using kg::rules::Polygon;
using kg::rules::Zone;
using kg::rules::ZoneFilter;
using kg::vision::Observation;

namespace {

const Polygon kLeftHalf{{0, 0}, {0.5f, 0}, {0.5f, 1}, {0, 1}};
const Polygon kRightHalf{{0.5f, 0}, {1, 0}, {1, 1}, {0.5f, 1}};

Observation detection(std::vector<kg::vision::Box> boxes) {
    Observation o;
    o.check = "mask";
    o.label = "no_mask";
    o.present = !boxes.empty();
    o.boxes = std::move(boxes);
    return o;
}

}  // namespace

TEST(Zones, PointInPolygon) {
    EXPECT_TRUE(kg::rules::contains(kLeftHalf, {0.25f, 0.5f}));
    EXPECT_FALSE(kg::rules::contains(kLeftHalf, {0.75f, 0.5f}));
    const Polygon triangle{{0, 0}, {1, 0}, {0, 1}};
    EXPECT_TRUE(kg::rules::contains(triangle, {0.2f, 0.2f}));
    EXPECT_FALSE(kg::rules::contains(triangle, {0.8f, 0.8f}));
}

TEST(Zones, ADetectionBelongsToTheZoneWhereItStands) {
    ZoneFilter f({{"prep", kLeftHalf, {}}, {"cooking", kRightHalf, {"mask"}}}, {});
    std::vector<Observation> out;
    // Box centred at x=0.45 but standing (bottom-centre) at x=0.45 -> prep only.
    f.apply(detection({{0.35f, 0.2f, 0.2f, 0.3f, "no_mask", 0.8f}}), out);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].zone, "prep");
    EXPECT_TRUE(out[0].present);
    EXPECT_FLOAT_EQ(out[0].score, 0.8f);
    EXPECT_EQ(out[1].zone, "cooking");
    EXPECT_FALSE(out[1].present);
}

// Detectors clip boxes to the picture: a person whose feet are out of shot stands at y = 1.0, on
// the bottom edge of a zone reaching it, and counted in no zone, not even one covering the picture.
TEST(Zones, ADetectionDownToTheBottomEdgeIsInTheZoneThatReachesIt) {
    const Polygon whole{{0, 0}, {1, 0}, {1, 1}, {0, 1}};
    ZoneFilter f({{"stove", kRightHalf, {}}, {"all", whole, {}}}, {});
    std::vector<Observation> out;
    f.apply(detection({{0.6f, 0.4f, 0.4f, 0.6f, "no_mask", 0.9f}}), out);  // to x = 1 and y = 1
    ASSERT_EQ(out.size(), 2u);
    EXPECT_TRUE(out[0].present) << out[0].zone;
    EXPECT_TRUE(out[1].present) << out[1].zone;
}

TEST(Zones, ZonesForOtherChecksDoNotApply) {
    ZoneFilter f({{"bins", kLeftHalf, {"bin_lid"}}}, {});
    std::vector<Observation> out;
    f.apply(detection({{0.6f, 0.2f, 0.1f, 0.1f, "no_mask", 0.7f}}), out);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].zone.empty());
    EXPECT_TRUE(out[0].present);
}

TEST(Zones, MaskedDetectionsAreDiscarded) {
    ZoneFilter f({}, {kRightHalf});
    std::vector<Observation> out;
    f.apply(detection({{0.7f, 0.2f, 0.1f, 0.1f, "no_mask", 0.9f}, {0.1f, 0.2f, 0.1f, 0.1f, "no_mask", 0.6f}}),
            out);
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].boxes.size(), 1u);
    EXPECT_FLOAT_EQ(out[0].score, 0.6f);
    out.clear();
    f.apply(detection({{0.7f, 0.2f, 0.1f, 0.1f, "no_mask", 0.9f}}), out);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_FALSE(out[0].present);  // the only detection was in the mask
}

TEST(Zones, NothingDetectedReachesEveryZoneSoEventsCanEnd) {
    ZoneFilter f({{"prep", kLeftHalf, {}}, {"cooking", kRightHalf, {}}}, {});
    std::vector<Observation> out;
    f.apply(detection({}), out);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_FALSE(out[0].present);
    EXPECT_FALSE(out[1].present);
    EXPECT_EQ(out[1].zone, "cooking");
}

TEST(Zones, WholeFrameConditionsPassUnchanged) {
    ZoneFilter f({{"prep", kLeftHalf, {}}}, {kRightHalf});
    Observation health;
    health.check = "camera_health";
    health.label = "frozen";
    health.placed = true;  // as CameraHealthCheck makes it
    health.present = true;
    health.score = 1;
    std::vector<Observation> out;
    f.apply(health, out);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].present);
    EXPECT_TRUE(out[0].zone.empty());
}

TEST(Zones, APlacedConditionEndsOnTheTrackerItStartedOn) {
    // A zone for every check must not take camera health's "fault cleared" away from the
    // whole-picture tracker that saw the fault start: the event would never end.
    ZoneFilter f({{"prep", kLeftHalf, {}}}, {});
    Observation health;
    health.check = "camera_health";
    health.label = "black";
    health.placed = true;
    for (const bool present : {true, false}) {
        health.present = present;
        health.score = present ? 1.0f : 0.0f;
        std::vector<Observation> out;
        f.apply(health, out);
        ASSERT_EQ(out.size(), 1u);
        EXPECT_EQ(out[0].present, present);
        EXPECT_TRUE(out[0].zone.empty());
    }
}

TEST(Zones, APlacedRegionObservationKeepsItsRegionButLosesMaskedBoxes) {
    ZoneFilter f({{"prep", kLeftHalf, {}}}, {kRightHalf});
    Observation motion;
    motion.check = "after_hours_motion";
    motion.label = "motion";
    motion.placed = true;
    motion.present = true;
    motion.boxes = {{0.7f, 0.2f, 0.1f, 0.1f, "motion", 0.9f}};
    std::vector<Observation> out;
    f.apply(motion, out);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].zone.empty());
    EXPECT_FALSE(out[0].present);  // its only box lay in the ignore mask
}

TEST(Zones, AUserModelsZoneAppliesToItsClassesAndKeepsTheirSeverity) {
    // `model:ppe` maps a class to the check "smoking"; a zone can only name `model:ppe`.
    ZoneFilter f({{"prep", kLeftHalf, {"model:ppe"}}}, {});
    Observation smoking;
    smoking.check = "smoking";
    smoking.label = "smoking";
    smoking.severity = 3;
    smoking.present = true;
    smoking.boxes = {{0.7f, 0.2f, 0.1f, 0.1f, "smoking", 0.9f}};
    std::vector<Observation> out;
    f.apply(smoking, "model:ppe", out);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].zone, "prep");
    EXPECT_FALSE(out[0].present);  // it stands in the right half, outside the zone
    EXPECT_EQ(out[0].severity, 3);
    out.clear();
    f.apply(smoking, out);  // made by a check of that name: the zone does not apply
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].zone.empty());
    EXPECT_TRUE(out[0].present);
}
