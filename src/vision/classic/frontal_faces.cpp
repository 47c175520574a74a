#include "vision/classic/frontal_faces.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <opencv2/imgproc.hpp>
#include <stdexcept>
#include <utility>

namespace kg::vision::classic {

void load_cascade(cv::CascadeClassifier& c, const std::string& dir, const char* file) {
    const std::string path = dir + "/" + file;
    if (!c.load(path)) {
        throw std::runtime_error(
            fmt::format("cannot load the OpenCV cascade {} (Debian package opencv-data)", path));
    }
}

FrontalFaces::FrontalFaces(const std::string& cascade_dir, std::shared_ptr<const std::uint64_t> frame)
    : dir_(cascade_dir),
      per_frame_(frame != nullptr),
      frame_(frame ? std::move(frame) : std::make_shared<const std::uint64_t>(0)),
      stamp_(frame_) {
    load_cascade(cascade_, dir_, "haarcascade_frontalface_alt2.xml");
}

cv::Size FrontalFaces::min_face(const cv::Mat& bgr) {
    const int side = std::max(20, std::min(bgr.cols, bgr.rows) / 32);
    return {side, side};
}

const std::vector<cv::Rect>& FrontalFaces::find(const cv::Mat& bgr) {
    // Without an owner (a detector used alone) nothing says a new picture began: always search.
    if (per_frame_ && stamp_.holds(bgr)) return found_;
    cv::cvtColor(bgr, gray_, cv::COLOR_BGR2GRAY);
    cv::equalizeHist(gray_, gray_);
    cascade_.detectMultiScale(gray_, found_, kScaleStep, 3, 0, min_face(bgr));
    ++searches_;
    stamp_.set(bgr);
    return found_;
}

}  // namespace kg::vision::classic
