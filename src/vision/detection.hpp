#pragma once
// Detections: what a detector found in one image, in normalised coordinates, and the helpers every
// back-end shares (IoU, non-maximum suppression).

#include <opencv2/core/mat.hpp>
#include <string>
#include <vector>

namespace kg::vision {

struct Detection {
    float x = 0, y = 0, w = 0, h = 0;  // normalised to the image: top-left and size
    int class_id = 0;
    std::string label;
    float score = 0;
};

// `area_offset` is added to width and height when computing the areas (not the overlap): some
// reference implementations (AIZOO's) do so, and matching their boxes exactly needs the same.
float iou(const Detection& a, const Detection& b, float area_offset = 0.0f);

// Greedy NMS: keeps the best-scoring box of every cluster overlapping more than `iou_threshold`.
// Per class unless `class_agnostic`. Sorts `dets` by score and removes the suppressed ones.
void non_max_suppression(std::vector<Detection>& dets, float iou_threshold, bool class_agnostic = false,
                         float area_offset = 0.0f);

// Finds objects in a BGR image. Not thread-safe: one instance per analysis thread or camera,
// because implementations keep working buffers between calls.
class Detector {
public:
    virtual ~Detector() = default;
    // Replaces `out` with this image's detections.
    virtual void detect(const cv::Mat& bgr, std::vector<Detection>& out) = 0;
    virtual const std::vector<std::string>& labels() const = 0;
};

}  // namespace kg::vision
