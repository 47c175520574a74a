#include "eval/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace kg::eval {

std::string ratio_text(std::optional<double> ratio) { return ratio ? fmt::format("{:.3f}", *ratio) : "-"; }

ImageCounts count_image(const std::vector<vision::Detection>& truth,
                        const std::vector<vision::Detection>& dets, const std::vector<std::string>& classes,
                        float iou_threshold) {
    ImageCounts out;
    for (const auto& cls : classes) {
        auto& c = out[cls];
        std::vector<const vision::Detection*> gt, found;
        for (const auto& t : truth) {
            if (t.label == cls) gt.push_back(&t);
        }
        for (const auto& d : dets) {
            if (d.label == cls) found.push_back(&d);
        }
        std::stable_sort(found.begin(), found.end(), [](auto a, auto b) { return a->score > b->score; });
        std::vector<bool> used(gt.size(), false);
        for (const auto* d : found) {
            int best = -1;
            float best_iou = iou_threshold;
            for (std::size_t g = 0; g < gt.size(); ++g) {
                if (used[g]) continue;
                const float v = vision::iou(*d, *gt[g]);
                if (v >= best_iou) {
                    best_iou = v;
                    best = static_cast<int>(g);
                }
            }
            if (best >= 0) {
                used[static_cast<std::size_t>(best)] = true;
                ++c.tp;
            } else {
                ++c.fp;
            }
        }
        c.fn = static_cast<int>(std::count(used.begin(), used.end(), false));
    }
    return out;
}

ImageCounts Accumulator::add(const std::vector<vision::Detection>& truth,
                             const std::vector<vision::Detection>& dets,
                             const std::vector<std::string>& classes) {
    auto image = count_image(truth, dets, classes, iou_);
    for (const auto& [cls, c] : image) counts_[cls] += c;
    return image;
}

ClassCounts total(const std::vector<ImageCounts>& images, const std::string& cls) {
    ClassCounts sum;
    for (const auto& image : images) {
        const auto it = image.find(cls);
        if (it != image.end()) sum += it->second;
    }
    return sum;
}

}  // namespace kg::eval
