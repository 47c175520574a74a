#include "vision/dnn/dnn_detector.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <opencv2/imgproc.hpp>

#include "vision/dnn/blob.hpp"

namespace kg::vision::dnn {

DnnDetector::DnnDetector(Manifest manifest) : manifest_(std::move(manifest)) {
    if (!std::filesystem::exists(manifest_.model)) {
        throw ManifestError(
            fmt::format("{}: model file {} does not exist", manifest_.source, manifest_.model));
    }
    try {
        net_ = manifest_.config.empty() ? cv::dnn::readNet(manifest_.model)
                                        : cv::dnn::readNet(manifest_.model, manifest_.config);
    } catch (const cv::Exception& e) {
        throw ManifestError(
            fmt::format("{}: cannot load {}: {}", manifest_.source, manifest_.model, e.what()));
    }
    net_.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net_.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    output_names_ = manifest_.outputs.empty() ? net_.getUnconnectedOutLayersNames() : manifest_.outputs;
    const std::size_t wanted =
        manifest_.layout == Layout::ultraface || manifest_.layout == Layout::ssd ? 2 : 1;
    if (output_names_.size() != wanted) {
        throw ManifestError(
            fmt::format("{}: the model has {} outputs, the layout reads {}: name them in output.names",
                        manifest_.source, output_names_.size(), wanted));
    }
    if (manifest_.layout == Layout::ssd) priors_ = make_priors(manifest_.priors);
    for (const auto& c : manifest_.classes) labels_.push_back(c.label);
}

void DnnDetector::detect(const cv::Mat& bgr, std::vector<Detection>& out) {
    out.clear();
    const cv::Size in = manifest_.input;
    // Letterbox: scale to fit, pad bottom/right, so boxes map back with one scale factor.
    float fx = 1.0f, fy = 1.0f;
    if (manifest_.letterbox) {
        const double s =
            std::min(static_cast<double>(in.width) / bgr.cols, static_cast<double>(in.height) / bgr.rows);
        const cv::Size fitted(std::max(1, static_cast<int>(bgr.cols * s)),
                              std::max(1, static_cast<int>(bgr.rows * s)));
        cv::resize(bgr, resized_, fitted, 0, 0, cv::INTER_LINEAR);
        cv::copyMakeBorder(resized_, padded_, 0, in.height - fitted.height, 0, in.width - fitted.width,
                           cv::BORDER_CONSTANT, cv::Scalar(114, 114, 114));
        fx = static_cast<float>(in.width) / static_cast<float>(fitted.width);
        fy = static_cast<float>(in.height) / static_cast<float>(fitted.height);
    } else {
        cv::resize(bgr, padded_, in, 0, 0, cv::INTER_LINEAR);
    }
    make_blob(padded_, manifest_.rgb, manifest_.mean, manifest_.scale, blob_);
    net_.setInput(blob_);
    net_.forward(outputs_, output_names_);

    const float t = manifest_.score_threshold;
    switch (manifest_.layout) {
        case Layout::ultraface:
            decode_ultraface(outputs_[0], outputs_[1], t, out);
            break;
        case Layout::ssd:
            decode_ssd(outputs_[0], outputs_[1], priors_, manifest_.variances, manifest_.background_first, t,
                       out);
            break;
        case Layout::yolov5:
            decode_yolov5(outputs_[0], in, t, out);
            break;
        case Layout::yolov8:
            decode_yolov8(outputs_[0], in, t, out);
            break;
        case Layout::centernet:
            decode_centernet(outputs_[0], static_cast<int>(manifest_.classes.size()), in, t, out);
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
}

}  // namespace kg::vision::dnn
