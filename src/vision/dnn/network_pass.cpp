#include "vision/dnn/network_pass.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <opencv2/imgproc.hpp>

#include "vision/dnn/blob.hpp"
#include "vision/dnn/quiet_opencv.hpp"

namespace kg::vision::dnn {

NetworkInput::NetworkInput(const Manifest& m, std::shared_ptr<const std::uint64_t> frame)
    : input_(m.input),
      rgb_(m.rgb),
      letterbox_(m.letterbox),
      mean_(m.mean),
      scale_(m.scale),
      stamp_(std::move(frame)) {}

bool NetworkInput::feeds_alike(const Manifest& m) const {
    return m.input == input_ && m.rgb == rgb_ && m.letterbox == letterbox_ && m.mean == mean_ &&
           m.scale == scale_;
}

const cv::Mat& NetworkInput::blob(const cv::Mat& bgr) {
    if (stamp_.holds(bgr)) return blob_;
    // Letterbox: scale to fit, pad bottom/right, so boxes map back with one scale factor.
    if (letterbox_) {
        const double s = std::min(static_cast<double>(input_.width) / bgr.cols,
                                  static_cast<double>(input_.height) / bgr.rows);
        const cv::Size fitted(std::max(1, static_cast<int>(bgr.cols * s)),
                              std::max(1, static_cast<int>(bgr.rows * s)));
        cv::resize(bgr, resized_, fitted, 0, 0, cv::INTER_LINEAR);
        cv::copyMakeBorder(resized_, padded_, 0, input_.height - fitted.height, 0,
                           input_.width - fitted.width, cv::BORDER_CONSTANT, cv::Scalar(114, 114, 114));
        fx_ = static_cast<float>(input_.width) / static_cast<float>(fitted.width);
        fy_ = static_cast<float>(input_.height) / static_cast<float>(fitted.height);
    } else {
        cv::resize(bgr, padded_, input_, 0, 0, cv::INTER_LINEAR);
    }
    make_blob(padded_, rgb_, mean_, scale_, blob_);
    ++preparations_;
    stamp_.set(bgr);
    return blob_;
}

NetworkPass::NetworkPass(const Manifest& m, std::shared_ptr<const std::uint64_t> frame,
                         std::shared_ptr<NetworkInput> input)
    : source_(m.source),
      model_(m.model),
      config_(m.config),
      input_(std::move(input)),
      stamp_(std::move(frame)) {
    if (!std::filesystem::exists(model_)) {
        throw ManifestError(fmt::format("{}: model file {} does not exist", source_, model_));
    }
    try {
        net_ = config_.empty() ? cv::dnn::readNet(model_) : cv::dnn::readNet(model_, config_);
    } catch (const cv::Exception& e) {
        throw ManifestError(fmt::format("{}: cannot load {}: {}", source_, model_, e.what()));
    }
    net_.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net_.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
}

bool NetworkPass::feeds_alike(const Manifest& m) const {
    return m.model == model_ && m.config == config_ && input_->feeds_alike(m);
}

void NetworkPass::check_outputs(const std::vector<std::string>& names, const std::string& reader) const {
    // getLayerId() is the lookup forward() itself does for a name in OpenCV 4.x (getPinByAlias),
    // so a name it refuses could not be computed either.
    for (const auto& name : names) {
        if (net_.getLayerId(name) < 0) {
            throw ManifestError(
                fmt::format("{}: output.names: {} has no layer named '{}'", reader, model_, name));
        }
    }
}

cv::dnn::MatShape NetworkPass::output_shape(const std::string& name, const std::string& reader) const {
    std::vector<cv::dnn::MatShape> in, out;
    const cv::Size size = input_->size();
    try {
        const QuietOpenCv quiet;  // the error below says what OpenCV would log
        net_.getLayerShapes(cv::dnn::MatShape{1, 3, size.height, size.width}, net_.getLayerId(name), in, out);
    } catch (const cv::Exception& e) {
        // Otherwise OpenCV's assertion, naming neither the manifest nor the size, ends the start-up.
        throw ManifestError(
            fmt::format("{}{}{} cannot take an input of {}x{} (a size off the network's "
                        "stride? the project's head networks take multiples of 32): {}",
                        reader, reader.empty() ? "" : ": ", model_, size.width, size.height, e.err));
    }
    return out.empty() ? cv::dnn::MatShape{} : out[0];
}

std::vector<std::size_t> NetworkPass::add_outputs(const std::vector<std::string>& names,
                                                  const std::string& reader) {
    // All checked before any is added: a refused reader leaves the pass as its other readers had it.
    check_outputs(names, reader);
    std::vector<std::size_t> at;
    for (const auto& name : names) {
        auto it = std::find(names_.begin(), names_.end(), name);
        if (it == names_.end()) it = names_.insert(names_.end(), name);
        at.push_back(static_cast<std::size_t>(it - names_.begin()));
    }
    stamp_.clear();  // a later reader may want outputs the last run did not compute
    ++readers_;
    return at;
}

const std::vector<cv::Mat>& NetworkPass::run(const cv::Mat& bgr) {
    if (stamp_.holds(bgr)) return outputs_;
    net_.setInput(input_->blob(bgr));
    fx_ = input_->fx();
    fy_ = input_->fy();
    net_.forward(outputs_, names_);
    ++runs_;
    stamp_.set(bgr);
    return outputs_;
}

std::shared_ptr<NetworkPass> NetworkPasses::pass_for(const Manifest& m) {
    for (const auto& p : passes_) {
        if (p->feeds_alike(m)) return p;
    }
    const auto found =
        std::find_if(inputs_.begin(), inputs_.end(), [&](const auto& i) { return i->feeds_alike(m); });
    auto input = found != inputs_.end() ? *found : std::make_shared<NetworkInput>(m, frame_);
    // Kept only once the network has loaded: a refused manifest leaves no input behind.
    auto pass = std::make_shared<NetworkPass>(m, frame_, input);
    if (found == inputs_.end()) inputs_.push_back(std::move(input));
    passes_.push_back(std::move(pass));
    return passes_.back();
}

std::size_t NetworkPasses::count() const {
    return static_cast<std::size_t>(
        std::count_if(passes_.begin(), passes_.end(), [](const auto& p) { return p->readers() > 0; }));
}

std::size_t NetworkPasses::inputs() const {
    return static_cast<std::size_t>(std::count_if(inputs_.begin(), inputs_.end(), [this](const auto& in) {
        return std::any_of(passes_.begin(), passes_.end(),
                           [&](const auto& p) { return p->readers() > 0 && &p->input() == in.get(); });
    }));
}

std::size_t NetworkPasses::shared() const {
    return static_cast<std::size_t>(
        std::count_if(passes_.begin(), passes_.end(), [](const auto& p) { return p->readers() > 1; }));
}

}  // namespace kg::vision::dnn
