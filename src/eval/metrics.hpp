#pragma once
// Detection accuracy per class: greedy matching of detections (best score first) to unmatched
// ground-truth boxes of the same class at an IoU threshold, as the usual VOC/COCO-style
// precision and recall count it.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "vision/detection.hpp"

namespace kg::eval {

struct ClassCounts {
    int tp = 0, fp = 0, fn = 0;
    // Empty where there is nothing to divide by: precision when nothing was found, recall when
    // nothing was labelled, F1 when neither. A 0 there (as they were) read as a verdict on the
    // detector. F1 is 0, not empty, when objects were labelled and none found.
    std::optional<double> precision() const {
        if (tp + fp == 0) return std::nullopt;
        return static_cast<double>(tp) / (tp + fp);
    }
    std::optional<double> recall() const {
        if (tp + fn == 0) return std::nullopt;
        return static_cast<double>(tp) / (tp + fn);
    }
    std::optional<double> f1() const {
        if (tp + fp + fn == 0) return std::nullopt;
        const double p = precision().value_or(0.0), r = recall().value_or(0.0);
        return p + r > 0 ? 2 * p * r / (p + r) : 0.0;
    }
    ClassCounts& operator+=(const ClassCounts& o) {
        tp += o.tp;
        fp += o.fp;
        fn += o.fn;
        return *this;
    }
};

// A ratio as kitchen-eval prints it: three decimals, or "-" where it is undefined.
std::string ratio_text(std::optional<double> ratio);

// One image's counts per class: the matching that Accumulator sums, kept per image where the
// photos are to be resampled (bootstrap.hpp). Detections whose label is not among `classes` are
// ignored; every class of `classes` gets an entry, zeros included.
using ImageCounts = std::map<std::string, ClassCounts>;
ImageCounts count_image(const std::vector<vision::Detection>& truth,
                        const std::vector<vision::Detection>& detections,
                        const std::vector<std::string>& classes, float iou_threshold);

// The sum of one class's counts over images (zeros for images without the class).
ClassCounts total(const std::vector<ImageCounts>& images, const std::string& cls);

class Accumulator {
public:
    explicit Accumulator(float iou_threshold) : iou_(iou_threshold) {}
    // Adds one image. Detections whose label is not among `classes` are ignored.
    // Returns that image's own counts.
    ImageCounts add(const std::vector<vision::Detection>& truth,
                    const std::vector<vision::Detection>& detections,
                    const std::vector<std::string>& classes);
    const std::map<std::string, ClassCounts>& counts() const { return counts_; }

private:
    float iou_;
    std::map<std::string, ClassCounts> counts_;
};

}  // namespace kg::eval
