#include "vision/detector_check.hpp"

#include <algorithm>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

namespace kg::vision {

DetectorCheck::DetectorCheck(std::string name, std::unique_ptr<Detector> detector,
                             std::vector<Violation> violations, const MotionMap* motion, Duration refresh)
    : name_(std::move(name)),
      detector_(std::move(detector)),
      violations_(std::move(violations)),
      motion_(motion),
      refresh_(refresh) {}

void DetectorCheck::analyse(const ingest::Frame& frame, std::vector<Observation>& out) {
    const bool stale = !last_run_ || frame.steady - *last_run_ >= refresh_;
    // A picture that changed as a whole (lights, a day/night switch) is no motion for the region
    // checks, but what the detector saw before may no longer be there: it runs again. So does a
    // picture that went back to a look the background model knows (the offender left, the wall
    // behind him is background again): by the model alone nothing moved, and the boxes of the
    // person who left stood until the refresh, drawn on the frames after, ending an alert up to
    // 10 s late and merging the next one into it (the 54th session's review).
    // Stale first: a refresh due needs no comparison of the picture.
    if (stale || motion_ == nullptr || motion_->moved_fraction() >= kMotionGateFraction ||
        motion_->lighting_changed() || changed_since_run()) {
        // Into a scratch list, kept only once the run worked: a detector clears its output before
        // it can throw, and the still frames after a failed run reused "nothing seen" until the
        // refresh, long enough to end an open event as cleared and raise it again later. The picture
        // counts as looked at even so: a detector failing on it is not asked again at every frame.
        if (motion_ != nullptr) motion_->gray().copyTo(seen_);
        detector_->detect(frame.image, scratch_);
        detections_.swap(scratch_);
        last_run_ = frame.steady;
        ++runs_;
    } else {
        ++skipped_;
    }
    for (const auto& v : violations_) {
        Observation o;
        o.check = v.check;
        o.label = v.label;
        o.severity = v.severity;
        for (const auto& d : detections_) {
            if (d.label != v.detector_label) continue;
            o.boxes.push_back({d.x, d.y, d.w, d.h, v.label, d.score});
            o.score = std::max(o.score, d.score);
        }
        o.present = !o.boxes.empty();
        out.push_back(std::move(o));
    }
}

bool DetectorCheck::changed_since_run() {
    const cv::Mat& now = motion_->gray();
    if (seen_.empty() || seen_.size() != now.size()) return true;
    cv::absdiff(now, seen_, difference_);
    cv::threshold(difference_, difference_, kChangedLevel, 255, cv::THRESH_BINARY);
    // Single pixels are the grain of a dim picture, not a person: removed as the motion map removes
    // them (without it a grainy night camera, 3 grey levels of noise, ran its detector at every
    // other frame: the review of this change).
    cv::morphologyEx(difference_, difference_, cv::MORPH_OPEN, cv::Mat());
    return static_cast<double>(cv::countNonZero(difference_)) / static_cast<double>(now.total()) >=
           kMotionGateFraction;
}

}  // namespace kg::vision
