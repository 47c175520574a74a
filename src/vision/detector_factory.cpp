#include "vision/detector_factory.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <system_error>

#include "vision/classic/classic_detectors.hpp"
#include "vision/dnn/dnn_detector.hpp"
#include "vision/dnn/two_stage_detector.hpp"
#include "vision/frame_passes.hpp"

namespace kg::vision {
namespace fs = std::filesystem;
namespace {

struct OwnModel {
    const char* check;
    const char* manifest;
    const char* classic;
};
constexpr OwnModel kOwnModels[] = {
    {"mask", "kitchen-mask.yaml", "classic:mask"},
    {"head", "kitchen-head-covering.yaml", "classic:head"},
};

// A manifest counts as present only with its network files: a package built without them must
// fall back to the classic back-end, not fail at start-up.
bool usable(const fs::path& manifest) {
    std::error_code ec;
    if (!fs::is_regular_file(manifest, ec)) return false;
    try {
        const auto m = dnn::load_manifest(manifest.string());
        return fs::is_regular_file(m.model, ec) &&
               std::all_of(m.ensemble.begin(), m.ensemble.end(),
                           [&](const auto& e) { return fs::is_regular_file(e.model, ec); }) &&
               (!m.classifier || fs::is_regular_file(m.classifier->model, ec));
    } catch (const std::exception&) {
        return false;
    }
}

}  // namespace

std::vector<fs::path> own_model_dirs() {
    std::vector<fs::path> dirs;
    if (const char* env = std::getenv("KG_MODELS_DIR"); env != nullptr && *env != '\0')
        dirs.emplace_back(env);
    std::error_code ec;
    const auto exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        const auto bin = exe.parent_path();
        dirs.push_back((bin / ".." / "share" / "kitchen-gateway" / "models").lexically_normal());
        dirs.push_back((bin / ".." / ".." / "models").lexically_normal());
    }
    return dirs;
}

std::string resolve_detector_spec(const std::string& spec) {
    if (spec.rfind("auto:", 0) != 0) return spec;
    const std::string check = spec.substr(5);
    for (const auto& own : kOwnModels) {
        if (check != own.check) continue;
        for (const auto& dir : own_model_dirs()) {
            if (usable(dir / own.manifest)) return (dir / own.manifest).string();
        }
        return own.classic;
    }
    throw std::runtime_error(fmt::format("unknown automatic detector '{}' (auto:mask, auto:head)", spec));
}

std::string auto_fallback_reason(const std::string& spec) {
    if (spec.rfind("auto:", 0) != 0) return "";
    for (const auto& own : kOwnModels) {
        if (spec.substr(5) != own.check) continue;
        std::string dirs;
        for (const auto& dir : own_model_dirs()) {
            if (usable(dir / own.manifest)) return "";
            dirs += (dirs.empty() ? "" : ", ") + dir.string();
        }
        return fmt::format("{} with its network files, in {} (or $KG_MODELS_DIR)", own.manifest,
                           dirs.empty() ? std::string("no folder") : dirs);
    }
    return "";
}

std::unique_ptr<Detector> make_detector(const std::string& spec_in, FramePasses* passes) {
    const std::string spec = resolve_detector_spec(spec_in);
    const auto faces = [&] { return passes ? passes->frontal_faces(classic::kCascadeDir) : nullptr; };
    if (spec == "classic:mask") return std::make_unique<classic::MaskDetector>(classic::kCascadeDir, faces());
    if (spec == "classic:head")
        return std::make_unique<classic::HeadCoveringDetector>(classic::kCascadeDir, faces());
    if (spec.rfind("classic:", 0) == 0) {
        throw std::runtime_error(
            fmt::format("unknown classic detector '{}' (classic:mask, classic:head)", spec));
    }
    auto manifest = dnn::load_manifest(spec);
    dnn::NetworkPasses* networks = passes ? &passes->networks() : nullptr;
    if (manifest.classifier) return std::make_unique<dnn::TwoStageDetector>(std::move(manifest), networks);
    return std::make_unique<dnn::DnnDetector>(std::move(manifest), networks);
}

}  // namespace kg::vision
