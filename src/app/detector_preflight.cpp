#include "app/detector_preflight.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <set>

#include "vision/detector_factory.hpp"
#include "vision/dnn/manifest.hpp"

namespace kg::app {
namespace {

// The labels a model's detections can carry, and the checks its classes feed.
struct ModelClasses {
    std::set<std::string> labels;
    std::set<std::string> checks;
};

ModelClasses classes_of(const vision::dnn::Manifest& m) {
    ModelClasses out;
    for (const auto& c : vision::dnn::detection_classes(m)) {
        out.labels.insert(c.label);
        if (!c.check.empty()) out.checks.insert(c.check);
    }
    return out;
}

// One run on a plain picture of a camera's usual size: a network that answers otherwise than its
// manifest says (an output its decoder cannot read) fails here, naming the key, instead of on the
// first frame of the running gateway. (A plain picture has no head in it, so a two-stage model's
// classifier is checked at construction instead, from the network's shapes.)
void dry_run(vision::Detector& detector) {
    const cv::Mat plain(720, 1280, CV_8UC3, cv::Scalar(114, 114, 114));
    std::vector<vision::Detection> found;
    detector.detect(plain, found);
}

std::string joined(const std::set<std::string>& items) {
    std::string out;
    for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
    return out.empty() ? "none" : out;
}

}  // namespace

std::optional<HygieneDetector> hygiene_detector(const config::Gateway& cfg, const std::string& check) {
    const auto resolved = [](const std::string& configured, const char* automatic) {
        return vision::resolve_detector_spec(configured == "auto" ? std::string(automatic) : configured);
    };
    if (check == "mask")
        return HygieneDetector{"detectors.mask", resolved(cfg.mask_detector, "auto:mask"), "no_mask",
                               "no_mask"};
    if (check == "head_covering") {
        return HygieneDetector{"detectors.head_covering", resolved(cfg.head_detector, "auto:head"), "bare",
                               "bare_head"};
    }
    return std::nullopt;
}

std::vector<config::ConfigError> check_detectors(const config::Gateway& cfg) {
    std::set<std::string> used;  // check names of the enabled cameras
    for (const auto& cam : cfg.cameras) {
        if (cam.enabled) used.insert(cam.checks.begin(), cam.checks.end());
    }
    std::vector<config::ConfigError> errors;
    const auto fail = [&](const std::string& key, const std::string& message) {
        // At the key's place in the file; a detector the file does not name ("auto") has none.
        const auto place = cfg.detector_places.find(key);
        const auto [line, column] = place != cfg.detector_places.end() ? place->second : std::pair{0, 0};
        errors.push_back({cfg.source_file, line, column, key, message});
    };

    for (const char* check : {"mask", "head_covering"}) {
        if (!used.count(check)) continue;
        const auto h = *hygiene_detector(cfg, check);
        try {
            const auto detector = vision::make_detector(h.spec);
            if (h.spec.rfind("classic:", 0) == 0) continue;
            dry_run(*detector);
            const auto classes = classes_of(vision::dnn::load_manifest(h.spec));
            if (!classes.labels.count(h.alarm_label)) {
                fail(h.key, fmt::format("{}: no class labelled '{}' (its labels: {}), so the {} check would "
                                        "never raise an alarm",
                                        h.spec, h.alarm_label, joined(classes.labels), check));
            }
        } catch (const std::exception& e) {
            fail(h.key, fmt::format("the {} check's detector cannot be loaded: {}", check, e.what()));
        }
    }
    for (const auto& [name, path] : cfg.models) {
        if (!used.count("model:" + name)) continue;
        const auto key = "models." + name;
        try {
            dry_run(*vision::make_detector(path));
            const auto classes = classes_of(vision::dnn::load_manifest(path));
            if (classes.checks.empty()) {
                fail(key,
                     fmt::format("{}: no class is mapped to a check (`check:` under classes), so the model "
                                 "would raise nothing",
                                 path));
            }
        } catch (const std::exception& e) {
            fail(key, fmt::format("cannot be loaded: {}", e.what()));
        }
    }
    // A reference picture is read when the camera's check is built: a file that is missing or not
    // a picture would stop the gateway at start, or at a reload.
    // Said once where it is written: one under `defaults` was said for each camera, without a line.
    std::set<std::string> said;
    for (std::size_t i = 0; i < cfg.cameras.size(); ++i) {
        const auto& cam = cfg.cameras[i];
        const auto uses = [&](const char* check) {
            return std::find(cam.checks.begin(), cam.checks.end(), check) != cam.checks.end();
        };
        const auto& scene = cam.scene;
        // A configuration made otherwise than from a file has no key of its own: the camera's.
        const auto key =
            scene.reference_key.empty() ? fmt::format("cameras[{}].scene.reference", i) : scene.reference_key;
        if (!cam.enabled || scene.reference.empty() || !(uses("cleanliness") || uses("bin_lid")) ||
            said.count(key) != 0)
            continue;
        std::error_code ec;
        const bool there = std::filesystem::exists(scene.reference, ec);  // imread says nothing of why
        if (there && !cv::imread(scene.reference, cv::IMREAD_COLOR).empty()) continue;
        said.insert(key);
        errors.push_back({cfg.source_file, scene.reference_place.first, scene.reference_place.second, key,
                          fmt::format("camera {}: {} {}", cam.id, scene.reference,
                                      there ? "cannot be read as a picture" : "is not there")});
    }
    return errors;
}

config::Gateway load_and_check(const std::string& path) {
    auto cfg = config::load_file(path);
    auto errors = check_detectors(cfg);
    if (!errors.empty()) throw config::ConfigInvalid(std::move(errors));
    return cfg;
}

}  // namespace kg::app
