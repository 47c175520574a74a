#include "eval/errors.hpp"

#include <algorithm>

namespace kg::eval {

namespace {

bool among(const std::string& label, const std::vector<std::string>& classes) {
    return std::find(classes.begin(), classes.end(), label) != classes.end();
}

}  // namespace

void ErrorBreakdown::add(const std::vector<vision::Detection>& truth,
                         const std::vector<vision::Detection>& dets, const std::vector<std::string>& classes,
                         int width) {
    std::vector<const vision::Detection*> gt, found;
    for (const auto& t : truth) {
        if (among(t.label, classes)) gt.push_back(&t);
    }
    for (const auto& d : dets) {
        if (among(d.label, classes)) found.push_back(&d);
    }
    std::stable_sort(found.begin(), found.end(), [](auto a, auto b) { return a->score > b->score; });
    std::vector<bool> used(gt.size(), false);
    for (const auto* d : found) {
        int best = -1;
        float best_iou = iou_, nearest = 0;
        bool on_taken = false;
        for (std::size_t g = 0; g < gt.size(); ++g) {
            const float v = vision::iou(*d, *gt[g]);
            nearest = std::max(nearest, v);
            if (used[g]) {
                on_taken = on_taken || v >= iou_;
            } else if (v >= best_iou) {
                best_iou = v;
                best = static_cast<int>(g);
            }
        }
        if (best >= 0) {
            used[static_cast<std::size_t>(best)] = true;
            ++counts_.confusion[{gt[static_cast<std::size_t>(best)]->label, d->label}];
        } else if (on_taken) {
            ++counts_.duplicate[d->label];
        } else if (nearest >= kNearIou) {
            ++counts_.misplaced[d->label];
        } else {
            ++counts_.background[d->label];
        }
    }
    for (std::size_t g = 0; g < gt.size(); ++g) {
        ++counts_.labelled[gt[g]->label];
        if (!used[g]) counts_.missed_widths[gt[g]->label].push_back(gt[g]->w * static_cast<float>(width));
    }
}

}  // namespace kg::eval
