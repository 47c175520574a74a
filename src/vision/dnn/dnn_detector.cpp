#include "vision/dnn/dnn_detector.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <opencv2/imgproc.hpp>
#include <stdexcept>

namespace kg::vision::dnn {

namespace {

// Whether a member's output (`got`, at input `at`) can join the mean of the model's (`want`, at
// `model_at`). At the model's input: the same shape. At another: the same channels, and the model's
// pixels per cell (the member's grid is resized to the model's; an input off the network's stride
// would leave its cells off the model's).
bool averageable(const cv::dnn::MatShape& got, cv::Size at, const cv::dnn::MatShape& want,
                 cv::Size model_at) {
    if (at == model_at) return got == want;
    return got.size() == 4 && want.size() == 4 && got[0] == want[0] && got[1] == want[1] &&
           static_cast<long>(got[2]) * model_at.height == static_cast<long>(want[2]) * at.height &&
           static_cast<long>(got[3]) * model_at.width == static_cast<long>(want[3]) * at.width;
}

std::string shape_text(const cv::dnn::MatShape& shape) {
    std::string out = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? "," : "") + std::to_string(shape[i]);
    return out + "]";
}

}  // namespace

DnnDetector::DnnDetector(Manifest manifest, NetworkPasses* passes)
    : DnnDetector(std::move(manifest), passes,
                  passes != nullptr ? nullptr : std::make_unique<NetworkPasses>()) {}

DnnDetector::DnnDetector(Manifest manifest, NetworkPasses* passes, std::unique_ptr<NetworkPasses> own)
    : manifest_(std::move(manifest)), own_passes_(std::move(own)) {
    // NOLINTNEXTLINE(clang-analyzer-core.NullDereference): `own` is made whenever `passes` is null
    NetworkPasses& all = own_passes_ ? *own_passes_ : *passes;
    pass_ = all.pass_for(manifest_);
    const auto names = manifest_.outputs.empty() ? pass_->unconnected_outputs() : manifest_.outputs;
    const std::size_t wanted =
        manifest_.layout == Layout::ultraface || manifest_.layout == Layout::ssd ? 2 : 1;
    if (names.size() != wanted) {
        throw ManifestError(
            fmt::format("{}: the model has {} outputs, the layout reads {}: name them in output.names",
                        manifest_.source, names.size(), wanted));
    }
    // Every network of an ensemble is opened and checked before this reader joins any pass: a
    // refused manifest leaves the passes as their other readers had them.
    pass_->check_outputs(names, manifest_.source);
    std::vector<std::shared_ptr<NetworkPass>> member_passes;
    const auto want =
        manifest_.ensemble.empty() ? cv::dnn::MatShape{} : pass_->output_shape(names[0], manifest_.source);
    for (std::size_t i = 0; i < manifest_.ensemble.size(); ++i) {
        // The member is fed exactly as the model (at its own size, if it has one), so a pass of the
        // same file elsewhere is shared.
        const auto& entry = manifest_.ensemble[i];
        Manifest member = manifest_;
        member.model = entry.model;
        if (!entry.input.empty()) member.input = entry.input;
        member.config.clear();
        member.ensemble.clear();
        member.classifier.reset();
        cv::dnn::MatShape got;
        try {
            auto pass = all.pass_for(member);
            pass->check_outputs(names, manifest_.source);
            got = pass->output_shape(names[0], manifest_.source);
            member_passes.push_back(std::move(pass));
        } catch (const ManifestError& e) {
            throw ManifestError(fmt::format("{} (ensemble[{}])", e.what(), i));
        }
        if (!averageable(got, member.input, want, manifest_.input)) {
            throw ManifestError(
                fmt::format("{}: ensemble[{}]: {} gives '{}' of shape {} at input {}x{} where {} gives {}: "
                            "their maps cannot be averaged",
                            manifest_.source, i, member.model, names[0], shape_text(got), member.input.width,
                            member.input.height, manifest_.model, shape_text(want)));
        }
    }
    if (manifest_.layout == Layout::ssd) priors_ = make_priors(manifest_.priors);
    check_shapes(names);
    outputs_ = pass_->add_outputs(names, manifest_.source);
    for (std::size_t i = 0; i < member_passes.size(); ++i) {
        const auto at = member_passes[i]->add_outputs(names, manifest_.source);
        members_.push_back({std::move(member_passes[i]), at[0], !manifest_.ensemble[i].input.empty()});
    }
    for (const auto& c : manifest_.classes) labels_.push_back(c.label);
}

void DnnDetector::check_shapes(const std::vector<std::string>& names) const {
    // At start-up, from the network's shape inference: a manifest that disagrees with its network
    // (a wrong input size for the priors, a class list of another length) would otherwise fail on
    // every frame, or raise nothing for the classes the network has and the manifest lacks.
    const auto classes = static_cast<int>(manifest_.classes.size());
    const auto mismatch = [&](const std::string& what, const cv::dnn::MatShape& shape, int expected) {
        return ManifestError(fmt::format("{}: output '{}' of {} is {} at input {}x{}: {} should be {}",
                                         manifest_.source, what, manifest_.model, shape_text(shape),
                                         manifest_.input.width, manifest_.input.height, what, expected));
    };
    const auto rows = [](const cv::dnn::MatShape& s) {
        return s.size() == 3 ? s[1] : s.size() == 2 ? s[0] : -1;
    };
    const auto last = [](const cv::dnn::MatShape& s) { return s.size() >= 2 ? s.back() : -1; };
    switch (manifest_.layout) {
        case Layout::ssd: {
            const auto loc = pass_->output_shape(names[0], manifest_.source),
                       conf = pass_->output_shape(names[1], manifest_.source);
            const int priors = static_cast<int>(priors_.size());
            if (rows(loc) >= 0 && rows(loc) != priors)
                throw ManifestError(fmt::format(
                    "{}: the network gives {} boxes at input {}x{}, output.priors make {}: the priors are "
                    "for "
                    "another input size",
                    manifest_.source, rows(loc), manifest_.input.width, manifest_.input.height, priors));
            const int want = classes + (manifest_.background_first ? 1 : 0);
            if (last(conf) >= 0 && last(conf) != want) throw mismatch(names[1], conf, want);
            break;
        }
        case Layout::ultraface: {
            const auto scores = pass_->output_shape(names[1], manifest_.source);
            if (last(scores) >= 0 && last(scores) != classes + 1)
                throw mismatch(names[1], scores, classes + 1);
            break;
        }
        case Layout::yolov5: {
            const auto out = pass_->output_shape(names[0], manifest_.source);
            if (last(out) >= 0 && last(out) != classes + 5) throw mismatch(names[0], out, classes + 5);
            break;
        }
        case Layout::yolov8: {
            const auto out = pass_->output_shape(names[0], manifest_.source);
            if (out.size() == 3 && out[1] != classes + 4) throw mismatch(names[0], out, classes + 4);
            break;
        }
        case Layout::centernet: {
            const auto out = pass_->output_shape(names[0], manifest_.source);
            if (out.size() == 4 && out[1] != classes + 4) throw mismatch(names[0], out, classes + 4);
            break;
        }
    }
}

void DnnDetector::average_members(const cv::Mat& model_maps, const cv::Mat& bgr) {
    model_maps.copyTo(mean_);
    // [1, classes + 4, H, W]: the score maps, then the boxes' offsets and sizes.
    const auto mismatch = [&] {
        return std::runtime_error(
            fmt::format("{}: ensemble: the networks' outputs differ in shape, they cannot be averaged",
                        manifest_.source));
    };
    if (mean_.type() != CV_32F || mean_.dims != 4 || mean_.size[0] != 1) throw mismatch();
    const int rows = mean_.size[2], cols = mean_.size[3];
    const std::size_t plane = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
    const std::size_t scores = plane * manifest_.classes.size();
    const std::size_t n = mean_.total();
    auto* acc = mean_.ptr<float>();
    float summed_scores = 1, summed_boxes = 1;  // how many networks each part of the mean holds
    for (const auto& m : members_) {
        const cv::Mat& o = m.pass->run(bgr)[m.output];
        // The shapes were compared at start-up; this guards the raw float loops below against a
        // network that answers otherwise at run time.
        if (o.type() != CV_32F || !o.isContinuous() || o.dims != 4 || o.size[0] != 1 ||
            o.size[1] != mean_.size[1] || (!m.resized && o.size != mean_.size)) {
            throw mismatch();
        }
        const auto* v = o.ptr<float>();
        if (!m.resized) {
            for (std::size_t i = 0; i < n; ++i) acc[i] += v[i];
            ++summed_boxes;
        } else {
            const std::size_t other = o.total() / static_cast<std::size_t>(o.size[1]);
            for (std::size_t c = 0; c < manifest_.classes.size(); ++c) {
                // A header over the member's plane: cv::resize reads it in place, into a map kept
                // between frames.
                const cv::Mat map(o.size[2], o.size[3], CV_32F, const_cast<float*>(v + c * other));
                cv::resize(map, resized_, {cols, rows}, 0, 0, cv::INTER_LINEAR);
                const auto* r = resized_.ptr<float>();
                float* a = acc + c * plane;
                for (std::size_t i = 0; i < plane; ++i) a[i] += r[i];
            }
        }
        ++summed_scores;
    }
    for (std::size_t i = 0; i < scores; ++i) acc[i] /= summed_scores;
    for (std::size_t i = scores; i < n; ++i) acc[i] /= summed_boxes;
}

void DnnDetector::detect(const cv::Mat& bgr, std::vector<Detection>& out) {
    out.clear();
    const cv::Size in = manifest_.input;
    if (own_passes_) own_passes_->begin_frame();
    const auto& outputs = pass_->run(bgr);
    const cv::Mat* mean = &outputs[outputs_[0]];
    if (!members_.empty()) {
        average_members(*mean, bgr);
        mean = &mean_;
    }
    const cv::Mat& first = *mean;
    const cv::Mat& second = outputs_.size() > 1 ? outputs[outputs_[1]] : first;
    const float fx = pass_->fx(), fy = pass_->fy();

    const float t = manifest_.score_threshold;
    switch (manifest_.layout) {
        case Layout::ultraface:
            decode_ultraface(first, second, t, out);
            break;
        case Layout::ssd:
            decode_ssd(first, second, priors_, manifest_.variances, manifest_.background_first, t, out);
            break;
        case Layout::yolov5:
            decode_yolov5(first, in, t, out);
            break;
        case Layout::yolov8:
            decode_yolov8(first, in, t, out);
            break;
        case Layout::centernet:
            decode_centernet(first, static_cast<int>(manifest_.classes.size()), in, t, out);
            break;
    }
    non_max_suppression(out, manifest_.nms_iou, manifest_.class_agnostic_nms, manifest_.nms_area_offset);
    for (auto& d : out) {
        d.x *= fx;
        d.w *= fx;
        d.y *= fy;
        d.h *= fy;
        // Clip to the image: detectors may reach past the border.
        const float x2 = std::min(1.0f, d.x + d.w), y2 = std::min(1.0f, d.y + d.h);
        d.x = std::clamp(d.x, 0.0f, 1.0f);
        d.y = std::clamp(d.y, 0.0f, 1.0f);
        d.w = std::max(0.0f, x2 - d.x);
        d.h = std::max(0.0f, y2 - d.y);
        if (d.class_id >= 0 && d.class_id < static_cast<int>(labels_.size())) {
            d.label = labels_[static_cast<std::size_t>(d.class_id)];
        }
    }
    // A box wholly past the picture's edge (in a letterbox's padding) has nothing to show.
    std::erase_if(out, [](const Detection& d) { return d.w <= 0 || d.h <= 0; });
}

}  // namespace kg::vision::dnn
