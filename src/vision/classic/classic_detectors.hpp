#pragma once
// The classic back-end: works out of the box with nothing downloaded, from OpenCV's own cascades
// (Debian's opencv-data) and colour analysis of the face and head regions. Far less accurate than
// a trained model (docs/accuracy.md says how much); it is the fallback, not the goal.

#include <opencv2/objdetect.hpp>
#include <string>

#include "vision/detection.hpp"

namespace kg::vision::classic {

// Where Debian's opencv-data puts the cascades.
inline constexpr const char* kCascadeDir = "/usr/share/opencv4/haarcascades";

// Faces from the frontal-face cascade, each judged with_mask / no_mask by how skin-like the
// nose-and-mouth region is compared with the forehead and eyes.
class MaskDetector final : public Detector {
public:
    explicit MaskDetector(const std::string& cascade_dir = kCascadeDir);
    void detect(const cv::Mat& bgr, std::vector<Detection>& out) override;
    const std::vector<std::string>& labels() const override { return labels_; }

private:
    cv::CascadeClassifier faces_;
    std::vector<std::string> labels_{"with_mask", "no_mask"};
    cv::Mat gray_, ycrcb_, skin_;
    std::vector<cv::Rect> found_;
};

// Heads found above frontal and profile faces, each judged covered / bare by whether the region
// above the face shows hair (dark, or skin for a shaved head) or a cap or hat.
class HeadCoveringDetector final : public Detector {
public:
    explicit HeadCoveringDetector(const std::string& cascade_dir = kCascadeDir);
    void detect(const cv::Mat& bgr, std::vector<Detection>& out) override;
    const std::vector<std::string>& labels() const override { return labels_; }

private:
    cv::CascadeClassifier frontal_, profile_;
    std::vector<std::string> labels_{"covered", "bare"};
    cv::Mat gray_, hsv_, ycrcb_;
    std::vector<cv::Rect> found_, profiles_;
};

// Fraction of skin-coloured pixels (YCrCb box) in `region` of a YCrCb image.
double skin_fraction(const cv::Mat& ycrcb, const cv::Rect& region);

}  // namespace kg::vision::classic
