#pragma once
// Runs any ONNX or Caffe detector through OpenCV's cv::dnn as its manifest describes: resize
// (stretch or letterbox), colour order, mean and scale; forward; decode; NMS; labels.

#include <opencv2/dnn.hpp>

#include "vision/detection.hpp"
#include "vision/dnn/manifest.hpp"

namespace kg::vision::dnn {

class DnnDetector final : public Detector {
public:
    // Throws ManifestError when the model cannot be loaded, naming the file.
    explicit DnnDetector(Manifest manifest);

    void detect(const cv::Mat& bgr, std::vector<Detection>& out) override;
    const std::vector<std::string>& labels() const override { return labels_; }
    const Manifest& manifest() const { return manifest_; }

private:
    Manifest manifest_;
    cv::dnn::Net net_;
    std::vector<std::string> output_names_;
    std::vector<cv::Vec4f> priors_;
    std::vector<std::string> labels_;
    // Reused between frames.
    cv::Mat resized_, padded_, blob_;
    std::vector<cv::Mat> outputs_;
};

}  // namespace kg::vision::dnn
