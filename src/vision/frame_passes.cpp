#include "vision/frame_passes.hpp"

#include <opencv2/imgproc.hpp>

namespace kg::vision {

std::shared_ptr<classic::FrontalFaces> FramePasses::frontal_faces(const std::string& cascade_dir) {
    for (const auto& f : faces_) {
        if (f->cascade_dir() == cascade_dir) return f;
    }
    faces_.push_back(std::make_shared<classic::FrontalFaces>(cascade_dir, frame_));
    return faces_.back();
}

const cv::Mat& FramePasses::gray(const cv::Mat& bgr) {
    if (!gray_stamp_.holds(bgr)) {
        cv::cvtColor(bgr, gray_, cv::COLOR_BGR2GRAY);
        gray_stamp_.set(bgr);
        ++gray_conversions_;
    }
    return gray_;
}

}  // namespace kg::vision
