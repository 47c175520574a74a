#pragma once
// A detector followed by a classifier, as one Detector: the first stage finds heads or faces, the
// second decides what each one is (mask / no mask), and the box takes the classifier's class.
// This is how the project's own models work (models/kitchen-mask.yaml): a small detector that
// finds every head, and a classifier that sees each head at its own resolution.
// A classifier class named `background` means "not a face or head at all": a box the classifier
// puts there is dropped (the detector's false alarm), whatever its probability, and `background`
// is not among labels().

#include <opencv2/dnn.hpp>
#include <span>

#include "vision/detection.hpp"
#include "vision/dnn/dnn_detector.hpp"
#include "vision/dnn/manifest.hpp"

namespace kg::vision::dnn {

class TwoStageDetector final : public Detector {
public:
    // `manifest.classifier` must be set. Throws ManifestError when either network cannot be loaded.
    // `passes`: the detector stage may share its network pass (DnnDetector).
    explicit TwoStageDetector(Manifest manifest, NetworkPasses* passes = nullptr);

    void detect(const cv::Mat& bgr, std::vector<Detection>& out) override;

    // The second stage alone, on boxes found elsewhere (their scores stand for the first stage's):
    // kitchen-eval --given-boxes judges the classifier on the labelled boxes this way, apart from
    // what the first stage finds or misses. `boxes` must not be `out`.
    void classify(const cv::Mat& bgr, std::span<const Detection> boxes, std::vector<Detection>& out);
    const std::vector<std::string>& labels() const override { return labels_; }

private:
    // Cuts the (widened, squared) box out of `bgr` into `crop_` at the classifier's input size.
    void cut(const cv::Mat& bgr, const Detection& d);

    ClassifierSpec spec_;
    std::string source_;
    DnnDetector stage1_;
    cv::dnn::Net classifier_;
    std::vector<std::string> output_names_;
    std::vector<std::string> labels_;  // the classes a box can take (`background` excluded)
    std::vector<int> class_id_;        // by classifier class: index into labels_, -1 for `background`
    // Reused between frames: after the first frame the per-frame path allocates nothing but what
    // cv::dnn itself does.
    std::vector<Detection> found_;
    cv::Mat crop_, blob_;
    std::vector<cv::Mat> probs_;
};

}  // namespace kg::vision::dnn
