#include "vision/detector_factory.hpp"

#include <fmt/format.h>

#include <stdexcept>

#include "vision/classic/classic_detectors.hpp"
#include "vision/dnn/dnn_detector.hpp"

namespace kg::vision {

std::unique_ptr<Detector> make_detector(const std::string& spec) {
    if (spec == "classic:mask") return std::make_unique<classic::MaskDetector>();
    if (spec == "classic:head") return std::make_unique<classic::HeadCoveringDetector>();
    if (spec.rfind("classic:", 0) == 0) {
        throw std::runtime_error(
            fmt::format("unknown classic detector '{}' (classic:mask, classic:head)", spec));
    }
    return std::make_unique<dnn::DnnDetector>(dnn::load_manifest(spec));
}

}  // namespace kg::vision
