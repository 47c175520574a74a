#pragma once
// Detection accuracy per class: greedy matching of detections (best score first) to unmatched
// ground-truth boxes of the same class at an IoU threshold, as the usual VOC/COCO-style
// precision and recall count it.

#include <map>
#include <string>
#include <vector>

#include "vision/detection.hpp"

namespace kg::eval {

struct ClassCounts {
    int tp = 0, fp = 0, fn = 0;
    double precision() const { return tp + fp > 0 ? static_cast<double>(tp) / (tp + fp) : 0.0; }
    double recall() const { return tp + fn > 0 ? static_cast<double>(tp) / (tp + fn) : 0.0; }
    double f1() const {
        const double p = precision(), r = recall();
        return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
    }
};

class Accumulator {
public:
    explicit Accumulator(float iou_threshold) : iou_(iou_threshold) {}
    // Adds one image. Detections whose label is not among `classes` are ignored.
    void add(const std::vector<vision::Detection>& truth, const std::vector<vision::Detection>& detections,
             const std::vector<std::string>& classes);
    const std::map<std::string, ClassCounts>& counts() const { return counts_; }

private:
    float iou_;
    std::map<std::string, ClassCounts> counts_;
};

}  // namespace kg::eval
