#include "app/detector_preflight.hpp"

#include <fmt/format.h>

#include <algorithm>
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
    const auto& classes = m.classifier ? m.classifier->classes : m.classes;
    for (const auto& c : classes) {
        out.labels.insert(c.label);
        if (!c.check.empty()) out.checks.insert(c.check);
    }
    return out;
}

std::string joined(const std::set<std::string>& items) {
    std::string out;
    for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
    return out.empty() ? "none" : out;
}

}  // namespace

std::vector<config::ConfigError> check_detectors(const config::Gateway& cfg) {
    std::set<std::string> used;  // check names of the enabled cameras
    for (const auto& cam : cfg.cameras) {
        if (cam.enabled) used.insert(cam.checks.begin(), cam.checks.end());
    }
    std::vector<config::ConfigError> errors;
    const auto fail = [&](const std::string& key, const std::string& message) {
        errors.push_back({cfg.source_file, 0, 0, key, message});
    };

    // The hygiene checks raise on one label of their detector's (camera_pipeline.cpp).
    struct Hygiene {
        const char* check;
        const char* key;
        const std::string& configured;
        const char* automatic;
        const char* label;
    };
    for (const auto& h :
         {Hygiene{"mask", "detectors.mask", cfg.mask_detector, "auto:mask", "no_mask"},
          Hygiene{"head_covering", "detectors.head_covering", cfg.head_detector, "auto:head", "bare"}}) {
        if (!used.count(h.check)) continue;
        const std::string spec =
            vision::resolve_detector_spec(h.configured == "auto" ? std::string(h.automatic) : h.configured);
        try {
            vision::make_detector(spec);
            if (spec.rfind("classic:", 0) == 0) continue;
            const auto classes = classes_of(vision::dnn::load_manifest(spec));
            if (!classes.labels.count(h.label)) {
                fail(h.key, fmt::format("{}: no class labelled '{}' (its labels: {}), so the {} check would "
                                        "never raise an alarm",
                                        spec, h.label, joined(classes.labels), h.check));
            }
        } catch (const std::exception& e) {
            fail(h.key, fmt::format("the {} check's detector cannot be loaded: {}", h.check, e.what()));
        }
    }
    for (const auto& [name, path] : cfg.models) {
        if (!used.count("model:" + name)) continue;
        const auto key = "models." + name;
        try {
            vision::make_detector(path);
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
    return errors;
}

config::Gateway load_and_check(const std::string& path) {
    auto cfg = config::load_file(path);
    auto errors = check_detectors(cfg);
    if (!errors.empty()) throw config::ConfigInvalid(std::move(errors));
    return cfg;
}

}  // namespace kg::app
