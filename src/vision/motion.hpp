#pragma once
// Where the picture moves: a background model (MOG2) on a small grey copy of the frame, shared by
// the motion-gated detectors and the region checks. Works on infrared (grey) night pictures too.

#include <opencv2/video/background_segm.hpp>
#include <vector>

#include "rules/zones.hpp"
#include "vision/check.hpp"

namespace kg::vision {

class MotionMap {
public:
    MotionMap();
    // Updates the model with this frame; afterwards foreground() marks what moved.
    void update(const cv::Mat& bgr);
    const cv::Mat& foreground() const { return foreground_; }  // 0/255 at kWidth x kHeight
    // What changed since the previous frame (0/255): moving now, unlike foreground(), which also
    // marks what arrived recently and stayed.
    const cv::Mat& moving() const { return moving_; }
    const cv::Mat& gray() const { return small_; }
    // Fraction of `polygon` (or the whole picture when empty) that moved.
    double moved_fraction(const rules::Polygon& polygon) const;
    // Boxes around moving blobs larger than `min_area` (fraction of the picture) inside `polygon`.
    std::vector<Box> blobs(const cv::Mat& mask, const rules::Polygon& polygon, double min_area,
                           const std::string& label) const;
    cv::Mat polygon_mask(const rules::Polygon& polygon) const;

    static constexpr int kWidth = 320, kHeight = 180;

private:
    cv::Ptr<cv::BackgroundSubtractorMOG2> model_;
    cv::Mat gray_, small_, previous_, foreground_, moving_, kernel_;
    mutable cv::Mat scratch_;
    mutable std::vector<std::vector<cv::Point>> contours_;
};

}  // namespace kg::vision
