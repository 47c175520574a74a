// kitchen-eval's counting (src/eval): precision and recall per class, and the error breakdown that
// tells a model card whether the finder or the classifier is wrong. Hand-made boxes, each case
// one that the counts must tell apart.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <tuple>

#include "eval/bootstrap.hpp"
#include "eval/dataset.hpp"
#include "eval/errors.hpp"
#include "eval/label_folder.hpp"
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
    EXPECT_EQ(c.at("with_mask").precision(), 0.5);
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

// --- bootstrap intervals (src/eval/bootstrap.hpp) ---------------------------------------------

namespace {

kg::eval::ImageCounts photo(int tp, int fp, int fn, const std::string& cls = "no_mask") {
    kg::eval::ImageCounts c;
    c[cls] = {tp, fp, fn};
    return c;
}

const std::vector<std::string> kOne{"no_mask"};

}  // namespace

TEST(Accumulator, ReturnsEachImagesOwnCountsWhichSumToItsTotals) {
    kg::eval::Accumulator acc(0.3f);
    std::vector<kg::eval::ImageCounts> images;
    images.push_back(acc.add({box(0.1f, 0.1f, 0.2f, 0.2f, "no_mask")},
                             {box(0.1f, 0.1f, 0.2f, 0.2f, "no_mask")}, kClasses));
    images.push_back(acc.add({box(0.1f, 0.1f, 0.2f, 0.2f, "with_mask")},
                             {box(0.6f, 0.6f, 0.2f, 0.2f, "no_mask")}, kClasses));
    EXPECT_EQ(images[0].at("no_mask").tp, 1);
    EXPECT_EQ(images[0].at("with_mask").tp + images[0].at("with_mask").fp + images[0].at("with_mask").fn, 0);
    EXPECT_EQ(images[1].at("no_mask").fp, 1);
    EXPECT_EQ(images[1].at("with_mask").fn, 1);
    for (const auto& cls : kClasses) {
        const auto sum = kg::eval::total(images, cls);
        const auto& all = acc.counts().at(cls);
        EXPECT_EQ(std::tie(sum.tp, sum.fp, sum.fn), std::tie(all.tp, all.fp, all.fn)) << cls;
    }
}

TEST(Bootstrap, PhotosAllAlikeGiveNoSpread) {
    const std::vector<kg::eval::ImageCounts> images(12, photo(2, 1, 1));
    const auto c = kg::eval::bootstrap_intervals(images, kOne, {500, 7, 0.95}).at("no_mask");
    EXPECT_DOUBLE_EQ(c.precision.lo, 2.0 / 3);
    EXPECT_DOUBLE_EQ(c.precision.hi, 2.0 / 3);
    EXPECT_DOUBLE_EQ(c.recall.lo, 2.0 / 3);
    EXPECT_DOUBLE_EQ(c.f1.hi, 2.0 / 3);
}

TEST(Bootstrap, PrecisionIntervalIsAsWideAsTheBinomialOne) {
    // 400 photos with one box each, 300 of them right: precision 0.75 with a standard error of
    // sqrt(0.75 * 0.25 / 400) = 0.0217, so a 95% interval about 2 * 1.96 * 0.0217 = 0.085 wide.
    std::vector<kg::eval::ImageCounts> images;
    for (int i = 0; i < 400; ++i) images.push_back(i % 4 == 0 ? photo(0, 1, 0) : photo(1, 0, 0));
    const auto p = kg::eval::bootstrap_intervals(images, kOne, {4000, 1, 0.95}).at("no_mask").precision;
    EXPECT_LT(p.lo, 0.75);
    EXPECT_GT(p.hi, 0.75);
    EXPECT_NEAR(p.hi - p.lo, 2 * 1.96 * std::sqrt(0.75 * 0.25 / 400), 0.012);
    EXPECT_NEAR((p.lo + p.hi) / 2, 0.75, 0.01);
}

TEST(Bootstrap, TheSeedFixesTheIntervals) {
    std::vector<kg::eval::ImageCounts> images;
    for (int i = 0; i < 30; ++i) images.push_back(photo(i % 3, i % 5 == 0 ? 2 : 0, i % 4 == 0 ? 1 : 0));
    const auto a = kg::eval::bootstrap_intervals(images, kOne, {300, 11, 0.9}).at("no_mask").f1;
    const auto b = kg::eval::bootstrap_intervals(images, kOne, {300, 11, 0.9}).at("no_mask").f1;
    const auto c = kg::eval::bootstrap_intervals(images, kOne, {300, 12, 0.9}).at("no_mask").f1;
    EXPECT_EQ(std::tie(a.lo, a.hi), std::tie(b.lo, b.hi));
    EXPECT_NE(std::tie(a.lo, a.hi), std::tie(c.lo, c.hi));
    EXPECT_LT(a.lo, a.hi);
}

TEST(Bootstrap, ADetectorAgainstItselfDiffersByExactlyNothing) {
    std::vector<kg::eval::ImageCounts> images;
    for (int i = 0; i < 25; ++i) images.push_back(photo(i % 4, i % 3, i % 2));
    const auto d = kg::eval::bootstrap_f1_difference(images, images, kOne, {500, 1, 0.95}).at("no_mask");
    EXPECT_EQ(d.observed, 0.0);
    EXPECT_EQ(d.interval.lo, 0.0);
    EXPECT_EQ(d.interval.hi, 0.0);
    EXPECT_EQ(d.share_positive, 0.0);
}

TEST(Bootstrap, PairingSeesASmallGainThatTheTwoIntervalsAloneHide) {
    // The photos differ far more from each other (1 to 12 faces, found or not) than the detectors
    // do: b misses one face on every fourth photo that a finds. Each detector's own F1 interval
    // overlaps the other's, but drawn on the same photos a is never worse, so the paired interval
    // lies above 0.
    std::vector<kg::eval::ImageCounts> a, b;
    for (int i = 0; i < 40; ++i) {
        const int faces = 1 + (i * 7) % 12, found = faces - (i % 3 == 0 ? faces / 2 : 0);
        const int extra = i % 4 == 0 ? 1 : 0;
        a.push_back(photo(found, i % 5, faces - found));
        b.push_back(photo(found - extra, i % 5, faces - found + extra));
    }
    const kg::eval::BootstrapOptions options{2000, 3, 0.95};
    const auto ia = kg::eval::bootstrap_intervals(a, kOne, options).at("no_mask").f1;
    const auto ib = kg::eval::bootstrap_intervals(b, kOne, options).at("no_mask").f1;
    EXPECT_LT(ia.lo, ib.hi) << "the unpaired intervals should overlap";
    const auto d = kg::eval::bootstrap_f1_difference(a, b, kOne, options).at("no_mask");
    EXPECT_GT(d.observed, 0.0);
    EXPECT_GT(d.interval.lo, 0.0);
    EXPECT_GE(d.interval.hi, d.observed);
    EXPECT_EQ(d.share_positive, 1.0);
}

TEST(Bootstrap, RefusesWhatItCannotResample) {
    const std::vector<kg::eval::ImageCounts> none, two(2, photo(1, 0, 0)), three(3, photo(1, 0, 0));
    EXPECT_THROW(kg::eval::bootstrap_intervals(none, kOne), std::invalid_argument);
    EXPECT_THROW(kg::eval::bootstrap_intervals(two, kOne, {0, 1, 0.95}), std::invalid_argument);
    EXPECT_THROW(kg::eval::bootstrap_intervals(two, kOne, {100, 1, 1.0}), std::invalid_argument);
    try {
        kg::eval::bootstrap_f1_difference(two, three, kOne);
        FAIL() << "different photo counts should throw";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("2 and 3 photos"), std::string::npos) << e.what();
    }
}

TEST(Bootstrap, SwappingTheDetectorsMirrorsTheDifference) {
    std::vector<kg::eval::ImageCounts> a, b;
    for (int i = 0; i < 30; ++i) {
        a.push_back(photo(2 + i % 3, i % 4, i % 2));
        b.push_back(photo(1 + i % 4, i % 3, 1 + i % 2));
    }
    const kg::eval::BootstrapOptions options{1000, 9, 0.95};
    const auto ab = kg::eval::bootstrap_f1_difference(a, b, kOne, options).at("no_mask");
    const auto ba = kg::eval::bootstrap_f1_difference(b, a, kOne, options).at("no_mask");
    EXPECT_NE(ab.observed, 0.0);
    EXPECT_DOUBLE_EQ(ba.observed, -ab.observed);
    EXPECT_DOUBLE_EQ(ba.interval.lo, -ab.interval.hi);
    EXPECT_DOUBLE_EQ(ba.interval.hi, -ab.interval.lo);
    EXPECT_LE(ab.share_positive + ba.share_positive, 1.0);
}

TEST(Bootstrap, ALowerLevelGivesANarrowerInterval) {
    std::vector<kg::eval::ImageCounts> images;
    for (int i = 0; i < 40; ++i) images.push_back(photo(i % 4, i % 3, i % 5 == 0 ? 2 : 0));
    const auto wide = kg::eval::bootstrap_intervals(images, kOne, {2000, 1, 0.95}).at("no_mask").precision;
    const auto narrow = kg::eval::bootstrap_intervals(images, kOne, {2000, 1, 0.5}).at("no_mask").precision;
    EXPECT_LT(wide.lo, narrow.lo);
    EXPECT_GT(wide.hi, narrow.hi);
}

TEST(Bootstrap, EveryPhotoCanBeDrawn) {
    // Two photos, one box each, one right and one wrong: a quarter of the draws take the right one
    // twice (precision 1), a quarter the wrong one twice (0).
    const std::vector<kg::eval::ImageCounts> images{photo(1, 0, 0), photo(0, 1, 0)};
    const auto p = kg::eval::bootstrap_intervals(images, kOne, {1000, 1, 0.95}).at("no_mask").precision;
    EXPECT_EQ(p.lo, 0.0);
    EXPECT_EQ(p.hi, 1.0);
}

TEST(Bootstrap, DrawsWithNothingToDivideByAreLeftOutNotCountedAsZero) {
    // One box on one photo of ten, right: precision is 1 wherever it is defined, and undefined in the
    // draws that miss that photo ((9/10)^10, about 35% of them).
    std::vector<kg::eval::ImageCounts> images(9, photo(0, 0, 0));
    images.push_back(photo(1, 0, 0));
    const auto c = kg::eval::bootstrap_intervals(images, kOne, {2000, 1, 0.95}).at("no_mask");
    EXPECT_EQ(c.precision.lo, 1.0);
    EXPECT_EQ(c.recall.lo, 1.0);
    EXPECT_NEAR(c.undefined_precision, 2000 * std::pow(0.9, 10), 80);
    EXPECT_EQ(c.undefined_precision, c.undefined_recall);
    const std::vector<kg::eval::ImageCounts> empty(5, photo(0, 0, 0));
    const auto none = kg::eval::bootstrap_intervals(empty, kOne, {100, 1, 0.95}).at("no_mask");
    EXPECT_EQ(none.undefined_f1, 100);
    EXPECT_EQ(std::tie(none.f1.lo, none.f1.hi), std::make_tuple(0.0, 0.0));
}

TEST(Bootstrap, ALowerLevelGivesANarrowerDifference) {
    std::vector<kg::eval::ImageCounts> a, b;
    for (int i = 0; i < 40; ++i) {
        a.push_back(photo(2 + i % 3, i % 4, i % 2));
        b.push_back(photo(1 + i % 4, i % 3, 1 + i % 2));
    }
    const auto wide = kg::eval::bootstrap_f1_difference(a, b, kOne, {2000, 1, 0.95}).at("no_mask").interval;
    const auto narrow = kg::eval::bootstrap_f1_difference(a, b, kOne, {2000, 1, 0.5}).at("no_mask").interval;
    EXPECT_LT(wide.lo, narrow.lo);
    EXPECT_GT(wide.hi, narrow.hi);
}

namespace {

// An empty YOLO folder (images/, labels/) under the test's temporary directory.
std::filesystem::path fresh_yolo_folder(const std::string& name) {
    const auto dir = std::filesystem::path(::testing::TempDir()) / name;
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir / "images");
    std::filesystem::create_directories(dir / "labels");
    return dir;
}

}  // namespace

TEST(YoloLabels, WrittenBoxesReadBackAsTheSameLabels) {
    // A check's boxes written as labels and read back as the evaluation reads a folder: the same
    // classes (by dataset id) and the same boxes, so a corrected pre-labelled folder means what it shows.
    namespace fs = std::filesystem;
    const fs::path dir = fresh_yolo_folder("kg-yolo-labels");
    std::ofstream(dir / "images" / "frame.jpg") << "not read here";
    const std::vector<Detection> found{box(0.10f, 0.20f, 0.30f, 0.40f, "bare", 0.9f),
                                       box(0.50f, 0.50f, 0.25f, 0.10f, "covered", 0.4f)};
    const std::map<std::string, int> ids{{"covered", 0}, {"bare", 1}};
    std::ofstream(dir / "labels" / "frame.txt") << kg::eval::yolo_label_lines(found, ids);

    const auto images = kg::eval::load_yolo_folder(dir.string(), {{0, "covered"}, {1, "bare"}});
    ASSERT_EQ(images.size(), 1u);
    const auto& truth = images[0].truth;
    ASSERT_EQ(truth.size(), 2u);
    for (std::size_t i = 0; i < 2; ++i) {
        EXPECT_EQ(truth[i].label, found[i].label);
        EXPECT_EQ(truth[i].class_id, ids.at(found[i].label));
        EXPECT_NEAR(truth[i].x, found[i].x, 1e-5);
        EXPECT_NEAR(truth[i].y, found[i].y, 1e-5);
        EXPECT_NEAR(truth[i].w, found[i].w, 1e-5);
        EXPECT_NEAR(truth[i].h, found[i].h, 1e-5);
    }
    fs::remove_all(dir);
}

TEST(YoloLabels, ABoxOverTheEdgeIsClippedToThePicture) {
    // Label files hold boxes inside the picture (labelling tools refuse others); a head cut by the
    // frame's edge keeps its visible part.
    const auto text = kg::eval::yolo_label_lines(
        {box(-0.1f, 0.9f, 0.3f, 0.2f, "bare"), box(1.2f, 0.5f, 0.1f, 0.1f, "bare")},  // wholly outside
        {{"bare", 1}});
    EXPECT_EQ(text, "1 0.100000 0.950000 0.200000 0.100000\n");
}

TEST(YoloLabels, AClassTheMapDoesNotNameIsAnErrorNotALostBox) {
    try {
        (void)kg::eval::yolo_label_lines({box(0.1f, 0.1f, 0.2f, 0.2f, "with_mask")}, {{"no_mask", 0}});
        FAIL() << "expected an error";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("'with_mask'"), std::string::npos) << e.what();
    }
}

namespace {

// The names in `dir` (hidden ones too: a run's staging folder), sorted.
std::vector<std::string> names_in(const std::filesystem::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir))
        out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

TEST(LabelFolder, IsRefusedBeforeAnythingIsWrittenNamingTheCause) {
    namespace fs = std::filesystem;
    const fs::path root = fs::path(::testing::TempDir()) / "kg-label-folder-refused";
    fs::remove_all(root);
    fs::create_directories(root);
    const std::map<std::string, int> ids{{"covered", 0}, {"bare", 1}};
    auto refused = [&](const std::vector<std::string>& images, const std::vector<std::string>& labels,
                       const std::vector<std::string>& named) {
        try {
            kg::eval::LabelFolder folder(root / "labels", images, labels, ids);
            ADD_FAILURE() << "accepted";
        } catch (const std::runtime_error& e) {
            for (const auto& n : named)
                EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
        }
        EXPECT_EQ(names_in(root), std::vector<std::string>{});
    };
    // Both would write a.txt: the second replaced the first.
    refused({"img/a.jpg", "img/b.jpg", "img/a.png"}, {"covered", "bare"},
            {"img/a.jpg", "img/a.png", "a.txt"});
    // A class with no id: the run stopped at its first box, after the images before it were written.
    refused({"img/a.jpg"}, {"covered", "bare", "person"}, {"'person'"});
    // A label file already there.
    fs::create_directories(root / "labels");
    std::ofstream(root / "labels" / "b.txt") << "0 0.5 0.5 0.1 0.1\n";
    try {
        kg::eval::LabelFolder folder(root / "labels", {"img/a.jpg", "img/b.jpg"}, {"covered"}, ids);
        ADD_FAILURE() << "accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("b.txt exists"), std::string::npos) << e.what();
    }
    EXPECT_EQ(names_in(root), std::vector<std::string>{"labels"});
    EXPECT_EQ(names_in(root / "labels"), std::vector<std::string>{"b.txt"});
    fs::remove_all(root);
}

TEST(LabelFolder, ARunThatFailsLeavesNothingAndOneThatEndsPutsEveryFileInPlace) {
    namespace fs = std::filesystem;
    const fs::path root = fs::path(::testing::TempDir()) / "kg-label-folder-run";
    fs::remove_all(root);
    fs::create_directories(root);
    const std::map<std::string, int> ids{{"covered", 0}, {"bare", 1}};
    const std::vector<Detection> found{box(0.1f, 0.2f, 0.3f, 0.4f, "bare")};
    // Stopped after the first image (a throw, an unreadable network): no folder, no staging left.
    try {
        kg::eval::LabelFolder folder(root / "labels", {"img/a.jpg", "img/b.jpg"}, {"covered", "bare"}, ids);
        folder.write("img/a.jpg", found);
        throw std::runtime_error("stopped");
    } catch (const std::runtime_error&) {
    }
    EXPECT_EQ(names_in(root), std::vector<std::string>{});
    // To the end: the folder, whole (its name given with a trailing slash, as shells complete it).
    {
        kg::eval::LabelFolder folder((root / "labels").string() + "/", {"img/a.jpg", "img/b.png"},
                                     {"covered", "bare"}, ids);
        folder.write("img/a.jpg", found);
        folder.write("img/b.png", {});
        EXPECT_FALSE(fs::exists(root / "labels" / "a.txt"));  // nothing in place before the end
        folder.commit();
    }
    EXPECT_EQ(names_in(root), std::vector<std::string>{"labels"});
    EXPECT_EQ(names_in(root / "labels"), (std::vector<std::string>{"a.txt", "b.txt"}));
    std::ifstream in(root / "labels" / "a.txt");
    const std::string text(std::istreambuf_iterator<char>(in), {});
    EXPECT_EQ(text, kg::eval::yolo_label_lines(found, ids));
    // Into a folder that holds other files (a labelling tool's classes.txt): they stay.
    fs::remove_all(root / "labels");
    fs::create_directories(root / "labels");
    std::ofstream(root / "labels" / "classes.txt") << "covered\nbare\n";
    {
        kg::eval::LabelFolder folder(root / "labels", {"img/a.jpg"}, {"covered", "bare"}, ids);
        folder.write("img/a.jpg", found);
        folder.commit();
    }
    EXPECT_EQ(names_in(root), std::vector<std::string>{"labels"});
    EXPECT_EQ(names_in(root / "labels"), (std::vector<std::string>{"a.txt", "classes.txt"}));
    fs::remove_all(root);
}

// The folder given may be a symlink (to a dataset elsewhere), a mount point (a stick, a container's
// volume) or one whose parent this user cannot write: the files were staged beside its path and
// renamed at the end, which failed there ("Not a directory", a cross-device link, "busy") after the
// detector had run through every image, and lost them all. A folder there already keeps its mode
// (a group's shared folder). And A.jpg beside a.png is one label file on a stick's FAT.
TEST(LabelFolder, WritesIntoASymlinkedFolderAndKeepsTheFoldersMode) {
    namespace fs = std::filesystem;
    const fs::path root = fs::path(::testing::TempDir()) / "kg-label-folder-link";
    fs::remove_all(root);
    fs::create_directories(root / "elsewhere");
    fs::permissions(root / "elsewhere", fs::perms::owner_all | fs::perms::group_all | fs::perms::set_gid);
    const auto mode = fs::status(root / "elsewhere").permissions();
    fs::create_directory_symlink(root / "elsewhere", root / "labels");
    const std::map<std::string, int> ids{{"covered", 0}, {"bare", 1}};
    {
        kg::eval::LabelFolder folder(root / "labels", {"img/a.jpg"}, {"covered", "bare"}, ids);
        folder.write("img/a.jpg", {box(0.1f, 0.2f, 0.3f, 0.4f, "bare")});
        folder.commit();
    }
    EXPECT_TRUE(fs::is_symlink(root / "labels"));
    EXPECT_EQ(names_in(root / "elsewhere"), std::vector<std::string>{"a.txt"});
    EXPECT_EQ(fs::status(root / "elsewhere").permissions(), mode);
    try {
        kg::eval::LabelFolder folder(root / "more", {"img/A.jpg", "img/a.png"}, {"covered"}, ids);
        ADD_FAILURE() << "accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("img/A.jpg and img/a.png would both write"), std::string::npos)
            << e.what();
    }
    EXPECT_FALSE(fs::exists(root / "more"));
    fs::remove_all(root);
}

TEST(YoloFolder, ReadsImagesWhateverTheCaseOfTheirSuffix) {
    // Cameras and phones write "FRAME.JPG": such frames are as much a part of the folder as
    // the ".jpg" ones (models/train/site_photos.py reads them too), and other files are not.
    namespace fs = std::filesystem;
    const fs::path dir = fresh_yolo_folder("kg-yolo-suffixes");
    for (const char* name : {"a.jpg", "b.JPG", "c.Jpeg", "d.PNG", "notes.txt", "e.bmp"})
        std::ofstream(dir / "images" / name) << "not read here";
    std::ofstream(dir / "labels" / "b.txt") << "1 0.5 0.5 0.2 0.2\n";

    const auto images = kg::eval::load_yolo_folder(dir.string(), {{0, "covered"}, {1, "bare"}});
    std::vector<std::string> names;
    for (const auto& li : images) names.push_back(fs::path(li.image).filename().string());
    EXPECT_EQ(names, (std::vector<std::string>{"a.jpg", "b.JPG", "c.Jpeg", "d.PNG"}));
    ASSERT_EQ(images.size(), 4u);
    ASSERT_EQ(images[1].truth.size(), 1u);
    EXPECT_EQ(images[1].truth[0].label, "bare");
    fs::remove_all(dir);
}

TEST(ClassMap, NamesWhatIsNotAClassId) {
    const auto m = kg::eval::parse_class_map("0=no_mask,1=with_mask");
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m.at(1), "with_mask");
    // Written the wrong way round: it used to print only "stoi".
    try {
        kg::eval::parse_class_map("no_mask=0");
        ADD_FAILURE() << "accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("'no_mask' is not a class id"), std::string::npos) << e.what();
    }
    EXPECT_THROW(kg::eval::parse_class_map("1x=a"), std::invalid_argument);
    EXPECT_THROW(kg::eval::parse_class_map("-1=a"), std::invalid_argument);
}

TEST(YoloFolder, ALabelLineThatIsNotOneNormalisedBoxIsNamedByFileAndLine) {
    // Only the first five numbers were read: a segmentation export's polygon passed as a box of its
    // first two points, and boxes in pixels or of no size were counted as labelled objects.
    namespace fs = std::filesystem;
    const fs::path dir = fresh_yolo_folder("kg-yolo-lines");
    std::ofstream(dir / "images" / "frame.jpg") << "not read here";
    const std::pair<const char*, const char*> bad[] = {
        {"0 0.1 0.2 0.3 0.2 0.3 0.4 0.5", "found 8 fields"},  // a polygon with an odd coordinate
        {"0 0.1 0.2 0.3 0.2 0.3", "found 6 fields"},
        {"0 0.5 0.5 0.2", "found 4 fields"},
        {"0 100 200 300 200 300 400", "the polygon's box: cx 200 is outside [0, 1]"},  // pixels
        {"0 0.1 0.2 0.3 0.2 0.6 0.2", "the polygon's box: h 0 is outside (0, 1]"},     // on a line
        {"0 0.1 0.2 0.3 0.2 0.3 y", "y3 'y' is not a number"},
        {"1 320 180 64 64", "cx 320 is outside [0, 1]"},  // pixels
        {"1 0.5 -0.1 0.2 0.2", "cy -0.1 is outside [0, 1]"},
        {"1 0.5 0.5 0 0.2", "w 0 is outside (0, 1]"},
        {"1 0.5 0.5 0.2 1.5", "h 1.5 is outside (0, 1]"},
        {"1 0.5 0.5 0.2 nan", "h 'nan' is not a number"},
        {"one 0.5 0.5 0.2 0.2", "'one' is not a class id"},
        {"1 0.5 0.5 0.2 0.2x", "h '0.2x' is not a number"},
    };
    for (const auto& [line, message] : bad) {
        std::ofstream(dir / "labels" / "frame.txt") << "0 0.5 0.5 0.2 0.2\n\n" << line << "\n";
        try {
            (void)kg::eval::load_yolo_folder(dir.string(), {{0, "covered"}, {1, "bare"}});
            ADD_FAILURE() << "accepted: " << line;
        } catch (const std::runtime_error& e) {
            const std::string what = e.what();
            EXPECT_NE(what.find("frame.txt:3: "), std::string::npos) << line << ": " << what;
            EXPECT_NE(what.find(message), std::string::npos) << line << ": " << what;
        }
    }
    // The edges are boxes: a centre on the border, a box the size of the picture, and a float
    // export's rounding hair outside them.
    std::ofstream(dir / "labels" / "frame.txt") << "0 0 1 1 1\n1 0.5 0.5 0.000001 1\n"
                                                << "1 1.0000001 -0.0000001 0.2 1.0000002\n";
    const auto images = kg::eval::load_yolo_folder(dir.string(), {{0, "covered"}, {1, "bare"}});
    ASSERT_EQ(images.size(), 1u);
    EXPECT_EQ(images[0].truth.size(), 3u);
    fs::remove_all(dir);
}

TEST(YoloFolder, APolygonLineIsReadAsItsBoundingBoxClippedToThePicture) {
    // A segmentation export's line (class x1 y1 x2 y2 x3 y3 ...): Ultralytics trains on its box;
    // kitchen-eval refused the folder.
    namespace fs = std::filesystem;
    const fs::path dir = fresh_yolo_folder("kg-yolo-polygons");
    std::ofstream(dir / "images" / "frame.jpg") << "not read here";
    std::ofstream(dir / "labels" / "frame.txt")
        << "0 0.1 0.2 0.3 0.25 0.25 0.4\n"               // a triangle
        << "1 -0.05 0.5 0.2 0.55 0.15 0.9 -0.05 0.85\n"  // traced past the left edge
        << "0 0.5 0.5 0.2 0.2\n";                        // a box beside them
    const auto images = kg::eval::load_yolo_folder(dir.string(), {{0, "covered"}, {1, "bare"}});
    ASSERT_EQ(images.size(), 1u);
    const auto& truth = images[0].truth;
    ASSERT_EQ(truth.size(), 3u);
    const float want[][4] = {{0.1f, 0.2f, 0.2f, 0.2f}, {0.0f, 0.5f, 0.2f, 0.4f}, {0.4f, 0.4f, 0.2f, 0.2f}};
    const char* labels[] = {"covered", "bare", "covered"};
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(truth[i].label, labels[i]);
        EXPECT_NEAR(truth[i].x, want[i][0], 1e-6) << i;
        EXPECT_NEAR(truth[i].y, want[i][1], 1e-6) << i;
        EXPECT_NEAR(truth[i].w, want[i][2], 1e-6) << i;
        EXPECT_NEAR(truth[i].h, want[i][3], 1e-6) << i;
    }
    fs::remove_all(dir);
}

TEST(ClassMap, AClassTheDetectorNeverGivesIsRefusedNamingItsClasses) {
    // A typo or another model's name (helmet for covered) gave a silent 0/0/0 for that class.
    const std::vector<std::string> labels{"covered", "bare"};
    EXPECT_NO_THROW(kg::eval::require_detector_classes({"bare", "covered"}, "classic:head", labels));
    try {
        kg::eval::require_detector_classes({"covered", "helmet"}, "classic:head", labels);
        ADD_FAILURE() << "accepted";
    } catch (const std::invalid_argument& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("'helmet'"), std::string::npos) << what;
        EXPECT_NE(what.find("classic:head never gives (its classes: covered, bare)"), std::string::npos)
            << what;
        EXPECT_NE(what.find("--any-class"), std::string::npos) << what;
    }
}

TEST(Accumulator, ARatioWithNothingToDivideByIsUndefinedNotZero) {
    // Nothing found where 3 faces were labelled: no precision to speak of, where 0.000 read as every
    // box wrong; recall and F1 are 0. Nothing labelled and nothing found: no figure at all.
    kg::eval::ClassCounts none_found{0, 0, 3};
    EXPECT_EQ(none_found.precision(), std::nullopt);
    EXPECT_EQ(none_found.recall(), 0.0);
    EXPECT_EQ(none_found.f1(), 0.0);
    EXPECT_EQ(kg::eval::ratio_text(none_found.precision()), "-");
    EXPECT_EQ(kg::eval::ratio_text(none_found.recall()), "0.000");
    EXPECT_EQ(kg::eval::ratio_text(none_found.f1()), "0.000");
    const kg::eval::ClassCounts nothing;
    EXPECT_EQ(nothing.precision(), std::nullopt);
    EXPECT_EQ(nothing.recall(), std::nullopt);
    EXPECT_EQ(nothing.f1(), std::nullopt);
    EXPECT_EQ(kg::eval::ratio_text(nothing.f1()), "-");
    // Boxes on nothing labelled: precision 0, recall undefined, F1 0.
    const kg::eval::ClassCounts only_wrong{0, 2, 0};
    EXPECT_EQ(only_wrong.precision(), 0.0);
    EXPECT_EQ(only_wrong.recall(), std::nullopt);
    EXPECT_EQ(only_wrong.f1(), 0.0);
    const kg::eval::ClassCounts some{1, 1, 0};
    EXPECT_EQ(kg::eval::ratio_text(some.precision()), "0.500");
    EXPECT_EQ(kg::eval::ratio_text(some.recall()), "1.000");
    EXPECT_EQ(kg::eval::ratio_text(some.f1()), "0.667");
}
