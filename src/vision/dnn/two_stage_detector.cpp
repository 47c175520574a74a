#include "vision/dnn/two_stage_detector.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <opencv2/dnn/shape_utils.hpp>
#include <opencv2/imgproc.hpp>

#include "vision/dnn/blob.hpp"
#include "vision/dnn/quiet_opencv.hpp"

namespace kg::vision::dnn {
namespace {

// The first stage is the same manifest without its classifier: its boxes, not yet decided.
Manifest first_stage(Manifest m) {
    m.classifier.reset();
    return m;
}

}  // namespace

TwoStageDetector::TwoStageDetector(Manifest manifest, NetworkPasses* passes)
    : spec_(manifest.classifier
                ? *manifest.classifier
                : throw ManifestError(fmt::format("{}: no classifier section", manifest.source))),
      source_(manifest.source),
      stage1_(first_stage(std::move(manifest)), passes) {
    if (!std::filesystem::exists(spec_.model)) {
        throw ManifestError(fmt::format("{}: classifier model {} does not exist", source_, spec_.model));
    }
    try {
        classifier_ = cv::dnn::readNet(spec_.model);
    } catch (const cv::Exception& e) {
        throw ManifestError(fmt::format("{}: cannot load classifier {}: {}", source_, spec_.model, e.what()));
    }
    classifier_.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    classifier_.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    output_names_ =
        spec_.output.empty() ? classifier_.getUnconnectedOutLayersNames() : std::vector{spec_.output};
    if (output_names_.size() != 1) {
        throw ManifestError(fmt::format("{}: the classifier has {} outputs: name one in classifier.output",
                                        source_, output_names_.size()));
    }
    if (!spec_.output.empty() && classifier_.getLayerId(spec_.output) < 0) {
        throw ManifestError(fmt::format("{}: classifier.output: {} has no layer named '{}'", source_,
                                        spec_.model, spec_.output));
    }
    // At start-up rather than at the first head in view: a class list of another length than the
    // classifier's output would otherwise fail on every box.
    std::vector<cv::dnn::MatShape> in, out;
    const cv::Size size = spec_.input.size;
    try {
        const QuietOpenCv quiet;  // the error below says what OpenCV would log
        classifier_.getLayerShapes(cv::dnn::MatShape{1, 3, size.height, size.width},
                                   classifier_.getLayerId(output_names_[0]), in, out);
    } catch (const cv::Exception& e) {
        // Otherwise OpenCV's assertion, naming neither the manifest nor the size, ended the start-up
        // (or kitchen-eval).
        throw ManifestError(
            fmt::format("{}: classifier.input: the classifier {} cannot take an input of {}x{}: {}", source_,
                        spec_.model, size.width, size.height, e.err));
    }
    if (!out.empty() && static_cast<std::size_t>(cv::dnn::total(out[0])) != spec_.classes.size()) {
        throw ManifestError(
            fmt::format("{}: the classifier {} gives {} probabilities, classifier.classes names {}", source_,
                        spec_.model, cv::dnn::total(out[0]), spec_.classes.size()));
    }
    for (const auto& c : spec_.classes) {
        if (c.name == "background") {
            class_id_.push_back(-1);
        } else {
            class_id_.push_back(static_cast<int>(labels_.size()));
            labels_.push_back(c.label);
        }
    }
}

void TwoStageDetector::cut(const cv::Mat& bgr, const Detection& d) {
    const float iw = static_cast<float>(bgr.cols), ih = static_cast<float>(bgr.rows);
    const float cx = (d.x + d.w / 2) * iw, cy = (d.y + d.h / 2) * ih;
    float w = d.w * iw * (1 + 2 * spec_.expand), h = d.h * ih * (1 + 2 * spec_.expand);
    if (spec_.square) w = h = std::max(w, h);
    w = std::max(w, 2.0f);
    h = std::max(h, 2.0f);
    const cv::Size size = spec_.input.size;
    const cv::Rect r(static_cast<int>(std::lround(cx - w / 2)), static_cast<int>(std::lround(cy - h / 2)),
                     std::max(2, static_cast<int>(std::lround(w))),
                     std::max(2, static_cast<int>(std::lround(h))));
    if ((r & cv::Rect(0, 0, bgr.cols, bgr.rows)) == r) {
        // Inside the picture: area averaging (no aliasing when a close-up head is shrunk to
        // 64 px). Training framed its crops at 96 px, bilinear, then averaged them down to 64: the
        // two differ by less than the classifier's own noise (0.02 in probability, median).
        cv::resize(bgr(r), crop_, size, 0, 0, cv::INTER_AREA);
    } else {
        // A head at the border: map the square onto the input, repeating the edge pixels, so the
        // head keeps its shape instead of being stretched.
        const double sx = static_cast<double>(size.width) / r.width,
                     sy = static_cast<double>(size.height) / r.height;
        const cv::Matx23d m(sx, 0, -r.x * sx, 0, sy, -r.y * sy);
        cv::warpAffine(bgr, crop_, m, size, cv::INTER_LINEAR, cv::BORDER_REPLICATE);
    }
}

void TwoStageDetector::detect(const cv::Mat& bgr, std::vector<Detection>& out) {
    stage1_.detect(bgr, found_);
    classify(bgr, found_, out);
}

void TwoStageDetector::classify(const cv::Mat& bgr, std::span<const Detection> boxes,
                                std::vector<Detection>& out) {
    out.clear();
    for (const auto& d : boxes) {
        if (d.w <= 0 || d.h <= 0) continue;
        cut(bgr, d);
        make_blob(crop_, spec_.input.rgb, spec_.input.mean, spec_.input.scale, blob_);
        classifier_.setInput(blob_);
        classifier_.forward(probs_, output_names_);
        const cv::Mat& p = probs_[0];
        const int k = static_cast<int>(p.total());
        if (k != static_cast<int>(spec_.classes.size())) {
            throw std::runtime_error(fmt::format("{}: the classifier gives {} probabilities for {} classes",
                                                 source_, k, spec_.classes.size()));
        }
        const float* v = p.ptr<float>();
        const int best = static_cast<int>(std::max_element(v, v + k) - v);
        const int id = class_id_[static_cast<std::size_t>(best)];
        if (id < 0) continue;  // not a face or head: the detector's false alarm
        // As `!(x >= t)`, as the decoders do: a NaN probability (a broken export) passed `x < t`
        // both times, and the box went on with a NaN score.
        if (!(v[best] >= spec_.min_probability[static_cast<std::size_t>(best)])) continue;
        const float score = d.score * v[best];
        if (!(score >= spec_.min_score)) continue;
        Detection o = d;
        o.class_id = id;
        o.label = labels_[static_cast<std::size_t>(id)];
        o.score = score;
        out.push_back(std::move(o));
    }
}

}  // namespace kg::vision::dnn
