#pragma once
// The frontal-face cascade search, once per frame for both classic checks: the mask check judges
// each face's mouth, the head-covering check each face's crown, and the search (most of either
// check's time) is the same. Like a NetworkPass, not thread-safe: one per camera pipeline, which
// analyses one frame at a time.

#include <cstdint>
#include <memory>
#include <opencv2/core.hpp>
#include <opencv2/objdetect.hpp>
#include <string>
#include <vector>

#include "vision/frame_stamp.hpp"

namespace kg::vision::classic {

class FrontalFaces {
public:
    // `frame`: the owner's frame counter (FramePasses'); without one, every call searches afresh.
    // Throws std::runtime_error naming the cascade file when it cannot be loaded.
    explicit FrontalFaces(const std::string& cascade_dir,
                          std::shared_ptr<const std::uint64_t> frame = nullptr);
    FrontalFaces(const FrontalFaces&) = delete;
    FrontalFaces& operator=(const FrontalFaces&) = delete;

    // The faces in `bgr`: searched on the first call of a frame, the same vector after.
    const std::vector<cv::Rect>& find(const cv::Mat& bgr);
    // The equalised grey picture of the last find(), for other cascades to search.
    const cv::Mat& gray() const { return gray_; }
    // The smallest face searched for in a picture of this size (also for other cascades).
    static cv::Size min_face(const cv::Mat& bgr);
    const std::string& cascade_dir() const { return dir_; }
    // Searches run so far (for tests: the readers sharing a frame's search add none).
    std::uint64_t searches() const { return searches_; }

private:
    std::string dir_;
    bool per_frame_;  // an owner counts frames: a second find() of a frame reuses the first's
    cv::CascadeClassifier cascade_;
    std::shared_ptr<const std::uint64_t> frame_;
    FrameStamp stamp_;
    std::uint64_t searches_ = 0;
    cv::Mat gray_;                 // reused between frames
    std::vector<cv::Rect> found_;  // reused between frames
};

// Cascade pyramid step: 1.2 instead of OpenCV's usual 1.1 halves the cost for a few points of recall.
inline constexpr double kScaleStep = 1.2;

// Loads `file` from `dir` into `c`; throws std::runtime_error naming the path when it cannot.
void load_cascade(cv::CascadeClassifier& c, const std::string& dir, const char* file);

}  // namespace kg::vision::classic
