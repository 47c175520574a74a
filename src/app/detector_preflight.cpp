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
        errors.push_back({cfg.source_file, 0, 0, key, message});
    };

    for (const char* check : {"mask", "head_covering"}) {
        if (!used.count(check)) continue;
        const auto h = *hygiene_detector(cfg, check);
        try {
            vision::make_detector(h.spec);
            if (h.spec.rfind("classic:", 0) == 0) continue;
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
