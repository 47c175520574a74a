// The project's own models (models/*.onnx) in cv::dnn against PyTorch: each training script writes
// a fixture (models/train/fixtures/<name>.json) with the PyTorch outputs for a fixed input; cv::dnn
// must give the same within a tolerance. Also: the manifests load, "auto:*" finds them, and the
// two-stage glue runs on a real-sized frame.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>

#include "vision/classic/classic_detectors.hpp"
#include "vision/detector_factory.hpp"
#include "vision/dnn/dnn_detector.hpp"
#include "vision/dnn/manifest.hpp"
#include "vision/dnn/two_stage_detector.hpp"
#include "vision/frame_passes.hpp"

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

std::string read_text(const fs::path& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// `load` must throw a ManifestError that names `file` and says `why`.
void expect_refused(const std::function<void()>& load, const std::string& file, const std::string& why) {
    try {
        load();
        ADD_FAILURE() << file << " was accepted";
    } catch (const kg::vision::dnn::ManifestError& e) {
        EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
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

TEST(OwnModels, OnePassHeadDetectorInOpenCvMatchesPyTorch) {
    expect_same_as_pytorch("kitchen-one-pass-heads");
}

TEST(OwnModels, CoveringHeadDetectorInOpenCvMatchesPyTorch) {
    expect_same_as_pytorch("kitchen-covering-heads");
}

TEST(OwnModels, ShippedFilesAreSmall) {
    for (const char* f : {"kitchen-heads.onnx", "kitchen-mask-heads.onnx", "kitchen-one-pass-heads.onnx",
                          "kitchen-covering-heads.onnx", "kitchen-mask-classifier.onnx"}) {
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
    ASSERT_EQ(head.ensemble.size(), 1u);  // resolved against the manifest's folder
    EXPECT_EQ(head.ensemble[0].model, (kModels / "kitchen-covering-heads.onnx").lexically_normal().string());
    ASSERT_EQ(head.classes.size(), 2u);
    EXPECT_EQ(head.classes[1].label, "bare");
}

TEST(OwnModels, SsdKeysAreRefusedForLayoutsThatDoNotReadThemNamingFileKeyAndLayout) {
    // Before, a centernet, yolo or ultraface manifest loaded with them and decoded as without.
    const fs::path dir = fs::temp_directory_path() / ("kg-ssd-keys-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const struct {
        const char* manifest;
        const char* layout_line;
        const char* layout;
    } bases[] = {
        {"kitchen-head-covering.yaml", "  layout: centernet", "centernet"},
        {"kitchen-mask.yaml", "  layout: centernet", "centernet"},
        {"kitchen-head-covering.yaml", "  layout: centernet", "yolov8"},
        {"kitchen-head-covering.yaml", "  layout: centernet", "yolov5"},
        {"reference/ultraface-rfb-320.yaml", "  layout: ultraface", "ultraface"},
    };
    const struct {
        const char* key;
        const char* yaml;
    } keys[] = {
        {"output.priors", "  priors: {feature_maps: [[4, 4]], sizes: [[0.1]], ratios: [[1.0]]}"},
        {"output.variances", "  variances: [0.1, 0.1, 0.2, 0.2]"},
        {"output.background_first", "  background_first: false"},
    };
    const EnvGuard env("KG_SHARED_DIR", "/nonexistent");  // expanded, never opened by the loader
    for (const auto& b : bases) {
        const std::string text = read_text(kModels / b.manifest);
        for (const auto& k : keys) {
            std::string t = text;
            const auto at = t.find(b.layout_line);
            ASSERT_NE(at, std::string::npos) << b.manifest;
            const auto eol = t.find('\n', at);
            t.replace(at, eol - at, fmt::format("  layout: {}\n{}", b.layout, k.yaml));
            // Without the ensemble, which only centernet takes (refused first otherwise).
            if (std::string(b.layout) != "centernet") {
                const auto e = t.find("\nensemble:");
                if (e != std::string::npos) t.erase(e, t.find('\n', e + 1) - e);
            }
            const fs::path path = dir / "extra.yaml";
            std::ofstream(path) << t;
            SCOPED_TRACE(std::string(b.manifest) + " as " + b.layout + " with " + k.key);
            expect_refused([&] { kg::vision::dnn::load_manifest(path.string()); }, "extra.yaml",
                           fmt::format("{}: the {} layout does not read it (ssd only)", k.key, b.layout));
        }
    }
    fs::remove_all(dir);
}

TEST(OwnModels, EveryManifestInTheRepositoryLoads) {
    // The shipped ones, the references (the ssd one sets all three ssd keys) and any under config/
    // or tests/: a manifest is a YAML file with a top-level `output:`.
    const EnvGuard env("KG_SHARED_DIR", "/nonexistent");
    int loaded = 0;
    for (const char* top : {"models", "config", "tests"}) {
        for (const auto& e : fs::recursive_directory_iterator(fs::path(KG_SOURCE_DIR) / top)) {
            if (!e.is_regular_file() || e.path().extension() != ".yaml") continue;
            if (read_text(e.path()).find("\noutput:") == std::string::npos) continue;
            SCOPED_TRACE(e.path().string());
            EXPECT_NO_THROW(kg::vision::dnn::load_manifest(e.path().string()));
            ++loaded;
        }
    }
    EXPECT_GE(loaded, 7);
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

TEST(OwnModels, AutoFindsTheTwoNetworkManifestsWhereKgModelsDirNamesThem) {
    const EnvGuard env("KG_MODELS_DIR", (kModels / "two-networks").string());
    EXPECT_EQ(kg::vision::resolve_detector_spec("auto:mask"),
              (kModels / "two-networks" / "kitchen-mask.yaml").string());
    EXPECT_EQ(kg::vision::resolve_detector_spec("auto:head"),
              (kModels / "two-networks" / "kitchen-head-covering.yaml").string());
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

namespace {

// Photos with people (../shared, when it is beside the checkout) as 720p frames, else synthetic ones:
// the sharing below must hold either way, the photos make sure there are boxes to compare.
std::vector<cv::Mat> frames_with_heads(bool& real, const char* dataset = "helmet-yolo", bool to_720p = true) {
    std::vector<cv::Mat> frames;
    const char* env = std::getenv("KG_SHARED_DIR");
    const fs::path shared =
        env != nullptr && *env != '\0' ? fs::path(env) : fs::path(KG_SOURCE_DIR) / ".." / "shared";
    const fs::path photos = shared / "datasets" / dataset / "valid" / "images";
    std::vector<fs::path> files;
    if (fs::is_directory(photos)) {
        for (const auto& e : fs::directory_iterator(photos)) files.push_back(e.path());
        std::sort(files.begin(), files.end());
        if (files.size() > 4) files.resize(4);
    }
    for (const auto& f : files) {
        cv::Mat img = cv::imread(f.string(), cv::IMREAD_COLOR), frame;
        if (img.empty()) continue;
        if (!to_720p) {
            frames.push_back(img);
            continue;
        }
        cv::resize(img, frame, cv::Size(1280, 720));
        frames.push_back(frame);
    }
    real = !frames.empty();
    if (!real) {
        frames.push_back(test_frame());
        cv::Mat flipped;
        cv::flip(frames[0], flipped, 1);
        frames.push_back(flipped);
    }
    return frames;
}

void expect_same(const std::vector<Detection>& got, const std::vector<Detection>& want, std::size_t frame) {
    ASSERT_EQ(got.size(), want.size()) << "frame " << frame;
    for (std::size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].label, want[i].label) << "frame " << frame << " box " << i;
        EXPECT_EQ(got[i].x, want[i].x) << "frame " << frame << " box " << i;
        EXPECT_EQ(got[i].y, want[i].y) << "frame " << frame << " box " << i;
        EXPECT_EQ(got[i].w, want[i].w) << "frame " << frame << " box " << i;
        EXPECT_EQ(got[i].h, want[i].h) << "frame " << frame << " box " << i;
        EXPECT_EQ(got[i].score, want[i].score) << "frame " << frame << " box " << i;
    }
}

// The boxes DnnDetector gives for a CenterNet manifest's (mean) maps at its input, stretched:
// decoded, suppressed and clipped to the picture as it does.
std::vector<Detection> boxes_of_maps(const cv::Mat& maps, const kg::vision::dnn::Manifest& m) {
    std::vector<Detection> out;
    kg::vision::dnn::decode_centernet(maps, static_cast<int>(m.classes.size()), m.input, m.score_threshold,
                                      out);
    kg::vision::non_max_suppression(out, m.nms_iou, m.class_agnostic_nms, m.nms_area_offset);
    for (auto& d : out) {
        const float x2 = std::min(1.0f, d.x + d.w), y2 = std::min(1.0f, d.y + d.h);
        d.x = std::clamp(d.x, 0.0f, 1.0f);
        d.y = std::clamp(d.y, 0.0f, 1.0f);
        d.w = std::max(0.0f, x2 - d.x);
        d.h = std::max(0.0f, y2 - d.y);
    }
    return out;
}

}  // namespace

// kitchen-eval --given-boxes feeds the classifier boxes of its own: classify() on the first stage's
// boxes is detect() (detect() calls it, so this guards the split, not the classifier: the e2e test
// pins what it decides), and a box's score scales the classifier's probability both ways.
TEST(OwnModels, ClassifyOnTheFirstStagesBoxesIsDetectAndScalesByTheBoxScore) {
    auto manifest = kg::vision::dnn::load_manifest((kModels / "kitchen-mask.yaml").string());
    auto first = manifest;
    first.classifier.reset();
    kg::vision::dnn::DnnDetector stage1(first);
    kg::vision::dnn::TwoStageDetector two(manifest);
    bool real = false;
    const auto frames = frames_with_heads(real);
    std::size_t boxes = 0;
    std::vector<Detection> heads, whole, alone, halved;
    for (std::size_t i = 0; i < frames.size(); ++i) {
        stage1.detect(frames[i], heads);
        two.detect(frames[i], whole);
        two.classify(frames[i], heads, alone);
        expect_same(alone, whole, i);
        boxes += whole.size();
        for (auto& h : heads) h.score = 1.0f;  // as kitchen-eval gives the labelled boxes
        two.classify(frames[i], heads, alone);
        for (auto& h : heads) h.score = 0.5f;
        two.classify(frames[i], heads, halved);
        // Half the box score halves every kept score; min_score (0.3) may drop some of them.
        for (const auto& h : halved) {
            const auto same = std::find_if(alone.begin(), alone.end(), [&](const Detection& a) {
                return a.x == h.x && a.y == h.y && a.w == h.w && a.h == h.h;
            });
            ASSERT_NE(same, alone.end());
            EXPECT_EQ(same->label, h.label);
            EXPECT_FLOAT_EQ(h.score, same->score * 0.5f);
        }
        EXPECT_LE(halved.size(), alone.size());
        for (const auto& a : alone) {  // and every box whose halved score still passes min_score is kept
            if (a.score * 0.5f < manifest.classifier->min_score) continue;
            EXPECT_TRUE(std::any_of(halved.begin(), halved.end(),
                                    [&](const Detection& h) {
                                        return a.x == h.x && a.y == h.y && a.w == h.w && a.h == h.h &&
                                               h.label == a.label;
                                    }))
                << "frame " << i;
        }
    }
    if (real) {
        EXPECT_GT(boxes, 0u) << "the photos should hold heads to compare";
    }
    two.classify(frames[0], std::vector<Detection>{}, alone);
    EXPECT_TRUE(alone.empty()) << "no boxes given: nothing found, nothing left from the last call";
}

// Both checks through `passes` on each frame, `rounds` times, each detection the same as the same
// detector's used alone; the boxes compared. Head first on odd frames: whichever check asks first
// does the shared work.
std::size_t compare_shared_with_alone(kg::vision::FramePasses& passes, kg::vision::Detector& mask,
                                      kg::vision::Detector& head, kg::vision::Detector& mask_alone,
                                      kg::vision::Detector& head_alone, const std::vector<cv::Mat>& frames,
                                      int rounds) {
    std::vector<Detection> m, h, m_alone, h_alone;
    std::size_t boxes = 0;
    for (int round = 0; round < rounds; ++round) {
        for (std::size_t i = 0; i < frames.size(); ++i) {
            passes.begin_frame();
            if (i % 2 == 0) {
                mask.detect(frames[i], m);
                head.detect(frames[i], h);
            } else {
                head.detect(frames[i], h);
                mask.detect(frames[i], m);
            }
            mask_alone.detect(frames[i], m_alone);
            head_alone.detect(frames[i], h_alone);
            expect_same(m, m_alone, i);
            expect_same(h, h_alone, i);
            boxes += h.size() + m.size();
        }
    }
    return boxes;
}

TEST(OwnModels, TheOnePassManifestsShareOneHeadNetworkPassAndFindTheSame) {
    // The default manifests feed one network alike for both checks: the gateway runs it once per frame
    // for both (vision/dnn/network_pass.hpp). Sharing must change the cost, never the boxes.
    const fs::path& dir = kModels;
    kg::vision::FramePasses passes;
    auto mask = kg::vision::make_detector((dir / "kitchen-mask.yaml").string(), &passes);
    auto head = kg::vision::make_detector((dir / "kitchen-head-covering.yaml").string(), &passes);
    EXPECT_EQ(passes.networks().shared(), 1u);
    auto mask_alone = kg::vision::make_detector((dir / "kitchen-mask.yaml").string());
    auto head_alone = kg::vision::make_detector((dir / "kitchen-head-covering.yaml").string());
    bool real = false;
    const auto frames = frames_with_heads(real);
    // Twice through: the second round proves a new frame is never answered from the last one's pass.
    const std::size_t boxes =
        compare_shared_with_alone(passes, *mask, *head, *mask_alone, *head_alone, frames, 2);
    // One forward pass per frame of the network both checks read: the sharing itself, not only its
    // result. The head-covering check's second network (its ensemble) runs once per frame too.
    const auto pass =
        passes.networks().pass_for(kg::vision::dnn::load_manifest((dir / "kitchen-mask.yaml").string()));
    EXPECT_EQ(pass->readers(), 2u);
    EXPECT_EQ(pass->runs(), 2 * frames.size());
    EXPECT_EQ(passes.networks().count(), 2u);
    auto second = kg::vision::dnn::load_manifest((dir / "kitchen-head-covering.yaml").string());
    ASSERT_EQ(second.ensemble.size(), 1u);
    second.model = second.ensemble[0].model;
    if (!second.ensemble[0].input.empty()) second.input = second.ensemble[0].input;
    const auto member = passes.networks().pass_for(second);
    EXPECT_EQ(member->readers(), 1u);
    EXPECT_EQ(member->runs(), 2 * frames.size());
    // Both networks are fed alike: one resize and blob per frame for the two of them.
    EXPECT_EQ(&member->input(), &pass->input());
    EXPECT_EQ(pass->input().preparations(), 2 * frames.size());
    EXPECT_EQ(passes.networks().inputs(), 1u);
    if (!real) {
        GTEST_SKIP() << "no photos in ../shared: the run count was checked, the boxes compared were "
                        "those of synthetic frames (possibly none)";
    }
    EXPECT_GT(boxes, 0u) << "no heads found on the helmet photos: nothing was compared";
}

TEST(OwnModels, TheClassicChecksShareOneFrontalFaceSearchAndFindTheSame) {
    // The fallback back-end (no model files): both classic checks start from the frontal-face cascade,
    // which a camera with both searches once per frame (vision/frame_passes.hpp).
    kg::vision::FramePasses passes;
    auto mask = kg::vision::make_detector("classic:mask", &passes);
    auto head = kg::vision::make_detector("classic:head", &passes);
    auto mask_alone = kg::vision::make_detector("classic:mask");
    auto head_alone = kg::vision::make_detector("classic:head");
    // Faces near enough for the cascade (the mask photos; the helmet photos' are too small), at their
    // own size: a cascade search of a 720p frame takes a third of a second here.
    bool real = false;
    const auto frames = frames_with_heads(real, "mask-yolo", false);
    const std::size_t boxes =
        compare_shared_with_alone(passes, *mask, *head, *mask_alone, *head_alone, frames, 1);
    std::vector<Detection> h, h_alone;
    const auto faces = passes.frontal_faces(kg::vision::classic::kCascadeDir);
    EXPECT_EQ(faces->searches(), frames.size());
    // Used alone, a detector searches on every call: nothing tells it a new picture began, even one
    // decoded into the same buffer.
    if (frames.size() > 1) {
        cv::Mat buffer = frames[0].clone();
        head_alone->detect(buffer, h_alone);
        frames[1].copyTo(buffer);
        head_alone->detect(buffer, h_alone);
        passes.begin_frame();
        head->detect(frames[1], h);
        expect_same(h_alone, h, 1);
    }
    if (!real) GTEST_SKIP() << "no photos in ../shared: the search count was checked on synthetic frames";
    EXPECT_GT(boxes, 0u) << "no face found on the mask photos: nothing was compared";
}

TEST(OwnModels, ASharedPassNeverAnswersANewPictureWithTheLastOnesOutputs) {
    // A caller that forgets begin_frame() must pay a second pass, not get the first picture's boxes.
    const fs::path& dir = kModels;
    kg::vision::FramePasses passes;
    auto head = kg::vision::make_detector((dir / "kitchen-head-covering.yaml").string(), &passes);
    auto head_alone = kg::vision::make_detector((dir / "kitchen-head-covering.yaml").string());
    bool real = false;
    const auto frames = frames_with_heads(real);
    ASSERT_GE(frames.size(), 2u);
    std::vector<Detection> h, h_alone;
    passes.begin_frame();
    head->detect(frames[0], h);
    head->detect(frames[1], h);  // same frame number, another picture
    head_alone->detect(frames[1], h_alone);
    expect_same(h, h_alone, 1);
    const auto pass =
        passes.networks().pass_for(kg::vision::dnn::load_manifest((dir / "kitchen-mask.yaml").string()));
    EXPECT_EQ(pass->runs(), 2u);
}

TEST(OwnModels, ALetterboxedPassKeepsTheScaleOfItsOwnPicture) {
    // Two networks share a letterboxed input; the second is given another picture, of another
    // shape, in the same frame. The first, asked again for its own picture, answers from its
    // outputs, and must map them back with its picture's letterbox scale, not the input's latest.
    auto x_manifest = kg::vision::dnn::load_manifest((kModels / "kitchen-head-covering.yaml").string());
    x_manifest.ensemble.clear();
    x_manifest.letterbox = true;
    auto y_manifest = x_manifest;
    y_manifest.model = (kModels / "kitchen-heads.onnx").string();
    kg::vision::FramePasses passes;
    kg::vision::dnn::DnnDetector x(x_manifest, &passes.networks()), y(y_manifest, &passes.networks());
    ASSERT_EQ(passes.networks().inputs(), 1u);
    bool real = false;
    const auto frames = frames_with_heads(real);
    ASSERT_GE(frames.size(), 2u);
    cv::Mat tall;
    cv::resize(frames[1], tall, cv::Size(frames[1].cols / 2, frames[1].rows * 2));
    std::vector<Detection> first, other, again;
    passes.begin_frame();
    x.detect(frames[0], first);
    y.detect(tall, other);
    x.detect(frames[0], again);
    expect_same(again, first, 0);
    EXPECT_EQ(passes.networks().pass_for(x_manifest)->runs(), 1u);  // answered from its outputs
    if (real) {
        EXPECT_GT(first.size(), 0u) << "no heads found: nothing was compared";
    }
    // Where its boxes land, which the comparison above does not say (a scale wrong for both would
    // pass it): a letterboxed pass is a stretched one of the picture padded below to a square, with
    // the padding's grey; its boxes, stretched back by the square's height over the picture's.
    auto stretch_manifest = x_manifest;
    stretch_manifest.letterbox = false;
    kg::vision::dnn::DnnDetector stretch(stretch_manifest);
    cv::Mat square;
    ASSERT_GT(frames[0].cols, frames[0].rows);
    cv::copyMakeBorder(frames[0], square, 0, frames[0].cols - frames[0].rows, 0, 0, cv::BORDER_CONSTANT,
                       cv::Scalar::all(114));
    std::vector<Detection> want;
    stretch.detect(square, want);
    const float k = static_cast<float>(square.rows) / static_cast<float>(frames[0].rows);
    for (auto& d : want) {
        d.y *= k;
        d.h = std::min(d.h * k, 1.0f - d.y);
    }
    for (std::size_t i = 0; i < first.size(); ++i) {
        float best = 0;
        for (const auto& w : want) {
            if (w.label == first[i].label) best = std::max(best, kg::vision::iou(first[i], w));
        }
        EXPECT_GT(best, 0.9f) << "box " << i << " at " << first[i].x << "," << first[i].y << " " << first[i].w
                              << "x" << first[i].h;
    }
    EXPECT_NEAR(static_cast<double>(want.size()), static_cast<double>(first.size()), 1.0);
    if (first.empty())
        GTEST_SKIP()
            << "no boxes on the synthetic frames (no ../shared photos): where they land is unchecked";
}

TEST(OwnModels, AnOutputNameTheNetworkLacksIsRefusedAtStartNamingTheManifest) {
    // Otherwise the first forward pass would throw, in every check that shares the network.
    const auto tmp = fs::temp_directory_path() / ("kg-bad-output-" + std::to_string(::getpid()));
    fs::create_directories(tmp);
    std::string text = read_text(kModels / "kitchen-head-covering.yaml");
    auto manifest = kg::vision::dnn::load_manifest((kModels / "kitchen-head-covering.yaml").string());
    ASSERT_FALSE(manifest.outputs.empty());
    const std::string names = "names: [" + manifest.outputs[0] + "]";
    const auto at = text.find(names);
    ASSERT_NE(at, std::string::npos);
    text.replace(at, names.size(), "names: [no_such_layer]");
    // The copy lives elsewhere: point its model at the shipped file.
    const std::string rel = "\nmodel: ";  // the key, not the word in a comment
    const auto model_at = text.find(rel);
    ASSERT_NE(model_at, std::string::npos);
    // Normalised as the loader does, so that both manifests feed one pass and the refusal happens
    // on the shared pass.
    text.replace(model_at, rel.size(), "\nmodel: " + kModels.lexically_normal().string() + "/");
    ASSERT_NE(text.find("model: /"), std::string::npos);
    const fs::path bad = tmp / "bad-output.yaml";
    std::ofstream(bad) << text;
    kg::vision::FramePasses passes;
    auto good = kg::vision::make_detector((kModels / "kitchen-mask.yaml").string(), &passes);
    // The bad reader would share the good one's pass: the refusal is tested where it matters.
    const auto good_pass =
        passes.networks().pass_for(kg::vision::dnn::load_manifest((kModels / "kitchen-mask.yaml").string()));
    EXPECT_EQ(passes.networks().pass_for(kg::vision::dnn::load_manifest(bad.string())), good_pass);
    try {
        kg::vision::make_detector(bad.string(), &passes);
        ADD_FAILURE() << "a manifest naming a missing output was accepted";
    } catch (const kg::vision::dnn::ManifestError& e) {
        EXPECT_NE(std::string(e.what()).find(bad.string()), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("no_such_layer"), std::string::npos) << e.what();
    }
    fs::remove_all(tmp);
    EXPECT_EQ(passes.networks().shared(), 0u);  // the refused reader was never added
    // The check already made still runs.
    std::vector<Detection> m;
    passes.begin_frame();
    EXPECT_NO_THROW(good->detect(test_frame(), m));
}

TEST(OwnModels, NetworksFedDifferentlyAreNotShared) {
    {
        // models/two-networks/: a network for each check, nothing to share.
        const fs::path dir = kModels / "two-networks";
        kg::vision::FramePasses passes;
        auto mask = kg::vision::make_detector((dir / "kitchen-mask.yaml").string(), &passes);
        auto head = kg::vision::make_detector((dir / "kitchen-head-covering.yaml").string(), &passes);
        EXPECT_EQ(passes.networks().shared(), 0u);
        EXPECT_EQ(passes.networks().inputs(), 2u);  // 384 and 512: each frame is prepared for each
    }
    {
        // Different networks fed alike: two passes, one preparation of the frame for both, and
        // the boxes of each as when it runs alone. (The detectors alone share a preparation
        // between an ensemble's networks too: AnEnsembleDecodesTheMeanOfItsNetworksMaps checks
        // that against cv::dnn's own blob and forward passes.)
        kg::vision::FramePasses passes;
        const auto first = (kModels / "kitchen-mask.yaml").string();
        const auto other = (kModels / "two-networks" / "kitchen-head-covering.yaml").string();
        auto one = kg::vision::make_detector(first, &passes);
        auto two = kg::vision::make_detector(other, &passes);
        auto one_alone = kg::vision::make_detector(first);
        auto two_alone = kg::vision::make_detector(other);
        EXPECT_EQ(passes.networks().shared(), 0u);
        EXPECT_EQ(passes.networks().count(), 2u);
        EXPECT_EQ(passes.networks().inputs(), 1u);
        bool real = false;
        const auto frames = frames_with_heads(real);
        std::vector<Detection> a, b, a_alone, b_alone;
        std::size_t boxes = 0;
        for (std::size_t i = 0; i < frames.size(); ++i) {
            passes.begin_frame();
            one->detect(frames[i], a);
            two->detect(frames[i], b);
            one_alone->detect(frames[i], a_alone);
            two_alone->detect(frames[i], b_alone);
            expect_same(a, a_alone, i);
            expect_same(b, b_alone, i);
            boxes += a.size() + b.size();
        }
        const auto pass = passes.networks().pass_for(kg::vision::dnn::load_manifest(other));
        EXPECT_EQ(pass->input().preparations(), frames.size());
        if (real) {
            EXPECT_GT(boxes, 0u) << "no heads found on the helmet photos: nothing was compared";
        }
    }
    kg::vision::FramePasses passes;
    auto manifest = kg::vision::dnn::load_manifest((kModels / "kitchen-head-covering.yaml").string());
    kg::vision::make_detector((kModels / "kitchen-head-covering.yaml").string(), &passes);
    manifest.input = cv::Size(384, 384);
    const auto other = passes.networks().pass_for(manifest);
    EXPECT_EQ(other->readers(), 0u);  // a pass of its own, not the 512 one
    EXPECT_EQ(passes.networks().shared(), 0u);
    EXPECT_NE(
        &other->input(),
        &passes.networks()
             .pass_for(kg::vision::dnn::load_manifest((kModels / "kitchen-head-covering.yaml").string()))
             ->input());
}

TEST(OwnModels, ManifestValuesOutOfRangeAreNamed) {
    // Every bound a manifest sets on a fraction, NaN included (it passes `v < 0 || v > 1`).
    const std::string text = read_text(kModels / "kitchen-mask.yaml");
    const struct {
        const char* from;
        const char* to;
        const char* key;
    } cases[] = {
        {"min_score: 0.3", "min_score: .nan", "classifier.min_score"},
        {"min_score: 0.3", "min_score: 1.5", "classifier.min_score"},
        {"expand: 0.0", "expand: -0.1", "classifier.expand"},
        {"score_threshold: 0.3", "score_threshold: .nan", "output.score_threshold"},
        {"nms_iou: 0.4", "nms_iou: 0", "output.nms_iou"},
    };
    const fs::path dir = fs::temp_directory_path() / ("kg-manifest-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    for (const char* f : {"kitchen-one-pass-heads.onnx", "kitchen-mask-classifier.onnx"})
        fs::copy_file(kModels / f, dir / f, fs::copy_options::overwrite_existing);
    for (const auto& c : cases) {
        std::string bad = text;
        const auto at = bad.find(c.from);
        ASSERT_NE(at, std::string::npos) << c.from << " is not in kitchen-mask.yaml";
        bad.replace(at, std::strlen(c.from), c.to);
        const fs::path path = dir / "bad.yaml";
        std::ofstream(path) << bad;
        try {
            kg::vision::dnn::load_manifest(path.string());
            ADD_FAILURE() << c.to << " was accepted";
        } catch (const kg::vision::dnn::ManifestError& e) {
            EXPECT_NE(std::string(e.what()).find(c.key), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("bad.yaml"), std::string::npos) << e.what();
        }
    }
    // The shipped values themselves load.
    std::ofstream(dir / "good.yaml") << text;
    EXPECT_FLOAT_EQ(kg::vision::dnn::load_manifest((dir / "good.yaml").string()).classifier->min_score, 0.3f);
    fs::remove_all(dir);
}

TEST(OwnModels, AnEnsembleDecodesTheMeanOfItsNetworksMaps) {
    // The head-covering check's boxes are those of the mean of both networks' maps, computed here by
    // hand from cv::dnn's own blob and forward passes.
    auto manifest = kg::vision::dnn::load_manifest((kModels / "kitchen-head-covering.yaml").string());
    ASSERT_EQ(manifest.ensemble.size(), 1u);
    manifest.score_threshold = 0.2f;  // more boxes to compare
    bool real = false;
    const auto frames = frames_with_heads(real);
    kg::vision::dnn::DnnDetector detector(manifest);
    // What the start-up check compares members by: the shapes at the manifest's input (512 / 8 cells).
    kg::vision::FramePasses passes;
    EXPECT_EQ(passes.networks().pass_for(manifest)->output_shape(manifest.outputs[0]),
              (cv::dnn::MatShape{1, 6, 64, 64}));
    std::vector<cv::dnn::Net> nets;
    for (const auto& f : {manifest.model, manifest.ensemble[0].model}) nets.push_back(cv::dnn::readNet(f));
    std::size_t boxes = 0;
    for (std::size_t i = 0; i < frames.size(); ++i) {
        cv::Mat resized;
        cv::resize(frames[i], resized, manifest.input, 0, 0, cv::INTER_LINEAR);
        const cv::Mat blob = cv::dnn::blobFromImage(resized, manifest.scale, manifest.input, manifest.mean,
                                                    manifest.rgb, false);
        cv::Mat mean;
        for (auto& net : nets) {
            net.setInput(blob);
            const cv::Mat out = net.forward(manifest.outputs[0]);
            if (mean.empty()) {
                out.copyTo(mean);
            } else {
                mean += out;
            }
        }
        mean *= 0.5;
        const auto want = boxes_of_maps(mean, manifest);
        std::vector<Detection> got;
        detector.detect(frames[i], got);
        ASSERT_EQ(got.size(), want.size()) << "frame " << i;
        for (std::size_t k = 0; k < got.size(); ++k) {
            EXPECT_EQ(got[k].class_id, want[k].class_id) << "frame " << i << " box " << k;
            EXPECT_NEAR(got[k].score, want[k].score, 1e-5) << "frame " << i << " box " << k;
            EXPECT_NEAR(got[k].x + got[k].w / 2, want[k].x + want[k].w / 2, 1e-4) << "frame " << i;
            EXPECT_NEAR(got[k].y + got[k].h / 2, want[k].y + want[k].h / 2, 1e-4) << "frame " << i;
        }
        boxes += got.size();
    }
    if (!real) GTEST_SKIP() << "no photos in ../shared: compared on synthetic frames (possibly no boxes)";
    EXPECT_GT(boxes, 0u);
}

TEST(OwnModels, AnEnsembleMemberAtItsOwnInputAddsItsScoreMapsResizedToTheModelsGrid) {
    // For a box short of CPU: the second network at 448 while the first stays at 512. Its score maps
    // (56x56) are resized to the first's grid (64x64) and averaged; the boxes' offsets and sizes,
    // in another grid and in other pixels, are those of the networks at the model's input. Computed
    // here by hand, for that pair and for a mix: the pair at 512 and the first network at 384 (scores
    // the mean of three, boxes of two).
    const auto shipped = kg::vision::dnn::load_manifest((kModels / "kitchen-head-covering.yaml").string());
    ASSERT_EQ(shipped.ensemble.size(), 1u);
    const auto second = shipped.ensemble[0].model;
    using Member = kg::vision::dnn::Manifest::EnsembleMember;
    bool real = false;
    const auto frames = frames_with_heads(real);
    for (const auto& members : {std::vector<Member>{{second, {448, 448}}},
                                std::vector<Member>{{second, {}}, {shipped.model, {384, 384}}}}) {
        auto manifest = shipped;
        manifest.ensemble = members;
        manifest.score_threshold = 0.2f;  // more boxes to compare
        SCOPED_TRACE("members: " + std::to_string(members.size()));
        kg::vision::FramePasses passes;
        kg::vision::dnn::DnnDetector detector(manifest, &passes.networks());
        // A member at its own size is fed a picture of its own: an input and a pass each.
        EXPECT_EQ(passes.networks().count(), members.size() + 1);
        EXPECT_EQ(passes.networks().inputs(), 2u);  // 512 (shared by the networks fed alike), and one more
        const int classes = static_cast<int>(manifest.classes.size());
        std::vector<cv::dnn::Net> nets{cv::dnn::readNet(manifest.model)};
        std::vector<cv::Size> sizes{manifest.input};
        for (const auto& m : members) {
            nets.push_back(cv::dnn::readNet(m.model));
            sizes.push_back(m.input.empty() ? manifest.input : m.input);
        }
        std::size_t boxes = 0;
        for (std::size_t i = 0; i < frames.size(); ++i) {
            cv::Mat scores, box_maps;  // sums, then means
            int with_boxes = 0;
            for (std::size_t n = 0; n < nets.size(); ++n) {
                cv::Mat resized;
                cv::resize(frames[i], resized, sizes[n], 0, 0, cv::INTER_LINEAR);
                nets[n].setInput(cv::dnn::blobFromImage(resized, manifest.scale, sizes[n], manifest.mean,
                                                        manifest.rgb, false));
                cv::Mat out = nets[n].forward(manifest.outputs[0]).clone();
                if (n == 0) {
                    scores = out.clone();
                    box_maps = out.clone();
                    ++with_boxes;
                    continue;
                }
                const int rows = scores.size[2], cols = scores.size[3];
                if (sizes[n] == manifest.input) {
                    box_maps += out;
                    ++with_boxes;
                }
                for (int c = 0; c < classes; ++c) {
                    cv::Mat plane(rows, cols, CV_32F, scores.ptr<float>(0, c));
                    const cv::Mat other(out.size[2], out.size[3], CV_32F, out.ptr<float>(0, c));
                    cv::Mat scaled;
                    cv::resize(other, scaled, {cols, rows}, 0, 0, cv::INTER_LINEAR);
                    plane += scaled;  // through the header, into `scores`
                }
            }
            ASSERT_EQ(scores.size[2], 64);
            // The mean: the score planes over all networks, the box planes over those at 512.
            const std::size_t plane = 64 * 64, score_end = plane * static_cast<std::size_t>(classes);
            cv::Mat mean = box_maps / with_boxes;
            for (std::size_t k = 0; k < score_end; ++k)
                mean.ptr<float>()[k] = scores.ptr<float>()[k] / static_cast<float>(nets.size());
            const auto want = boxes_of_maps(mean, manifest);
            std::vector<Detection> got;
            passes.begin_frame();
            detector.detect(frames[i], got);
            ASSERT_EQ(got.size(), want.size()) << "frame " << i;
            for (std::size_t k = 0; k < got.size(); ++k) {
                EXPECT_EQ(got[k].class_id, want[k].class_id) << "frame " << i << " box " << k;
                EXPECT_NEAR(got[k].score, want[k].score, 1e-5) << "frame " << i << " box " << k;
                EXPECT_NEAR(got[k].x, want[k].x, 1e-4) << "frame " << i << " box " << k;
                EXPECT_NEAR(got[k].y, want[k].y, 1e-4) << "frame " << i << " box " << k;
                EXPECT_NEAR(got[k].w, want[k].w, 1e-4) << "frame " << i << " box " << k;
                EXPECT_NEAR(got[k].h, want[k].h, 1e-4) << "frame " << i << " box " << k;
            }
            boxes += got.size();
        }
        if (real) {
            EXPECT_GT(boxes, 0u);
        }
    }
    if (!real) GTEST_SKIP() << "no photos in ../shared: compared on synthetic frames (possibly no boxes)";
}

// A class's label goes out in every event of it: the room refuses one over 128 bytes or with a
// control character, so the manifest is refused at load, naming the class.
TEST(OwnModels, AClassLabelTheRoomWouldRefuseIsRefusedNamingTheClass) {
    const fs::path dir = fs::temp_directory_path() / ("kg-label-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string text = read_text(kModels / "kitchen-mask.yaml");
    const std::string entry = "{name: no_mask, label: no_mask, check: mask, severity: 3}";
    ASSERT_NE(text.find(entry), std::string::npos);
    const auto write = [&](const std::string& name, const std::string& replacement) {
        std::string t = text;
        t.replace(t.find(entry), entry.size(), replacement);
        std::ofstream(dir / name) << t;
        return (dir / name).string();
    };
    const auto load = [](const std::string& f) { return kg::vision::dnn::load_manifest(f); };
    const auto long_label =
        write("long.yaml", "{name: no_mask, label: " + std::string(129, 'x') + ", check: mask}");
    expect_refused([&] { load(long_label); }, "long.yaml", "classifier.classes[0]: the label 'xxxx");
    const auto tab = write("tab.yaml", "{name: no_mask, label: \"no\\tmask\", check: mask}");
    expect_refused([&] { load(tab); }, "tab.yaml",
                   "is not a text of 1 to 128 bytes without control characters");
    EXPECT_EQ(load(write("ok.yaml", "{name: no_mask, label: " + std::string(128, 'x') + ", check: mask}"))
                  .classifier->classes.at(0)
                  .label.size(),
              128u);
    fs::remove_all(dir);
}

TEST(OwnModels, AnEnsembleMemberWithItsOwnInputIsReadAndCheckedNamingTheEntry) {
    const fs::path dir = fs::temp_directory_path() / ("kg-ens-in-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string text = read_text(kModels / "kitchen-head-covering.yaml");
    const std::string plain = "ensemble: [kitchen-covering-heads.onnx]";
    ASSERT_NE(text.find(plain), std::string::npos);
    auto write = [&](const std::string& name, const std::string& ensemble, const std::string& extra = "") {
        std::string t = text;  // `extra` first: the model's input, before an entry's can be found
        if (!extra.empty()) t.replace(t.find("input: {width: 512"), 8, "input: {" + extra + ", ");
        t.replace(t.find(plain), plain.size(), ensemble);
        std::ofstream(dir / name) << t;
        return (dir / name).string();
    };
    const auto load = [](const std::string& f) { return kg::vision::dnn::load_manifest(f); };
    // The map form: the file resolved against the manifest's folder, the size kept.
    auto m = load(write("own.yaml", "ensemble: [{model: heads.onnx, input: {width: 448, height: 448}}]"));
    ASSERT_EQ(m.ensemble.size(), 1u);
    EXPECT_EQ(m.ensemble[0].model, (dir / "heads.onnx").string());
    EXPECT_EQ(m.ensemble[0].input, cv::Size(448, 448));
    // The model's own size is the plain form; the model itself at another size is another view.
    m = load(write("same.yaml", "ensemble: [{model: heads.onnx, input: {width: 512, height: 512}}]"));
    EXPECT_TRUE(m.ensemble[0].input.empty());
    m = load(write("scales.yaml",
                   "ensemble: [{model: kitchen-one-pass-heads.onnx, input: {width: 384, height: 384}}]"));
    EXPECT_EQ(m.ensemble[0].input, cv::Size(384, 384));
    // Stretched, another shape is fine (both maps cover the picture); letterboxed it is not.
    m = load(write("wide.yaml", "ensemble: [{model: heads.onnx, input: {width: 512, height: 288}}]"));
    EXPECT_EQ(m.ensemble[0].input, cv::Size(512, 288));
    const std::vector<std::tuple<std::string, std::string, std::string, std::string>> bad = {
        {"key.yaml", "ensemble: [{model: heads.onnx, size: 448}]", "", "ensemble[0].size: unknown key"},
        {"nomodel.yaml", "ensemble: [{input: {width: 448, height: 448}}]", "",
         "ensemble[0].model: missing required key"},
        {"noinput.yaml", "ensemble: [{model: heads.onnx}]", "", "ensemble[0].input: missing required key"},
        {"noheight.yaml", "ensemble: [{model: heads.onnx, input: {width: 448}}]", "",
         "ensemble[0].input.height: missing required key"},
        {"zero.yaml", "ensemble: [{model: heads.onnx, input: {width: 0, height: 448}}]", "",
         "ensemble[0].input: width and height must be positive"},
        {"depth.yaml", "ensemble: [{model: heads.onnx, input: {width: 448, height: 448, scale: 1}}]", "",
         "ensemble[0].input.scale: unknown key"},
        {"letterbox.yaml", "ensemble: [{model: heads.onnx, input: {width: 512, height: 288}}]",
         "resize: letterbox", "ensemble[0].input: 512x288 is not the aspect ratio of input 512x512"},
        {"twice.yaml",
         "ensemble: [{model: h.onnx, input: {width: 448, height: 448}}, "
         "{model: h.onnx, input: {width: 448, height: 448}}]",
         "", "ensemble[1]: "},
    };
    for (const auto& [name, ensemble, extra, why] : bad) {
        const auto file = write(name, ensemble, extra);
        expect_refused([&] { load(file); }, name, why);
    }
    // At start-up, a member at its own size may differ from the model in its grid only.
    for (const char* f : {"kitchen-one-pass-heads.onnx", "kitchen-mask-classifier.onnx"})
        fs::copy_file(kModels / f, dir / f);
    kg::vision::FramePasses passes;
    const auto refused_at_start = [&](const std::string& name, const std::string& ensemble,
                                      const std::string& why) {
        const auto file = write(name, ensemble);
        expect_refused([&] { kg::vision::make_detector(file, &passes); }, name, why);
    };
    // Without the output the manifest reads.
    refused_at_start("other.yaml",
                     "ensemble: [{model: kitchen-mask-classifier.onnx, input: {width: 448, height: 448}}]",
                     "(ensemble[0])");
    // An input off the network's stride, which its shape inference refuses: named, not OpenCV's
    // bare assertion.
    refused_at_start("stride.yaml",
                     "ensemble: [{model: kitchen-one-pass-heads.onnx, input: {width: 450, height: 448}}]",
                     "cannot take an input of 450x448");
    // The model's own input too.
    {
        std::string t = text;
        const std::string size = "width: 512, height: 512";
        ASSERT_NE(t.find(size), std::string::npos);
        t.replace(t.find(size), size.size(), "width: 500, height: 500");
        std::ofstream(dir / "own-stride.yaml") << t;
        expect_refused([&] { kg::vision::make_detector((dir / "own-stride.yaml").string(), &passes); },
                       "own-stride.yaml", "cannot take an input of 500x500");
    }
    EXPECT_EQ(passes.networks().count(), 0u);  // nothing refused joined the passes
    // The model itself at another scale runs, with a pass and an input of its own.
    std::vector<Detection> out;
    auto detector = kg::vision::make_detector(
        write("scales.yaml",
              "ensemble: [{model: kitchen-one-pass-heads.onnx, input: {width: 384, height: 384}}]"),
        &passes);
    EXPECT_EQ(passes.networks().count(), 2u);
    EXPECT_EQ(passes.networks().inputs(), 2u);
    passes.begin_frame();
    EXPECT_NO_THROW(detector->detect(cv::Mat(720, 1280, CV_8UC3, cv::Scalar(120, 130, 140)), out));
    fs::remove_all(dir);
}

TEST(OwnModels, AnEnsembleIsRefusedWhereItCannotWorkNamingTheManifest) {
    const fs::path dir = fs::temp_directory_path() / ("kg-ens-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string text = read_text(kModels / "kitchen-head-covering.yaml");
    auto write = [&](const std::string& name, const std::string& from, const std::string& to) {
        std::string t = text;
        const auto at = t.find(from);
        EXPECT_NE(at, std::string::npos) << from;
        if (at != std::string::npos) t.replace(at, from.size(), to);
        std::ofstream(dir / name) << t;
        return (dir / name).string();
    };
    const auto refused = expect_refused;
    for (const char* f : {"kitchen-one-pass-heads.onnx", "kitchen-mask-classifier.onnx"})
        fs::copy_file(kModels / f, dir / f);
    // A layout whose outputs are not maps of the picture.
    const auto yolo = write("yolo.yaml", "layout: centernet", "layout: yolov8");
    refused([&] { kg::vision::dnn::load_manifest(yolo); }, "yolo.yaml", "ensemble: the yolov8 layout");
    // The model itself, or a file twice: one network weighed double, not an ensemble.
    const auto twice = write("twice.yaml", "[kitchen-covering-heads.onnx]", "[kitchen-one-pass-heads.onnx]");
    refused([&] { kg::vision::dnn::load_manifest(twice); }, "twice.yaml", "already in the ensemble");
    // Not a list.
    const auto scalar = write("scalar.yaml", "[kitchen-covering-heads.onnx]", "kitchen-covering-heads.onnx");
    refused([&] { kg::vision::dnn::load_manifest(scalar); }, "scalar.yaml", "expected a list");
    // A member that is not there, or lacks the output the manifest reads: refused at start-up,
    // naming the manifest and the entry, and the passes the other checks use are left as they were.
    kg::vision::FramePasses passes;
    auto mask = kg::vision::make_detector((kModels / "kitchen-mask.yaml").string(), &passes);
    ASSERT_EQ(passes.networks().count(), 1u);
    const auto missing = write("missing.yaml", "[kitchen-covering-heads.onnx]", "[no-such-heads.onnx]");
    refused([&] { kg::vision::make_detector(missing, &passes); }, "no-such-heads.onnx", "(ensemble[0])");
    const auto other = write("other.yaml", "[kitchen-covering-heads.onnx]", "[kitchen-mask-classifier.onnx]");
    refused([&] { kg::vision::make_detector(other, &passes); }, "other.yaml", "(ensemble[0])");
    EXPECT_EQ(passes.networks().count(), 1u);
    EXPECT_EQ(passes.networks().shared(), 0u);
    // "auto" does not count a manifest as present without every network it names: a package that
    // lacks the second network falls back instead of failing at start-up.
    fs::copy_file(kModels / "kitchen-mask.yaml", dir / "kitchen-mask.yaml");
    fs::copy_file(kModels / "kitchen-head-covering.yaml", dir / "kitchen-head-covering.yaml");
    {
        const EnvGuard env("KG_MODELS_DIR", dir.string());
        EXPECT_EQ(kg::vision::resolve_detector_spec("auto:mask"), (dir / "kitchen-mask.yaml").string());
        EXPECT_NE(kg::vision::resolve_detector_spec("auto:head"),
                  (dir / "kitchen-head-covering.yaml").string());
        fs::copy_file(kModels / "kitchen-covering-heads.onnx", dir / "kitchen-covering-heads.onnx");
        EXPECT_EQ(kg::vision::resolve_detector_spec("auto:head"),
                  (dir / "kitchen-head-covering.yaml").string());
    }
    fs::remove_all(dir);
}

TEST(OwnModels, AManifestThatDisagreesWithItsNetworkIsRefusedAtStartUpNamingIt) {
    // Before, these loaded and then threw on every frame (or on every head in view), which ended the
    // gateway; or they were silently ignored.
    const fs::path dir = fs::temp_directory_path() / ("kg-disagree-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    for (const char* f :
         {"kitchen-one-pass-heads.onnx", "kitchen-covering-heads.onnx", "kitchen-mask-classifier.onnx"})
        fs::copy_file(kModels / f, dir / f, fs::copy_options::overwrite_existing);
    auto write = [&](const char* from_manifest, const std::string& name, const std::string& from,
                     const std::string& to) {
        std::string t = read_text(kModels / from_manifest);
        const auto at = t.find(from);
        EXPECT_NE(at, std::string::npos) << from;
        if (at != std::string::npos) t.replace(at, from.size(), to);
        std::ofstream(dir / name) << t;
        return (dir / name).string();
    };
    auto refused = [](const std::string& file, const std::string& why) {
        try {
            kg::vision::make_detector(file);
            ADD_FAILURE() << file << " was accepted";
        } catch (const kg::vision::dnn::ManifestError& e) {
            EXPECT_NE(std::string(e.what()).find(fs::path(file).filename().string()), std::string::npos)
                << e.what();
            EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
        }
    };
    // The classifier gives three probabilities; a class list of two.
    refused(write("kitchen-mask.yaml", "no-background.yaml", "    - {name: background}", ""),
            "gives 3 probabilities, classifier.classes names 2");
    refused(write("kitchen-mask.yaml", "no-layer.yaml", "  expand: 0.0",
                  "  expand: 0.0\n  output: no_such_layer"),
            "no layer named 'no_such_layer'");
    // The head-covering maps hold two classes; a manifest naming one.
    refused(write("kitchen-head-covering.yaml", "one-class.yaml",
                  "  - {name: bare, check: head_covering, severity: 3}", ""),
            "should be 5");
    // Keys the loader would not read: refused, not ignored.
    refused(write("kitchen-head-covering.yaml", "typo.yaml", "score_threshold: 0.3", "score_treshold: 0.9"),
            "output.score_treshold: unknown key");
    refused(write("kitchen-mask.yaml", "resize.yaml", "  input: {width: 64, height: 64,",
                  "  input: {resize: letterbox, width: 64, height: 64,"),
            "classifier.input.resize: unknown key");
    refused(write("kitchen-mask.yaml", "nan.yaml", "scale: 0.00784313725490196}", "scale: .nan}"),
            "input.scale: expected a finite number");
    // A classifier input its network cannot take (a head network off its stride, as the classifier):
    // OpenCV's bare assertion ended the start-up, naming neither the manifest nor the input.
    refused(
        write("kitchen-mask.yaml", "classifier-size.yaml",
              "  model: kitchen-mask-classifier.onnx\n  input: {width: 64, height: 64,",
              "  model: kitchen-one-pass-heads.onnx\n  output: heads\n  input: {width: 450, height: 448,"),
        "classifier.input: the classifier");
    fs::remove_all(dir);
}
