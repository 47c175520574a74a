#pragma once
// Builds a detector from a spec: "classic:mask", "classic:head", or the path of a model manifest.

#include <memory>
#include <string>

#include "vision/detection.hpp"

namespace kg::vision {

// Throws std::runtime_error (or dnn::ManifestError) saying what is wrong with the spec.
std::unique_ptr<Detector> make_detector(const std::string& spec);

}  // namespace kg::vision
