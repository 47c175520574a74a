#include "vision/detection.hpp"

#include <algorithm>

namespace kg::vision {

float iou(const Detection& a, const Detection& b, float off) {
    const float x1 = std::max(a.x, b.x), y1 = std::max(a.y, b.y);
    const float x2 = std::min(a.x + a.w, b.x + b.w), y2 = std::min(a.y + a.h, b.y + b.h);
    const float inter = std::max(0.0f, x2 - x1) * std::max(0.0f, y2 - y1);
    const float uni = (a.w + off) * (a.h + off) + (b.w + off) * (b.h + off) - inter;
    return uni > 0 ? inter / uni : 0.0f;
}

void non_max_suppression(std::vector<Detection>& dets, float iou_threshold, bool class_agnostic,
                         float area_offset) {
    std::stable_sort(dets.begin(), dets.end(),
                     [](const Detection& a, const Detection& b) { return a.score > b.score; });
    std::size_t kept = 0;
    for (std::size_t i = 0; i < dets.size(); ++i) {
        bool suppressed = false;
        for (std::size_t k = 0; k < kept && !suppressed; ++k) {
            suppressed = (class_agnostic || dets[k].class_id == dets[i].class_id) &&
                         iou(dets[k], dets[i], area_offset) > iou_threshold;
        }
        if (!suppressed) {
            if (kept != i) dets[kept] = std::move(dets[i]);
            ++kept;
        }
    }
    dets.resize(kept);
}

}  // namespace kg::vision
