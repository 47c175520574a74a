// The dnn back-end's decoders and NMS against hand-computed expectations, and its input blob
// against OpenCV's.
#include "vision/dnn/decoders.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <opencv2/core/utility.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>
#include <set>
#include <thread>

#include "vision/dnn/blob.hpp"
#include "vision/opencv_threads.hpp"

using kg::vision::Detection;
namespace dnn = kg::vision::dnn;

namespace {

cv::Mat tensor(std::initializer_list<int> shape, std::vector<float> values) {
    std::vector<int> dims(shape);
    cv::Mat m(static_cast<int>(dims.size()), dims.data(), CV_32F);
    EXPECT_EQ(m.total(), values.size());
    std::copy(values.begin(), values.end(), m.ptr<float>());
    return m;
}

Detection box(float x, float y, float w, float h, int cls, float score) {
    Detection d;
    d.x = x;
    d.y = y;
    d.w = w;
    d.h = h;
    d.class_id = cls;
    d.score = score;
    return d;
}

}  // namespace

TEST(Nms, KeepsTheBestOfEachOverlappingClusterPerClass) {
    std::vector<Detection> d{box(0, 0, 1, 1, 0, 0.6f), box(0.05f, 0, 1, 1, 0, 0.9f), box(0, 0, 1, 1, 1, 0.5f),
                             box(2, 2, 1, 1, 0, 0.3f)};
    kg::vision::non_max_suppression(d, 0.5f);
    ASSERT_EQ(d.size(), 3u);
    EXPECT_FLOAT_EQ(d[0].score, 0.9f);  // best of the class-0 cluster
    EXPECT_FLOAT_EQ(d[1].score, 0.5f);  // class 1 is not suppressed by class 0
    EXPECT_FLOAT_EQ(d[2].score, 0.3f);  // far away
    kg::vision::non_max_suppression(d, 0.5f, true);
    EXPECT_EQ(d.size(), 2u);  // class-agnostic: the class-1 box goes too
}

TEST(Iou, OfHalfOverlappingSquaresIsAThird) {
    EXPECT_NEAR(kg::vision::iou(box(0, 0, 2, 2, 0, 1), box(1, 0, 2, 2, 0, 1)), 2.0f / 6.0f, 1e-6);
    EXPECT_FLOAT_EQ(kg::vision::iou(box(0, 0, 1, 1, 0, 1), box(5, 5, 1, 1, 0, 1)), 0.0f);
}

TEST(UltraFace, SkipsBackgroundAndWeakBoxes) {
    const auto boxes = tensor({1, 3, 4}, {0.1f, 0.2f, 0.3f, 0.5f, 0, 0, 1, 1, 0.5f, 0.5f, 0.6f, 0.7f});
    // background, face, masked_face
    const auto scores = tensor({1, 3, 3}, {0.1f, 0.85f, 0.05f, 0.9f, 0.05f, 0.05f, 0.2f, 0.1f, 0.7f});
    std::vector<Detection> out;
    dnn::decode_ultraface(boxes, scores, 0.5f, out);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].class_id, 0);  // face (background excluded from ids)
    EXPECT_FLOAT_EQ(out[0].x, 0.1f);
    EXPECT_FLOAT_EQ(out[0].w, 0.2f);
    EXPECT_FLOAT_EQ(out[0].h, 0.3f);
    EXPECT_EQ(out[1].class_id, 1);  // masked_face
    EXPECT_FLOAT_EQ(out[1].score, 0.7f);
}

TEST(SsdPriors, FollowTheAnchorGeneratorConvention) {
    dnn::PriorSpec spec{{cv::Size(2, 2)}, {{0.2f, 0.4f}}, {{1.0f, 0.5f}}};
    const auto p = dnn::make_priors(spec);
    ASSERT_EQ(p.size(), 2u * 2u * 3u);  // 2 sizes + 1 extra ratio per cell
    // Cell (0,0): centre 0.25, 0.25; size 0.2 ratio 1; size 0.4 ratio 1; size 0.2 ratio 0.5.
    EXPECT_FLOAT_EQ(p[0][0], 0.25f);
    EXPECT_FLOAT_EQ(p[0][2], 0.2f);
    EXPECT_FLOAT_EQ(p[1][2], 0.4f);
    EXPECT_NEAR(p[2][2], 0.2f * std::sqrt(0.5f), 1e-6);
    EXPECT_NEAR(p[2][3], 0.2f / std::sqrt(0.5f), 1e-6);
    // Row-major: the second cell is x = 1, y = 0.
    EXPECT_FLOAT_EQ(p[3][0], 0.75f);
    EXPECT_FLOAT_EQ(p[3][1], 0.25f);
}

TEST(Ssd, DecodesOffsetsAgainstPriorsWithVariances) {
    const std::vector<cv::Vec4f> priors{{0.5f, 0.5f, 0.2f, 0.4f}, {0.2f, 0.2f, 0.1f, 0.1f}};
    // dx = 1 -> cx moves by 1 * 0.1 * 0.2 = 0.02; dw = ln(2)/0.2 -> w doubles.
    const float dw = std::log(2.0f) / 0.2f;
    const auto loc = tensor({1, 2, 4}, {1.0f, 0.0f, dw, 0.0f, 0, 0, 0, 0});
    const auto conf = tensor({1, 2, 2}, {0.1f, 0.8f, 0.6f, 0.3f});
    std::vector<Detection> out;
    dnn::decode_ssd(loc, conf, priors, {0.1f, 0.1f, 0.2f, 0.2f}, false, 0.5f, out);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].class_id, 1);
    EXPECT_NEAR(out[0].w, 0.4f, 1e-5);
    EXPECT_NEAR(out[0].x, 0.52f - 0.2f, 1e-5);
    EXPECT_NEAR(out[0].h, 0.4f, 1e-5);
    EXPECT_NEAR(out[0].y, 0.3f, 1e-5);
    EXPECT_EQ(out[1].class_id, 0);
    EXPECT_NEAR(out[1].x, 0.15f, 1e-5);
}

TEST(Ssd, ABackgroundClassIsSkipped) {
    const std::vector<cv::Vec4f> priors{{0.5f, 0.5f, 0.2f, 0.2f}};
    const auto loc = tensor({1, 1, 4}, {0, 0, 0, 0});
    std::vector<Detection> out;
    dnn::decode_ssd(loc, tensor({1, 1, 3}, {0.9f, 0.05f, 0.05f}), priors, {0.1f, 0.1f, 0.2f, 0.2f}, true,
                    0.01f, out);
    EXPECT_TRUE(out.empty());
    dnn::decode_ssd(loc, tensor({1, 1, 3}, {0.2f, 0.1f, 0.7f}), priors, {0.1f, 0.1f, 0.2f, 0.2f}, true, 0.5f,
                    out);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].class_id, 1);
}

TEST(Ssd, MismatchedShapesAreAnError) {
    EXPECT_THROW(
        {
            std::vector<Detection> out;
            dnn::decode_ssd(tensor({1, 1, 4}, {0, 0, 0, 0}), tensor({1, 1, 2}, {0, 1}), {}, {}, false, 0.5f,
                            out);
        },
        std::invalid_argument);
}

TEST(Yolov5, ScoreIsObjectnessTimesClassInInputPixels) {
    // Two rows: one confident person (class 1), one weak.
    const auto out_t =
        tensor({1, 2, 7}, {320, 160, 64, 32, 0.9f, 0.1f, 0.8f, 10, 10, 5, 5, 0.2f, 0.9f, 0.1f});
    std::vector<Detection> out;
    dnn::decode_yolov5(out_t, {640, 320}, 0.25f, out);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].class_id, 1);
    EXPECT_NEAR(out[0].score, 0.72f, 1e-6);
    EXPECT_NEAR(out[0].x, (320 - 32) / 640.0f, 1e-6);
    EXPECT_NEAR(out[0].y, (160 - 16) / 320.0f, 1e-6);
    EXPECT_NEAR(out[0].w, 0.1f, 1e-6);
    EXPECT_NEAR(out[0].h, 0.1f, 1e-6);
}

TEST(Yolov8, ReadsTheTransposedLayoutWithoutObjectness) {
    // [1, 4 + 2 classes, 3 anchors], attribute-major.
    const auto out_t = tensor({1, 6, 3}, {100, 300, 50,        // cx
                                          100, 300, 50,        // cy
                                          20, 40, 10,          // w
                                          20, 40, 10,          // h
                                          0.1f, 0.7f, 0.2f,    // class 0
                                          0.9f, 0.1f, 0.1f});  // class 1
    std::vector<Detection> out;
    dnn::decode_yolov8(out_t, {400, 400}, 0.5f, out);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].class_id, 1);
    EXPECT_FLOAT_EQ(out[0].score, 0.9f);
    EXPECT_FLOAT_EQ(out[0].x, 90 / 400.0f);
    EXPECT_EQ(out[1].class_id, 0);
    EXPECT_FLOAT_EQ(out[1].w, 40 / 400.0f);
}

TEST(Decoders, CenterNetTakesPeaksOfEachScoreMapWithTheirBoxes) {
    // 1 class, 3x4 grid on a 40x30 input (cells of 10x10): peaks at (row 1, col 1) and (row 0, col 3).
    const int gh = 3, gw = 4, plane = gh * gw;
    std::vector<float> v(static_cast<std::size_t>(plane * 5), 0.0f);
    auto at = [&](int ch, int r, int c) -> float& {
        return v[static_cast<std::size_t>(ch * plane + r * gw + c)];
    };
    at(0, 1, 1) = 0.9f;
    at(0, 2, 1) = 0.6f;  // beside the peak: not a peak itself
    at(0, 0, 3) = 0.5f;
    at(0, 2, 0) = 0.2f;  // under the threshold
    at(1, 1, 1) = 0.5f;  // dx
    at(2, 1, 1) = 0.5f;  // dy -> centre (15, 15)
    at(3, 1, 1) = 10.0f;
    at(4, 1, 1) = 20.0f;
    at(1, 0, 3) = 0.0f;
    at(2, 0, 3) = 1.0f;  // centre (30, 10)
    at(3, 0, 3) = 4.0f;
    at(4, 0, 3) = 4.0f;
    const cv::Mat out = tensor({1, 5, gh, gw}, v);
    std::vector<Detection> d;
    dnn::decode_centernet(out, 1, cv::Size(40, 30), 0.3f, d);
    ASSERT_EQ(d.size(), 2u);
    // In scan order from the decoder; NMS sorts later.
    std::sort(d.begin(), d.end(), [](const Detection& a, const Detection& b) { return a.score > b.score; });
    EXPECT_FLOAT_EQ(d[0].score, 0.9f);
    EXPECT_NEAR(d[0].x, 10.0f / 40, 1e-6);
    EXPECT_NEAR(d[0].y, 5.0f / 30, 1e-6);
    EXPECT_NEAR(d[0].w, 10.0f / 40, 1e-6);
    EXPECT_NEAR(d[0].h, 20.0f / 30, 1e-6);
    EXPECT_FLOAT_EQ(d[1].score, 0.5f);
    EXPECT_NEAR(d[1].x, 28.0f / 40, 1e-6);
    EXPECT_NEAR(d[1].y, 8.0f / 30, 1e-6);
    EXPECT_EQ(d[1].class_id, 0);
    EXPECT_THROW(dnn::decode_centernet(out, 2, cv::Size(40, 30), 0.3f, d), std::invalid_argument);
}

TEST(Decoders, CenterNetPlateauGivesOneBox) {
    std::vector<float> v(static_cast<std::size_t>(2 * 2 * 5), 0.0f);
    v[0] = v[1] = 0.8f;  // two equal neighbours
    v[12] = v[13] = 4.0f;
    v[16] = v[17] = 4.0f;
    std::vector<Detection> d;
    dnn::decode_centernet(tensor({1, 5, 2, 2}, v), 1, cv::Size(8, 8), 0.5f, d);
    EXPECT_EQ(d.size(), 1u);
}

// make_blob: the same floats as cv::dnn::blobFromImage (which it replaces on the hot path), for
// both channel orders, the means and scales the shipped manifests use, and odd sizes.
TEST(MakeBlob, GivesTheSameFloatsAsBlobFromImage) {
    cv::RNG rng(7);
    for (const cv::Size size : {cv::Size(64, 64), cv::Size(53, 37), cv::Size(512, 512)}) {
        cv::Mat img(size, CV_8UC3);
        rng.fill(img, cv::RNG::UNIFORM, 0, 256);
        struct Case {
            bool rgb;
            cv::Scalar mean;
            double scale;
        };
        for (const Case& c : {Case{true, {127.5, 127.5, 127.5}, 1 / 127.5}, Case{false, {104, 117, 123}, 1.0},
                              Case{true, {104, 117, 123}, 1.0}, Case{true, {127, 127, 127}, 1 / 128.0},
                              Case{true, {0, 0, 0}, 1 / 255.0}}) {
            const cv::Mat want = cv::dnn::blobFromImage(img, c.scale, size, c.mean, c.rgb, false, CV_32F);
            cv::Mat got;
            kg::vision::dnn::make_blob(img, c.rgb, c.mean, c.scale, got);
            ASSERT_EQ(got.dims, 4);
            ASSERT_EQ(got.total(), want.total());
            EXPECT_EQ(cv::norm(got.reshape(1, 1), want.reshape(1, 1), cv::NORM_INF), 0.0)
                << size << " rgb " << c.rgb << " scale " << c.scale;
        }
    }
}

TEST(MakeBlob, ReadsRowsWithPaddingAndReusesItsBuffer) {
    // A picture cut out of a larger one has rows longer than its width (the crops of the classifier).
    cv::Mat big(100, 120, CV_8UC3);
    cv::randu(big, 0, 256);
    const cv::Mat roi = big(cv::Rect(7, 9, 64, 64));
    ASSERT_FALSE(roi.isContinuous());
    const cv::Mat want =
        cv::dnn::blobFromImage(roi, 1 / 127.5, roi.size(), {127.5, 127.5, 127.5}, true, false);
    cv::Mat got;
    kg::vision::dnn::make_blob(roi, true, {127.5, 127.5, 127.5}, 1 / 127.5, got);
    EXPECT_EQ(cv::norm(got.reshape(1, 1), want.reshape(1, 1), cv::NORM_INF), 0.0);
    // The next frame of the same size is written into the same floats: no allocation per frame.
    const float* before = got.ptr<float>();
    kg::vision::dnn::make_blob(big(cv::Rect(30, 20, 64, 64)), true, {127.5, 127.5, 127.5}, 1 / 127.5, got);
    EXPECT_EQ(got.ptr<float>(), before);
}

TEST(MakeBlob, GreyFeedsAllThreeChannelsAndOtherTypesAreRefused) {
    cv::Mat grey(20, 30, CV_8UC1);
    cv::randu(grey, 0, 256);
    cv::Mat bgr;
    cv::cvtColor(grey, bgr, cv::COLOR_GRAY2BGR);
    cv::Mat a, b;
    kg::vision::dnn::make_blob(grey, true, {10, 20, 30}, 0.5, a);
    kg::vision::dnn::make_blob(bgr, true, {10, 20, 30}, 0.5, b);
    EXPECT_EQ(cv::norm(a.reshape(1, 1), b.reshape(1, 1), cv::NORM_INF), 0.0);
    cv::Mat f(4, 4, CV_32FC3, cv::Scalar::all(0));
    EXPECT_THROW(kg::vision::dnn::make_blob(f, true, {}, 1.0, a), std::invalid_argument);
}

TEST(Decoders, NotANumberIsBelowEveryThreshold) {
    // A broken network's NaN used to pass `score < threshold` (false for NaN): a box per cell.
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<Detection> d;
    dnn::decode_centernet(tensor({1, 5, 2, 2}, std::vector<float>(20, nan)), 1, cv::Size(8, 8), 0.3f, d);
    EXPECT_TRUE(d.empty());
    dnn::decode_yolov5(tensor({1, 1, 6}, {4, 4, 2, 2, nan, 1}), cv::Size(8, 8), 0.3f, d);
    EXPECT_TRUE(d.empty());
    dnn::decode_yolov8(tensor({1, 5, 1}, {4, 4, 2, 2, nan}), cv::Size(8, 8), 0.3f, d);
    EXPECT_TRUE(d.empty());
    // UltraFace's class is the highest score, background included: a NaN never wins it (`s[c] > s[best]`
    // is false), so its class score never meets the threshold; {0, nan} was dropped as background.
    // What is pinned: a NaN among the scores takes no box, and leaves the real one its class.
    dnn::decode_ultraface(tensor({1, 1, 4}, {0, 0, 1, 1}), tensor({1, 1, 2}, {0, nan}), 0.3f, d);
    EXPECT_TRUE(d.empty());
    dnn::decode_ultraface(tensor({1, 2, 4}, {0, 0, 1, 1, 0, 0, 1, 1}),
                          tensor({1, 2, 3}, {0.1f, 0.9f, nan, 0.1f, nan, 0.6f}), 0.3f, d);
    ASSERT_EQ(d.size(), 2u);
    EXPECT_EQ(d[0].class_id, 0);
    EXPECT_EQ(d[0].score, 0.9f);
    EXPECT_EQ(d[1].class_id, 1);
    EXPECT_EQ(d[1].score, 0.6f);
    d.clear();
    // A confident score on a box that is not a number: no place in the picture, dropped.
    dnn::decode_ultraface(tensor({1, 1, 4}, {nan, 0, 1, 1}), tensor({1, 1, 2}, {0.1f, 0.9f}), 0.3f, d);
    EXPECT_TRUE(d.empty());
    const dnn::PriorSpec priors{{cv::Size(1, 1)}, {{0.5f}}, {{1.0f}}};
    dnn::decode_ssd(tensor({1, 1, 4}, {0, 0, 0, 0}), tensor({1, 1, 2}, {nan, nan}), dnn::make_priors(priors),
                    {0.1f, 0.1f, 0.2f, 0.2f}, false, 0.3f, d);
    EXPECT_TRUE(d.empty());
}

TEST(SsdPriors, AFeatureMapWithoutSizesOrRatiosIsAnError) {
    // It used to read past the end of the empty list (a crash of --check-config).
    EXPECT_THROW(dnn::make_priors({{cv::Size(2, 2)}, {{}}, {{1.0f}}}), std::invalid_argument);
    EXPECT_THROW(dnn::make_priors({{cv::Size(2, 2)}, {{0.2f}}, {{}}}), std::invalid_argument);
    EXPECT_THROW(dnn::make_priors({{cv::Size(0, 2)}, {{0.2f}}, {{1.0f}}}), std::invalid_argument);
}

// The gateway bounds the checks' CPU by its analysis threads; OpenCV's own pool (TBB) split every
// network pass over all the cores besides, so one analysis thread took both cores of a 2-core box.
TEST(OpenCvThreads, AfterStartUpOpenCvsLoopsRunOnTheCallersThreadOnly) {
    struct Record : cv::ParallelLoopBody {
        mutable std::mutex mutex;
        mutable std::set<std::thread::id> threads;
        void operator()(const cv::Range&) const override {
            // Long enough that a pool would hand stripes to its workers.
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
            const std::lock_guard lock(mutex);
            threads.insert(std::this_thread::get_id());
        }
    };
    kg::vision::run_opencv_on_callers_threads();
    Record record;
    cv::parallel_for_(cv::Range(0, 64), record, 64);
    EXPECT_EQ(record.threads, std::set<std::thread::id>{std::this_thread::get_id()});
    cv::setNumThreads(-1);  // OpenCV's default again, for the tests after this one
}
