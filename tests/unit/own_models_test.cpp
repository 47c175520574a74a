// The project's own models (models/*.onnx) in cv::dnn against PyTorch: each training script writes
// a fixture (models/train/fixtures/<name>.json) with the PyTorch outputs for a fixed input; cv::dnn
// must give the same within a tolerance. Also: the manifests load, "auto:*" finds them, and the
// two-stage glue runs on a real-sized frame.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>

#include "vision/detector_factory.hpp"
#include "vision/dnn/manifest.hpp"

namespace fs = std::filesystem;
using kg::vision::Detection;

namespace {

const fs::path kModels = fs::path(KG_SOURCE_DIR) / "models";

nlohmann::json fixture(const std::string& name) {
    std::ifstream in(kModels / "train" / "fixtures" / (name + ".json"));
    EXPECT_TRUE(in.good()) << "no fixture for " << name;
    return nlohmann::json::parse(in);
}

// The fixed input the training scripts use (models/train/common.py, fixed_input()).
cv::Mat fixed_input(const std::vector<int>& shape) {
    cv::Mat m(static_cast<int>(shape.size()), shape.data(), CV_32F);
    auto* p = m.ptr<float>();
    for (std::size_t i = 0; i < m.total(); ++i) {
        const double x = static_cast<double>(i);
        p[i] = static_cast<float>(std::sin(0.37 * x) * 0.9 + std::cos(0.011 * x) * 0.1);
    }
    return m;
}

void expect_same_as_pytorch(const std::string& name) {
    const auto fx = fixture(name);
    auto net = cv::dnn::readNetFromONNX((fs::path(KG_SOURCE_DIR) / fx["model"].get<std::string>()).string());
    net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    std::vector<std::string> names;
    for (const auto& o : fx["outputs"]) names.push_back(o["name"].get<std::string>());
    net.setInput(fixed_input(fx["input_shape"].get<std::vector<int>>()));
    std::vector<cv::Mat> outs;
    net.forward(outs, names);
    ASSERT_EQ(outs.size(), names.size());
    for (std::size_t k = 0; k < names.size(); ++k) {
        const auto& want = fx["outputs"][k];
        const auto shape = want["shape"].get<std::vector<int>>();
        const cv::Mat& got = outs[k];
        ASSERT_EQ(got.dims, static_cast<int>(shape.size())) << names[k];
        for (int d = 0; d < got.dims; ++d)
            ASSERT_EQ(got.size[d], shape[static_cast<std::size_t>(d)]) << names[k];
        const float* v = got.ptr<float>();
        double sum = 0, abs_sum = 0;
        for (std::size_t i = 0; i < got.total(); ++i) {
            sum += v[i];
            abs_sum += std::abs(v[i]);
        }
        // float32 in both, different kernels: a relative tolerance on the large values (box sizes in
        // pixels), an absolute one on the small ones (probabilities).
        for (const auto& s : want["samples"]) {
            const auto i = s[0].get<std::size_t>();
            const double w = s[1].get<double>();
            EXPECT_NEAR(v[i], w, 1e-3 + 1e-4 * std::abs(w)) << names[k] << " at flat index " << i;
        }
        const double total = want["abs_sum"].get<double>();
        EXPECT_NEAR(sum, want["sum"].get<double>(), 1e-4 * total + 1e-3) << names[k];
        EXPECT_NEAR(abs_sum, total, 1e-4 * total + 1e-3) << names[k];
    }
}

cv::Mat test_frame() {
    // A 720p frame with a few face-like blobs: the networks must run and give sane boxes, not find
    // anything in particular.
    cv::Mat img(720, 1280, CV_8UC3, cv::Scalar(90, 110, 120));
    cv::randu(img, cv::Scalar(60, 60, 60), cv::Scalar(200, 200, 200));
    cv::GaussianBlur(img, img, cv::Size(0, 0), 5);
    cv::ellipse(img, {300, 200}, {60, 80}, 0, 0, 360, cv::Scalar(140, 170, 220), cv::FILLED);
    cv::ellipse(img, {1260, 700}, {70, 90}, 0, 0, 360, cv::Scalar(140, 170, 220),
                cv::FILLED);  // at the border
    return img;
}

class EnvGuard {
public:
    EnvGuard(const char* name, const std::string& value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        setenv(name, value.c_str(), 1);
    }
    ~EnvGuard() {
        if (old_) {
            setenv(name_, old_->c_str(), 1);
        } else {
            unsetenv(name_);
        }
    }
    EnvGuard(const EnvGuard&) = delete;
    EnvGuard& operator=(const EnvGuard&) = delete;

private:
    const char* name_;
    std::optional<std::string> old_;
};

}  // namespace

TEST(OwnModels, MaskClassifierInOpenCvMatchesPyTorch) { expect_same_as_pytorch("kitchen-mask-classifier"); }

TEST(OwnModels, HeadDetectorInOpenCvMatchesPyTorch) { expect_same_as_pytorch("kitchen-heads"); }

TEST(OwnModels, MaskHeadDetectorInOpenCvMatchesPyTorch) { expect_same_as_pytorch("kitchen-mask-heads"); }

TEST(OwnModels, ShippedFilesAreSmall) {
    for (const char* f : {"kitchen-heads.onnx", "kitchen-mask-heads.onnx", "kitchen-mask-classifier.onnx"}) {
        ASSERT_TRUE(fs::exists(kModels / f)) << f;
        EXPECT_LT(fs::file_size(kModels / f), 4u << 20) << f;
    }
}

TEST(OwnModels, ManifestsLoadWithTheClassifierSection) {
    const auto mask = kg::vision::dnn::load_manifest((kModels / "kitchen-mask.yaml").string());
    EXPECT_EQ(mask.layout, kg::vision::dnn::Layout::centernet);
    ASSERT_TRUE(mask.classifier.has_value());
    EXPECT_EQ(mask.classifier->input.size, cv::Size(64, 64));
    ASSERT_EQ(mask.classifier->classes.size(), 3u);  // no_mask, with_mask, background (dropped)
    EXPECT_EQ(mask.classifier->classes[0].label, "no_mask");
    EXPECT_EQ(mask.classifier->classes[2].name, "background");
    EXPECT_EQ(mask.classifier->min_probability.size(), 3u);
    const auto head = kg::vision::dnn::load_manifest((kModels / "kitchen-head-covering.yaml").string());
    EXPECT_FALSE(head.classifier.has_value());
    ASSERT_EQ(head.classes.size(), 2u);
    EXPECT_EQ(head.classes[1].label, "bare");
}

TEST(OwnModels, AutoFindsTheOwnModelsAndFallsBackToClassic) {
    {
        const EnvGuard env("KG_MODELS_DIR", kModels.string());
        EXPECT_EQ(kg::vision::resolve_detector_spec("auto:mask"), (kModels / "kitchen-mask.yaml").string());
        EXPECT_EQ(kg::vision::resolve_detector_spec("auto:head"),
                  (kModels / "kitchen-head-covering.yaml").string());
    }
    EXPECT_EQ(kg::vision::resolve_detector_spec("classic:mask"), "classic:mask");
    EXPECT_EQ(kg::vision::resolve_detector_spec("x.yaml"), "x.yaml");
    EXPECT_THROW(kg::vision::resolve_detector_spec("auto:litter"), std::runtime_error);
    // The fallback, seen from a folder without models (the executable's own candidates may still
    // find this checkout, so only check that the answer is one of the two).
    const EnvGuard env("KG_MODELS_DIR", "/nonexistent");
    const auto spec = kg::vision::resolve_detector_spec("auto:mask");
    EXPECT_TRUE(spec == "classic:mask" || spec.ends_with("kitchen-mask.yaml")) << spec;
}

TEST(OwnModels, TwoStageDetectorRunsOnA720pFrame) {
    auto mask = kg::vision::make_detector((kModels / "kitchen-mask.yaml").string());
    auto head = kg::vision::make_detector((kModels / "kitchen-head-covering.yaml").string());
    EXPECT_EQ(mask->labels(), (std::vector<std::string>{"no_mask", "with_mask"}));
    EXPECT_EQ(head->labels(), (std::vector<std::string>{"covered", "bare"}));
    const cv::Mat img = test_frame();
    std::vector<Detection> found;
    for (auto* d : {mask.get(), head.get()}) {
        for (int run = 0; run < 2; ++run) {  // the second run reuses every buffer
            d->detect(img, found);
            for (const auto& f : found) {
                EXPECT_GE(f.x, 0.0f);
                EXPECT_GE(f.y, 0.0f);
                EXPECT_LE(f.x + f.w, 1.0001f);
                EXPECT_LE(f.y + f.h, 1.0001f);
                EXPECT_GT(f.score, 0.0f);
                EXPECT_LE(f.score, 1.0f);
                EXPECT_FALSE(f.label.empty());
            }
        }
    }
}
