#pragma once
// The classic back-end: works out of the box with nothing downloaded, from OpenCV's own cascades
// (Debian's opencv-data) and colour analysis of the face and head regions. Far less accurate than
// a trained model (docs/accuracy.md says how much); it is the fallback, not the goal.

#include <memory>
#include <opencv2/objdetect.hpp>
#include <string>

#include "vision/classic/frontal_faces.hpp"
#include "vision/detection.hpp"

namespace kg::vision::classic {

// Where Debian's opencv-data puts the cascades.
inline constexpr const char* kCascadeDir = "/usr/share/opencv4/haarcascades";

// Both detectors start from the frontal-face search. Given one (FramePasses::frontal_faces()), a
// camera with both checks searches each frame once; without, each detector searches on its own.

// Faces from the frontal-face cascade, each judged with_mask / no_mask by how skin-like the
// nose-and-mouth region is compared with the forehead and eyes.
class MaskDetector final : public Detector {
public:
    explicit MaskDetector(const std::string& cascade_dir = kCascadeDir,
                          std::shared_ptr<FrontalFaces> faces = nullptr);
    void detect(const cv::Mat& bgr, std::vector<Detection>& out) override;
    const std::vector<std::string>& labels() const override { return labels_; }

private:
    std::shared_ptr<FrontalFaces> faces_;
    std::vector<std::string> labels_{"with_mask", "no_mask"};
    cv::Mat ycrcb_;
};

// Heads found above frontal and profile faces, each judged covered / bare by whether the region
// above the face shows hair (dark, or skin for a shaved head) or a cap or hat.
class HeadCoveringDetector final : public Detector {
public:
    explicit HeadCoveringDetector(const std::string& cascade_dir = kCascadeDir,
                                  std::shared_ptr<FrontalFaces> faces = nullptr);
    void detect(const cv::Mat& bgr, std::vector<Detection>& out) override;
    const std::vector<std::string>& labels() const override { return labels_; }

private:
    std::shared_ptr<FrontalFaces> frontal_;
    cv::CascadeClassifier profile_;
    std::vector<std::string> labels_{"covered", "bare"};
    cv::Mat hsv_, ycrcb_;
    std::vector<cv::Rect> found_, profiles_;
};

// Fraction of skin-coloured pixels (YCrCb box) in `region` of a YCrCb image.
double skin_fraction(const cv::Mat& ycrcb, const cv::Rect& region);

}  // namespace kg::vision::classic
