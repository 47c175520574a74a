#include "vision/motion.hpp"

#include <opencv2/imgproc.hpp>
#include <utility>

#include "vision/frame_passes.hpp"

namespace kg::vision {

MotionMap::MotionMap(FramePasses* passes)
    : passes_(passes),
      model_(
          cv::createBackgroundSubtractorMOG2(/*history=*/200, /*varThreshold=*/25, /*detectShadows=*/false)),
      kernel_(cv::getStructuringElement(cv::MORPH_ELLIPSE, {3, 3})) {}

void MotionMap::take_state_from(MotionMap& earlier) {
    // Swapped: `earlier` is left a map that has seen nothing, still usable.
    std::swap(model_, earlier.model_);
    std::swap(previous_, earlier.previous_);
    std::swap(foreground_, earlier.foreground_);
    std::swap(moving_, earlier.moving_);
    std::swap(small_, earlier.small_);
    std::swap(moved_fraction_, earlier.moved_fraction_);
    std::swap(lighting_changed_, earlier.lighting_changed_);
}

void MotionMap::update(const cv::Mat& bgr) {
    if (passes_ == nullptr) cv::cvtColor(bgr, gray_, cv::COLOR_BGR2GRAY);
    cv::resize(passes_ != nullptr ? passes_->gray(bgr) : gray_, small_, {kWidth, kHeight}, 0, 0,
               cv::INTER_AREA);
    model_->apply(small_, foreground_);
    const double total = static_cast<double>(kWidth) * kHeight;
    lighting_changed_ = static_cast<double>(cv::countNonZero(foreground_)) / total >= kLightingShare;
    if (lighting_changed_) {
        // A learning rate of 1 starts the model over from this frame: the new lighting is the
        // background at once, instead of the whole picture reading as foreground for the ~10 s the
        // model would take to learn it.
        model_->apply(small_, foreground_, 1.0);
        foreground_.setTo(0);
        moving_.create(small_.size(), CV_8U);
        moving_.setTo(0);
        small_.copyTo(previous_);
        moved_fraction_ = 0;
        return;
    }
    // Sensor noise makes single pixels flicker: open removes them, close joins a body's parts.
    cv::morphologyEx(foreground_, foreground_, cv::MORPH_OPEN, kernel_);
    cv::morphologyEx(foreground_, foreground_, cv::MORPH_CLOSE, kernel_, {-1, -1}, 2);
    if (previous_.empty()) small_.copyTo(previous_);
    cv::absdiff(small_, previous_, moving_);
    cv::threshold(moving_, moving_, 15, 255, cv::THRESH_BINARY);
    cv::dilate(moving_, moving_, kernel_, {-1, -1}, 3);  // a moving body's edges, widened to its body
    small_.copyTo(previous_);
    moved_fraction_ = static_cast<double>(cv::countNonZero(foreground_)) / total;
}

cv::Mat MotionMap::region_mask(const rules::Polygon& polygon) {
    if (polygon.empty()) return {};
    cv::Mat mask(kHeight, kWidth, CV_8U, cv::Scalar(0));
    std::vector<cv::Point> pts;
    for (const auto& p : polygon) pts.emplace_back(cvRound(p.x * kWidth), cvRound(p.y * kHeight));
    cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{pts}, cv::Scalar(255));
    return mask;
}

double MotionMap::moved_share(const cv::Mat& region) const {
    if (foreground_.empty()) return 0.0;
    if (region.empty()) return moved_fraction_;
    cv::bitwise_and(foreground_, region, scratch_);
    return static_cast<double>(cv::countNonZero(scratch_)) / (static_cast<double>(kWidth) * kHeight);
}

std::vector<Box> MotionMap::blobs(const cv::Mat& binary, const cv::Mat& region, double min_area,
                                  const std::string& label) const {
    std::vector<Box> out;
    if (binary.empty()) return out;
    if (region.empty()) {
        binary.copyTo(scratch_);
    } else {
        cv::bitwise_and(binary, region, scratch_);
    }
    cv::findContours(scratch_, contours_, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
    const double total = static_cast<double>(kWidth) * kHeight;
    for (const auto& c : contours_) {
        const cv::Rect r = cv::boundingRect(c);
        const double a = cv::contourArea(c) / total;
        if (a < min_area) continue;
        out.push_back({static_cast<float>(r.x) / kWidth, static_cast<float>(r.y) / kHeight,
                       static_cast<float>(r.width) / kWidth, static_cast<float>(r.height) / kHeight, label,
                       static_cast<float>(std::min(1.0, 0.5 + a * 10))});
    }
    return out;
}

}  // namespace kg::vision
