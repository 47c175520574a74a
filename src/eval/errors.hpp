#pragma once
// Where a detector's errors are, beyond precision and recall: which class it gave the objects it
// found, what the boxes it left on no labelled object were near, and how big the objects it missed
// were. Precision and recall (metrics.hpp) count a found object given the wrong class as one miss
// and one false alarm; here it is one confusion, so that a model card can say whether to improve
// the finder or the classifier.
//
// Matching: detections best score first, each to the unmatched labelled object it overlaps most at
// IoU >= the threshold, first among objects of its own class (as metrics.hpp matches, so the
// diagonal equals its true positives), then, for the detections left, among objects of any class
// (a confusion). A detection left over after both is
//   duplicate  - on an object (IoU >= threshold) that another detection took;
//   misplaced  - overlapping an object, but under the threshold (IoU >= kNearIou);
//   background - near no labelled object (an unlabelled one, or clutter).

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "vision/detection.hpp"

namespace kg::eval {

struct ErrorCounts {
    std::map<std::pair<std::string, std::string>, int> confusion;  // (labelled, detected) -> count
    std::map<std::string, int> duplicate, misplaced, background;   // by detected class
    std::map<std::string, std::vector<float>> missed_widths;       // by labelled class, in pixels
    std::map<std::string, int> labelled;                           // by labelled class
};

class ErrorBreakdown {
public:
    static constexpr float kNearIou = 0.1f;

    explicit ErrorBreakdown(float iou_threshold) : iou_(iou_threshold) {}
    // Adds one image of `width` pixels. Labels and detections whose class is not among `classes`
    // are ignored.
    void add(const std::vector<vision::Detection>& truth, const std::vector<vision::Detection>& detections,
             const std::vector<std::string>& classes, int width);
    const ErrorCounts& counts() const { return counts_; }

private:
    float iou_;
    ErrorCounts counts_;
};

}  // namespace kg::eval
