#pragma once
// How far a precision, recall or F1 measured on a few dozen photos can be trusted: the percentile
// bootstrap over photos. Each replicate draws as many photos as were evaluated, with replacement,
// sums their per-photo counts (metrics.hpp's count_image) and recomputes the figures; the interval
// is the middle `level` of the replicates. Photos, not boxes, are resampled because boxes on one
// photo are not independent (one crowd, one light, one camera).
//
// The paired form compares two detectors on the same photos: every replicate draws one set of
// photos for both, so that what the photos have in common (a hard crowd, an easy portrait) cancels
// and only the detectors' difference is left. "Higher F1 than the reference" on 43 photos means
// something only where that difference's interval excludes 0.
//
// Replicates come from std::mt19937_64, whose sequence the C++ standard fixes, so a seed gives the
// same intervals on every machine and compiler.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "eval/metrics.hpp"

namespace kg::eval {

struct Interval {
    double lo = 0, hi = 0;
};

struct ClassIntervals {
    Interval precision, recall, f1;
    // Draws in which a figure had nothing to divide by (no box of the class drawn, for precision;
    // no labelled object, for recall; neither, for F1): left out of that figure's interval, not
    // counted as 0, which would drag a rare class's interval down. A figure undefined in every
    // draw has the interval [0, 0].
    int undefined_precision = 0, undefined_recall = 0, undefined_f1 = 0;
};

struct F1Difference {
    double observed = 0;        // a's F1 minus b's on all the photos
    Interval interval;          // of that difference over the replicates
    double share_positive = 0;  // share of replicates in which a's F1 is strictly higher
};

struct BootstrapOptions {
    int replicates = 2000;
    std::uint64_t seed = 1;
    double level = 0.95;  // the interval holds this share of the replicates, centred
};

// Intervals of each class's precision, recall and F1 (see ClassIntervals for draws in which one is
// undefined). Throws std::invalid_argument for no photos or bad options.
std::map<std::string, ClassIntervals> bootstrap_intervals(const std::vector<ImageCounts>& images,
                                                          const std::vector<std::string>& classes,
                                                          const BootstrapOptions& options = {});

// a[i] and b[i] are two detectors' counts on the same photo i. A draw with no labelled object and no
// box of the class from either counts as a difference of 0 (both F1s are 0 there). Throws
// std::invalid_argument when the two lists differ in length, for no photos or bad options.
std::map<std::string, F1Difference> bootstrap_f1_difference(const std::vector<ImageCounts>& a,
                                                            const std::vector<ImageCounts>& b,
                                                            const std::vector<std::string>& classes,
                                                            const BootstrapOptions& options = {});

}  // namespace kg::eval
