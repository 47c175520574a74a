#include "eval/bootstrap.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>

namespace kg::eval {
namespace {

void check(std::size_t photos, const BootstrapOptions& o) {
    if (photos == 0) throw std::invalid_argument("bootstrap: no photos to resample");
    if (o.replicates < 1) {
        throw std::invalid_argument("bootstrap: replicates must be at least 1, not " +
                                    std::to_string(o.replicates));
    }
    if (!(o.level > 0.0 && o.level < 1.0)) {
        throw std::invalid_argument("bootstrap: level must be between 0 and 1, not " +
                                    std::to_string(o.level));
    }
}

// Calls `replicate(drawn)` once per replicate with the indices of the photos drawn.
template <typename F>
void resample(std::size_t photos, const BootstrapOptions& o, F&& replicate) {
    std::mt19937_64 rng(o.seed);
    std::vector<std::size_t> drawn(photos);
    for (int r = 0; r < o.replicates; ++r) {
        // Modulo, not std::uniform_int_distribution: the distributions are not specified
        // bit for bit across standard libraries, the engine is. Its bias for a few hundred photos
        // out of 2^64 is far below anything the intervals could show.
        for (auto& i : drawn) i = static_cast<std::size_t>(rng() % photos);
        replicate(drawn);
    }
}

ClassCounts sum(const std::vector<ImageCounts>& images, const std::vector<std::size_t>& drawn,
                const std::string& cls) {
    ClassCounts s;
    for (const auto i : drawn) {
        const auto it = images[i].find(cls);
        if (it != images[i].end()) s += it->second;
    }
    return s;
}

Interval interval_of(std::vector<double>& values, double level) {
    if (values.empty()) return {};
    std::sort(values.begin(), values.end());
    const double tail = (1.0 - level) / 2.0;
    const auto last = static_cast<double>(values.size() - 1);
    return {values[static_cast<std::size_t>(std::floor(tail * last))],
            values[static_cast<std::size_t>(std::ceil((1.0 - tail) * last))]};
}

}  // namespace

std::map<std::string, ClassIntervals> bootstrap_intervals(const std::vector<ImageCounts>& images,
                                                          const std::vector<std::string>& classes,
                                                          const BootstrapOptions& options) {
    check(images.size(), options);
    std::map<std::string, std::array<std::vector<double>, 3>> values;  // precision, recall, F1
    for (const auto& cls : classes) {
        for (auto& v : values[cls]) v.reserve(static_cast<std::size_t>(options.replicates));
    }
    resample(images.size(), options, [&](const std::vector<std::size_t>& drawn) {
        for (const auto& cls : classes) {
            const auto c = sum(images, drawn, cls);
            auto& v = values[cls];
            if (const auto p = c.precision()) v[0].push_back(*p);
            if (const auto r = c.recall()) v[1].push_back(*r);
            if (const auto f = c.f1()) v[2].push_back(*f);
        }
    });
    std::map<std::string, ClassIntervals> out;
    for (auto& [cls, v] : values) {
        auto& o = out[cls];
        o.undefined_precision = options.replicates - static_cast<int>(v[0].size());
        o.undefined_recall = options.replicates - static_cast<int>(v[1].size());
        o.undefined_f1 = options.replicates - static_cast<int>(v[2].size());
        o.precision = interval_of(v[0], options.level);
        o.recall = interval_of(v[1], options.level);
        o.f1 = interval_of(v[2], options.level);
    }
    return out;
}

std::map<std::string, F1Difference> bootstrap_f1_difference(const std::vector<ImageCounts>& a,
                                                            const std::vector<ImageCounts>& b,
                                                            const std::vector<std::string>& classes,
                                                            const BootstrapOptions& options) {
    if (a.size() != b.size()) {
        throw std::invalid_argument("bootstrap: the two detectors were counted on " +
                                    std::to_string(a.size()) + " and " + std::to_string(b.size()) +
                                    " photos; a paired comparison needs the same");
    }
    check(a.size(), options);
    std::map<std::string, std::vector<double>> diffs;
    std::map<std::string, F1Difference> out;
    for (const auto& cls : classes) {
        diffs[cls].reserve(static_cast<std::size_t>(options.replicates));
        // Neither labelled nor found by either: no difference.
        out[cls].observed = total(a, cls).f1().value_or(0.0) - total(b, cls).f1().value_or(0.0);
    }
    resample(a.size(), options, [&](const std::vector<std::size_t>& drawn) {
        for (const auto& cls : classes)
            diffs[cls].push_back(sum(a, drawn, cls).f1().value_or(0.0) -
                                 sum(b, drawn, cls).f1().value_or(0.0));
    });
    for (auto& [cls, d] : diffs) {
        const auto positive = std::count_if(d.begin(), d.end(), [](double v) { return v > 0; });
        out[cls].share_positive = static_cast<double>(positive) / static_cast<double>(d.size());
        out[cls].interval = interval_of(d, options.level);
    }
    return out;
}

}  // namespace kg::eval
