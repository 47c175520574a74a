#pragma once
// Builds a detector from a spec: "classic:mask", "classic:head", "auto:mask", "auto:head", or the
// path of a model manifest.

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "vision/detection.hpp"

namespace kg::vision {

class FramePasses;

// Where the project's own models are looked for, in order: $KG_MODELS_DIR, then beside the
// executable as installed (<prefix>/bin -> <prefix>/share/kitchen-gateway/models), then the
// checkout a build folder sits in (<checkout>/<build>/<folder>/<exe> -> <checkout>/models).
std::vector<std::filesystem::path> own_model_dirs();

// "auto:mask" -> the project's own mask model (models/kitchen-mask.yaml) when it and its network
// files are present, else "classic:mask"; "auto:head" likewise with models/kitchen-head-covering.yaml
// and "classic:head". Any other spec is returned unchanged.
std::string resolve_detector_spec(const std::string& spec);
// For an "auto:" spec that falls back to the classic back-end, why: which manifest was looked for
// where ("kitchen-mask.yaml with its network files, in /a, /b"). Empty when the own model is found,
// or for any other spec.
std::string auto_fallback_reason(const std::string& spec);

// Throws std::runtime_error (or dnn::ManifestError) saying what is wrong with the spec. With
// `passes`, detectors that share work run it once per frame between them: model detectors that feed
// the same network alike, the two classic detectors' frontal-face search (frame_passes.hpp: the
// caller calls passes->begin_frame() for every new picture).
std::unique_ptr<Detector> make_detector(const std::string& spec, FramePasses* passes = nullptr);

}  // namespace kg::vision
