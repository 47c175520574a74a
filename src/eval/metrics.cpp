#include "eval/metrics.hpp"

#include <algorithm>

namespace kg::eval {

void Accumulator::add(const std::vector<vision::Detection>& truth, const std::vector<vision::Detection>& dets,
                      const std::vector<std::string>& classes) {
    for (const auto& cls : classes) {
        auto& c = counts_[cls];
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
            float best_iou = iou_;
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
        c.fn += static_cast<int>(std::count(used.begin(), used.end(), false));
    }
}

}  // namespace kg::eval
