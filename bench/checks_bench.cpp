// Per-frame cost of each check on a 1280x720 frame, on one core (cv::setNumThreads(1)).
// Run: build/bench/kg-bench-checks   (uses ../shared's photos and reference models when present)
// KG_BENCH_CANDIDATE=DIR adds HygieneCandidateBoth(Crowd): both checks with DIR's kitchen-mask.yaml and
// kitchen-head-covering.yaml, to time a network before it replaces a shipped one, in the same run.

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <opencv2/core/utility.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "vision/camera_health.hpp"
#include "vision/detector_check.hpp"
#include "vision/detector_factory.hpp"
#include "vision/dnn/dnn_detector.hpp"
#include "vision/dnn/manifest.hpp"
#include "vision/frame_passes.hpp"
#include "vision/motion.hpp"
#include "vision/region_checks.hpp"

namespace fs = std::filesystem;
using namespace kg;

namespace {

fs::path shared_dir() {
    const char* env = std::getenv("KG_SHARED_DIR");
    return env != nullptr && *env != 0 ? fs::path(env) : fs::path(KG_SOURCE_DIR) / ".." / "shared";
}

// A synthetic kitchen picture (tiled wall, sensor noise), without a person.
cv::Mat kitchen720() {
    cv::Mat img(720, 1280, CV_8UC3, cv::Scalar(140, 150, 160));
    for (int y = 0; y < 720; y += 48) cv::line(img, {0, y}, {1279, y}, cv::Scalar(90, 90, 90), 3);
    cv::RNG rng(1);
    cv::Mat noise(img.size(), img.type());
    rng.fill(noise, cv::RNG::NORMAL, 0, 6);
    cv::add(img, noise, img);
    return img;
}

// A real photo of people (from the mask set) scaled to 720p when ../shared is there, else
// kitchen720().
const cv::Mat& frame720() {
    static const cv::Mat frame = [] {
        cv::Mat img;
        const auto dir = shared_dir() / "datasets/mask-yolo/valid/images";
        if (fs::is_directory(dir)) {
            for (const auto& e : fs::directory_iterator(dir)) {
                img = cv::imread(e.path().string());
                if (!img.empty()) break;
            }
        }
        if (img.empty()) img = kitchen720();
        cv::resize(img, img, {1280, 720});
        return img;
    }();
    return frame;
}

// The photo of the mask set with the most labelled faces (16: a crowd), or nothing without ../shared.
struct LabelledPhoto {
    cv::Mat image;
    std::vector<cv::Rect2f> faces;  // normalised
};
const LabelledPhoto& crowd_photo() {
    static const LabelledPhoto photo = [] {
        const auto dir = shared_dir() / "datasets/mask-yolo/valid";
        std::vector<fs::path> images;
        if (fs::is_directory(dir / "images"))
            for (const auto& e : fs::directory_iterator(dir / "images")) images.push_back(e.path());
        std::sort(images.begin(), images.end());
        LabelledPhoto best;
        fs::path best_path;
        for (const auto& image : images) {
            std::ifstream labels(dir / "labels" / (image.stem().string() + ".txt"));
            std::vector<cv::Rect2f> faces;
            int cls = 0;
            float cx = 0, cy = 0, w = 0, h = 0;
            while (labels >> cls >> cx >> cy >> w >> h) faces.emplace_back(cx - w / 2, cy - h / 2, w, h);
            if (faces.size() > best.faces.size()) best.faces = std::move(faces), best_path = image;
        }
        if (!best_path.empty()) best.image = cv::imread(best_path.string());
        if (best.image.empty()) best.faces.clear();
        return best;
    }();
    return photo;
}

// That photo scaled to 720p: what the checks cost when many people are in view, each head adding a
// classifier run. Empty without ../shared.
const cv::Mat& crowd720() {
    static const cv::Mat frame = [] {
        cv::Mat img;
        if (!crowd_photo().image.empty()) cv::resize(crowd_photo().image, img, {1280, 720});
        return img;
    }();
    return frame;
}

// The first network of the mask check alone: the heads it finds, each a classifier run.
std::vector<vision::Detection> heads_in(const cv::Mat& picture) {
    auto first = vision::dnn::load_manifest(std::string(KG_SOURCE_DIR) + "/models/kitchen-mask.yaml");
    first.classifier.reset();
    std::vector<vision::Detection> heads;
    vision::dnn::DnnDetector(std::move(first)).detect(picture, heads);
    return heads;
}

// `people` heads on the synthetic kitchen wall: the crowded photo's labelled faces with their heads
// (1.6x the face box, moved inside the photo where it reaches past an edge, so that each keeps its
// shape), 120 px square, eight to a row, taken in turn. The cost of a frame against the number of
// people in view, where the real photos mix faces with heads the first network finds beside them.
constexpr int kMostPeople = 24;  // three rows of eight
cv::Mat people720(int people) {
    if (people < 0 || people > kMostPeople)
        throw std::invalid_argument(fmt::format("{} people: 0 to {} fit the frame", people, kMostPeople));
    const auto& photo = crowd_photo();
    if (photo.image.empty() || photo.faces.empty()) return {};
    cv::Mat frame = kitchen720();
    const int cols = photo.image.cols, rows = photo.image.rows;
    for (int i = 0; i < people; ++i) {
        const auto& f = photo.faces[static_cast<std::size_t>(i) % photo.faces.size()];
        const int w = std::min(cols, static_cast<int>(f.width * 1.6f * cols)),
                  h = std::min(rows, static_cast<int>(f.height * 1.6f * rows));
        if (w < 2 || h < 2) continue;
        const int x = std::clamp(static_cast<int>((f.x + f.width / 2) * cols) - w / 2, 0, cols - w),
                  y = std::clamp(static_cast<int>((f.y + f.height / 2) * rows) - h / 2, 0, rows - h);
        cv::resize(photo.image(cv::Rect(x, y, w, h)),
                   frame(cv::Rect(20 + (i % 8) * 155, 40 + (i / 8) * 220, 120, 120)), {120, 120}, 0, 0,
                   cv::INTER_AREA);
    }
    return frame;
}

// crowd720() and people720() are empty without ../shared: their benchmarks say so instead of timing
// nothing.
bool skipped_without(benchmark::State& state, const cv::Mat& picture) {
    if (!picture.empty()) return false;
    state.SkipWithError("no labelled photo read from ../shared/datasets/mask-yolo/valid (KG_SHARED_DIR)");
    return true;
}

ingest::Frame make_frame(const cv::Mat& picture = frame720()) {
    ingest::Frame f;
    picture.copyTo(f.image);
    f.time = Clock::now();
    f.steady = std::chrono::steady_clock::now();
    return f;
}

void run_check(benchmark::State& state, vision::Check& check, vision::MotionMap* motion,
               const cv::Mat& picture = frame720()) {
    cv::setNumThreads(1);
    auto frame = make_frame(picture);
    std::vector<vision::Observation> out;
    for (auto _ : state) {
        out.clear();
        if (motion != nullptr) motion->update(frame.image);
        check.analyse(frame, out);
        frame.time += std::chrono::milliseconds(500);
        benchmark::DoNotOptimize(out.data());
    }
}

void BM_CameraHealth(benchmark::State& state) {
    vision::CameraHealthCheck check(config::Health{});
    run_check(state, check, nullptr);
}

void BM_MotionMap(benchmark::State& state) {
    cv::setNumThreads(1);
    vision::MotionMap motion;
    const auto frame = make_frame();
    for (auto _ : state) motion.update(frame.image);
}

void detector_bench(benchmark::State& state, const std::string& spec, const char* violation,
                    const cv::Mat& picture = frame720()) {
    if (skipped_without(state, picture)) return;
    std::unique_ptr<vision::Detector> detector;
    try {
        setenv("KG_SHARED_DIR", shared_dir().string().c_str(), 0);
        detector = vision::make_detector(spec);
    } catch (const std::exception& e) {
        state.SkipWithError(e.what());
        return;
    }
    // Gating off: the cost of a frame on which the detector runs.
    vision::DetectorCheck check("bench", std::move(detector), {{violation, "bench", violation, 0}}, nullptr,
                                Duration(0));
    run_check(state, check, nullptr, picture);
}

void BM_MaskClassic(benchmark::State& s) { detector_bench(s, "classic:mask", "no_mask"); }
void BM_HeadClassic(benchmark::State& s) { detector_bench(s, "classic:head", "bare"); }
void BM_MaskAizoo(benchmark::State& s) {
    detector_bench(s, std::string(KG_SOURCE_DIR) + "/models/reference/aizoo-face-mask.yaml", "no_mask");
}
void BM_MaskAizooCrowd(benchmark::State& s) {
    detector_bench(s, std::string(KG_SOURCE_DIR) + "/models/reference/aizoo-face-mask.yaml", "no_mask",
                   crowd720());
}
void BM_MaskUltraFace640(benchmark::State& s) {
    detector_bench(s, std::string(KG_SOURCE_DIR) + "/models/reference/ultraface-masked-face-rfb-640.yaml",
                   "no_mask");
}

// The project's own models (models/kitchen-*.yaml): one head detector run per check, plus the mask
// classifier on every head the detector finds in this frame.
void BM_MaskOwn(benchmark::State& s) {
    detector_bench(s, std::string(KG_SOURCE_DIR) + "/models/kitchen-mask.yaml", "no_mask");
}
void BM_HeadOwn(benchmark::State& s) {
    detector_bench(s, std::string(KG_SOURCE_DIR) + "/models/kitchen-head-covering.yaml", "bare");
}
// Both hygiene checks with the own models on every frame, and the motion map they are gated by:
// what a camera with mask and head-covering checks costs per analysed frame when people move. As in
// the gateway (CameraPipeline), the checks share a network pass when their manifests feed one
// network alike: the default manifests do (one head network), models/two-networks/ does not.
void hygiene_both(benchmark::State& state, const std::string& mask_spec, const std::string& head_spec,
                  const cv::Mat& picture = frame720()) {
    if (skipped_without(state, picture)) return;
    cv::setNumThreads(1);
    vision::MotionMap motion;
    vision::FramePasses passes;
    std::unique_ptr<vision::Detector> mask, head;
    try {
        mask = vision::make_detector(mask_spec, &passes);
        head = vision::make_detector(head_spec, &passes);
    } catch (const std::exception& e) {
        state.SkipWithError(e.what());
        return;
    }
    vision::DetectorCheck m("mask", std::move(mask), {{"no_mask", "mask", "no_mask", 0}}, nullptr,
                            Duration(0));
    vision::DetectorCheck h("head_covering", std::move(head), {{"bare", "head_covering", "bare_head", 0}},
                            nullptr, Duration(0));
    // Printed, so that a run whose manifests stopped sharing their network shows it.
    state.counters["shared_passes"] = static_cast<double>(passes.networks().shared());
    state.counters["network_passes"] = static_cast<double>(passes.networks().count());
    auto frame = make_frame(picture);
    std::vector<vision::Observation> out;
    for (auto _ : state) {
        out.clear();
        motion.update(frame.image);
        passes.begin_frame();
        m.analyse(frame, out);
        h.analyse(frame, out);
        frame.time += std::chrono::milliseconds(500);
        benchmark::DoNotOptimize(out.data());
    }
}
void hygiene_both(benchmark::State& state, const std::string& folder, const cv::Mat& picture = frame720()) {
    hygiene_both(state, folder + "/kitchen-mask.yaml", folder + "/kitchen-head-covering.yaml", picture);
}
void BM_HygieneOwnBoth(benchmark::State& s) { hygiene_both(s, std::string(KG_SOURCE_DIR) + "/models"); }
// The crowded frame: the classifier runs once per head the first network finds.
void BM_HygieneOwnBothCrowd(benchmark::State& s) {
    hygiene_both(s, std::string(KG_SOURCE_DIR) + "/models", crowd720());
}
// Both checks against the number of people in view (the argument, people720()). `heads`: the boxes
// the first network finds there, each a classifier run.
void BM_HygieneOwnBothPeople(benchmark::State& s) {
    cv::Mat picture;
    try {
        picture = people720(static_cast<int>(s.range(0)));
        if (skipped_without(s, picture)) return;
        cv::setNumThreads(1);
        s.counters["heads"] = static_cast<double>(heads_in(picture).size());
    } catch (const std::exception& e) {  // a model missing, a count past the frame: this one only
        s.SkipWithError(e.what());
        return;
    }
    hygiene_both(s, std::string(KG_SOURCE_DIR) + "/models", picture);
}
void BM_HygieneOwnTwoNetworks(benchmark::State& s) {
    hygiene_both(s, std::string(KG_SOURCE_DIR) + "/models/two-networks");
}
// The fallback back-end with both checks: one frontal-face search per frame between them.
void BM_HygieneClassicBoth(benchmark::State& s) { hygiene_both(s, "classic:mask", "classic:head"); }

void BM_MaskGatedStill(benchmark::State& state) {
    // A still picture: after the first frame the motion gate skips the detector.
    vision::MotionMap motion;
    vision::DetectorCheck check("mask", vision::make_detector("classic:mask"),
                                {{"no_mask", "mask", "no_mask", 0}}, &motion, std::chrono::hours(1));
    run_check(state, check, &motion);
}

void BM_Cleanliness(benchmark::State& state) {
    vision::MotionMap motion;
    vision::ReferenceChangeCheck check(
        "cleanliness", "dirty",
        {{"floor", vision::MotionMap::region_mask({{0, 0.5f}, {1, 0.5f}, {1, 1}, {0, 1}})}}, motion, 0.004,
        {});
    run_check(state, check, &motion);
}

void BM_AfterHoursMotion(benchmark::State& state) {
    vision::MotionMap motion;
    vision::MotionCheck check({{"", {}}}, motion, 0.0005);
    run_check(state, check, &motion);
}

void BM_Unattended(benchmark::State& state) {
    vision::MotionMap motion;
    vision::UnattendedCheck check(
        {{"stove", vision::MotionMap::region_mask({{0.6f, 0.2f}, {0.95f, 0.2f}, {0.95f, 0.95f}})}}, motion,
        0.004, std::chrono::minutes(5));
    run_check(state, check, &motion);
}

// What every camera with camera health and a motion-gated check pays per frame before the checks:
// the motion map and camera health, each converting the frame to grey (Separate, as before
// 2026-12-04) or both reading one FramePasses' grey picture (Shared, as the pipeline does).
void health_and_motion(benchmark::State& state, bool shared) {
    cv::setNumThreads(1);
    vision::FramePasses passes;
    vision::MotionMap motion(shared ? &passes : nullptr);
    vision::CameraHealthCheck health(config::Health{}, shared ? &passes : nullptr);
    auto frame = make_frame();
    std::vector<vision::Observation> out;
    for (auto _ : state) {
        out.clear();
        passes.begin_frame();
        motion.update(frame.image);
        health.analyse(frame, out);
        frame.steady += std::chrono::milliseconds(500);
        benchmark::DoNotOptimize(out.data());
    }
}

void BM_HealthAndMotionSeparate(benchmark::State& state) { health_and_motion(state, false); }
void BM_HealthAndMotionShared(benchmark::State& state) { health_and_motion(state, true); }

}  // namespace

BENCHMARK(BM_CameraHealth)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MotionMap)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HealthAndMotionSeparate)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HealthAndMotionShared)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MaskClassic)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HeadClassic)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MaskAizoo)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MaskAizooCrowd)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MaskUltraFace640)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MaskOwn)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HeadOwn)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HygieneOwnBoth)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HygieneOwnBothCrowd)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HygieneOwnBothPeople)
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Arg(4)
    ->Arg(6)
    ->Arg(8)
    ->Arg(12)
    ->Arg(16)
    ->Arg(24)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HygieneOwnTwoNetworks)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_HygieneClassicBoth)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MaskGatedStill)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Cleanliness)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AfterHoursMotion)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Unattended)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
    if (const char* dir = std::getenv("KG_BENCH_CANDIDATE"); dir != nullptr && *dir != 0) {
        auto candidate = [folder = std::string(dir)](benchmark::State& s) { hygiene_both(s, folder); };
        benchmark::RegisterBenchmark("BM_HygieneCandidateBoth", candidate)->Unit(benchmark::kMillisecond);
        auto crowd = [folder = std::string(dir)](benchmark::State& s) {
            hygiene_both(s, folder, crowd720());
        };
        benchmark::RegisterBenchmark("BM_HygieneCandidateBothCrowd", crowd)->Unit(benchmark::kMillisecond);
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
