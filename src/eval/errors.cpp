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
    std::vector<bool> used(gt.size(), false), matched(found.size(), false);
    // Two rounds: first within each class, exactly as Accumulator matches, so that the diagonal is
    // its true positives; then whatever is left whatever the class, so that a wrong-class box on an
    // object no right-class box took counts as a confusion.
    for (const bool same_class : {true, false}) {
        for (std::size_t i = 0; i < found.size(); ++i) {
            if (matched[i]) continue;
            int best = -1;
            float best_iou = iou_;
            for (std::size_t g = 0; g < gt.size(); ++g) {
                if (used[g] || (same_class && gt[g]->label != found[i]->label)) continue;
                const float v = vision::iou(*found[i], *gt[g]);
                if (v >= best_iou) {
                    best_iou = v;
                    best = static_cast<int>(g);
                }
            }
            if (best < 0) continue;
            used[static_cast<std::size_t>(best)] = true;
            matched[i] = true;
            ++counts_.confusion[{gt[static_cast<std::size_t>(best)]->label, found[i]->label}];
        }
    }
    for (std::size_t i = 0; i < found.size(); ++i) {
        if (matched[i]) continue;
        float nearest = 0;
        for (const auto* g : gt) nearest = std::max(nearest, vision::iou(*found[i], *g));
        if (nearest >= iou_) {
            ++counts_.duplicate[found[i]->label];  // on an object another box took
        } else if (nearest >= kNearIou) {
            ++counts_.misplaced[found[i]->label];
        } else {
            ++counts_.background[found[i]->label];
        }
    }
    for (std::size_t g = 0; g < gt.size(); ++g) {
        ++counts_.labelled[gt[g]->label];
        if (!used[g]) counts_.missed_widths[gt[g]->label].push_back(gt[g]->w * static_cast<float>(width));
    }
}

}  // namespace kg::eval
