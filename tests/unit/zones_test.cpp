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
    health.present = true;
    health.score = 1;
    std::vector<Observation> out;
    f.apply(health, out);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].present);
    EXPECT_TRUE(out[0].zone.empty());
}
