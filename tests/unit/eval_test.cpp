// kitchen-eval's counting (src/eval): precision and recall per class, and the error breakdown that
// tells a model card whether the finder or the classifier is wrong. Hand-made boxes, each case
// one that the counts must tell apart.
#include <gtest/gtest.h>

#include "eval/errors.hpp"
#include "eval/metrics.hpp"

using kg::vision::Detection;

namespace {

Detection box(float x, float y, float w, float h, const std::string& label, float score = 1.0f) {
    Detection d;
    d.x = x;
    d.y = y;
    d.w = w;
    d.h = h;
    d.label = label;
    d.score = score;
    return d;
}

const std::vector<std::string> kClasses{"no_mask", "with_mask"};

}  // namespace

TEST(Accumulator, AWrongClassIsOneMissAndOneFalseAlarm) {
    kg::eval::Accumulator acc(0.3f);
    const std::vector<Detection> truth{box(0.1f, 0.1f, 0.2f, 0.2f, "no_mask"),
                                       box(0.6f, 0.6f, 0.2f, 0.2f, "with_mask")};
    const std::vector<Detection> found{box(0.1f, 0.1f, 0.2f, 0.2f, "with_mask"),
                                       box(0.6f, 0.6f, 0.2f, 0.2f, "with_mask")};
    acc.add(truth, found, kClasses);
    const auto& c = acc.counts();
    EXPECT_EQ(c.at("no_mask").fn, 1);
    EXPECT_EQ(c.at("no_mask").tp, 0);
    EXPECT_EQ(c.at("with_mask").tp, 1);
    EXPECT_EQ(c.at("with_mask").fp, 1);
    EXPECT_DOUBLE_EQ(c.at("with_mask").precision(), 0.5);
}

TEST(ErrorBreakdown, TellsConfusionsDuplicatesMisplacedAndBackgroundApart) {
    kg::eval::ErrorBreakdown errors(0.3f);
    const std::vector<Detection> truth{
        box(0.10f, 0.10f, 0.20f, 0.20f, "no_mask"),    // found, called with_mask
        box(0.50f, 0.10f, 0.20f, 0.20f, "with_mask"),  // found right, and found again
        box(0.10f, 0.60f, 0.20f, 0.20f, "with_mask"),  // only a box beside it
        box(0.70f, 0.70f, 0.05f, 0.05f, "no_mask"),    // missed: 32 px of a 640 px image
    };
    const std::vector<Detection> found{
        box(0.10f, 0.10f, 0.20f, 0.20f, "with_mask", 0.9f),
        box(0.50f, 0.10f, 0.20f, 0.20f, "with_mask", 0.8f),
        box(0.51f, 0.11f, 0.20f, 0.20f, "no_mask", 0.7f),  // the same object again: duplicate
        box(0.22f, 0.60f, 0.20f, 0.20f, "no_mask", 0.6f),  // IoU 0.25 with its object: misplaced
        box(0.40f, 0.45f, 0.05f, 0.05f, "no_mask", 0.5f),  // near nothing: background
        box(0.40f, 0.45f, 0.05f, 0.05f, "person", 0.5f),   // not a class evaluated: ignored
    };
    errors.add(truth, found, kClasses, 640);
    const auto& e = errors.counts();
    EXPECT_EQ((e.confusion.at({"no_mask", "with_mask"})), 1);
    EXPECT_EQ((e.confusion.at({"with_mask", "with_mask"})), 1);
    EXPECT_EQ(e.confusion.size(), 2u);
    EXPECT_EQ(e.duplicate.at("no_mask"), 1);
    EXPECT_EQ(e.misplaced.at("no_mask"), 1);
    EXPECT_EQ(e.background.at("no_mask"), 1);
    EXPECT_EQ(e.background.count("person"), 0u);
    ASSERT_EQ(e.missed_widths.at("no_mask").size(), 1u);
    EXPECT_FLOAT_EQ(e.missed_widths.at("no_mask")[0], 32.0f);
    ASSERT_EQ(e.missed_widths.at("with_mask").size(), 1u);  // the one only the misplaced box was near
    EXPECT_EQ(e.labelled.at("no_mask"), 2);
    EXPECT_EQ(e.labelled.at("with_mask"), 2);
}

TEST(ErrorBreakdown, TheBetterScoredBoxTakesTheObject) {
    // Two boxes on one object: the lower-scored one is the duplicate, whichever comes first.
    kg::eval::ErrorBreakdown errors(0.3f);
    const std::vector<Detection> truth{box(0.1f, 0.1f, 0.2f, 0.2f, "no_mask")};
    const std::vector<Detection> found{box(0.1f, 0.1f, 0.2f, 0.2f, "with_mask", 0.4f),
                                       box(0.1f, 0.1f, 0.2f, 0.2f, "no_mask", 0.9f)};
    errors.add(truth, found, kClasses, 640);
    const auto& e = errors.counts();
    EXPECT_EQ((e.confusion.at({"no_mask", "no_mask"})), 1);
    EXPECT_EQ(e.duplicate.at("with_mask"), 1);
    EXPECT_TRUE(e.missed_widths.empty());
}

TEST(ErrorBreakdown, ARightClassBoxTakesItsObjectBeforeABetterScoredWrongOne) {
    // As precision and recall count it: the diagonal is their true positives. The wrong-class box,
    // scored higher, is the duplicate (mask-yolo/valid has such a face).
    kg::eval::ErrorBreakdown errors(0.3f);
    kg::eval::Accumulator acc(0.3f);
    const std::vector<Detection> truth{box(0.1f, 0.1f, 0.2f, 0.2f, "with_mask"),
                                       box(0.6f, 0.6f, 0.2f, 0.2f, "helmet")};  // not evaluated
    const std::vector<Detection> found{
        box(0.1f, 0.1f, 0.2f, 0.2f, "no_mask", 0.46f), box(0.11f, 0.1f, 0.2f, 0.2f, "with_mask", 0.29f),
        box(0.6f, 0.6f, 0.2f, 0.2f, "no_mask", 0.9f)};  // on the helmet: background
    errors.add(truth, found, kClasses, 640);
    acc.add(truth, found, kClasses);
    const auto& e = errors.counts();
    EXPECT_EQ((e.confusion.at({"with_mask", "with_mask"})), acc.counts().at("with_mask").tp);
    EXPECT_EQ(e.confusion.count({"with_mask", "no_mask"}), 0u);
    EXPECT_EQ(e.duplicate.at("no_mask"), 1);
    EXPECT_EQ(e.background.at("no_mask"), 1);
    EXPECT_EQ(e.labelled.count("helmet"), 0u);
}
