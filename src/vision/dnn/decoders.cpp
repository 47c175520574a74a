#include "vision/dnn/decoders.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace kg::vision::dnn {
namespace {

// Views a [1,N,K] (or [N,K]) tensor as N rows of K floats.
cv::Mat rows_of(const cv::Mat& m, const char* what) {
    if (m.type() != CV_32F) throw std::invalid_argument(std::string(what) + ": expected float32 output");
    if (m.dims == 3 && m.size[0] == 1)
        return cv::Mat(m.size[1], m.size[2], CV_32F, const_cast<float*>(m.ptr<float>()));
    if (m.dims == 2) return m;
    throw std::invalid_argument(std::string(what) + ": expected a [1,N,K] output");
}

// A box with a coordinate that is not a number (a broken or badly exported network) is dropped: it
// has no place in the picture, and NaN would reach the events as null.
void push(std::vector<Detection>& out, float x1, float y1, float x2, float y2, int cls, float score) {
    if (!std::isfinite(x1) || !std::isfinite(y1) || !std::isfinite(x2) || !std::isfinite(y2)) return;
    Detection d;
    d.x = x1;
    d.y = y1;
    d.w = std::max(0.0f, x2 - x1);
    d.h = std::max(0.0f, y2 - y1);
    d.class_id = cls;
    d.score = score;
    out.push_back(std::move(d));
}

// Scores are compared as `!(s >= threshold)`: a NaN score is below every threshold, where
// `s < threshold` would let it through (and an all-NaN map would give a box per cell).
bool below(float score, float threshold) { return !(score >= threshold); }

}  // namespace

void decode_ultraface(const cv::Mat& boxes_t, const cv::Mat& scores_t, float threshold,
                      std::vector<Detection>& out) {
    const cv::Mat boxes = rows_of(boxes_t, "boxes"), scores = rows_of(scores_t, "scores");
    if (boxes.rows != scores.rows || boxes.cols != 4)
        throw std::invalid_argument("ultraface: boxes and scores disagree");
    for (int i = 0; i < scores.rows; ++i) {
        const float* s = scores.ptr<float>(i);
        int best = 0;
        for (int c = 1; c < scores.cols; ++c) {
            if (s[c] > s[best]) best = c;
        }
        if (best == 0 || below(s[best], threshold)) continue;  // background wins, or too weak
        const float* b = boxes.ptr<float>(i);
        push(out, b[0], b[1], b[2], b[3], best - 1, s[best]);
    }
}

std::vector<cv::Vec4f> make_priors(const PriorSpec& spec) {
    if (spec.anchor_sizes.size() != spec.feature_maps.size() ||
        spec.anchor_ratios.size() != spec.feature_maps.size()) {
        throw std::invalid_argument("priors: one list of sizes and ratios per feature map");
    }
    std::vector<cv::Vec4f> priors;
    for (std::size_t m = 0; m < spec.feature_maps.size(); ++m) {
        const auto& fm = spec.feature_maps[m];
        const auto& sizes = spec.anchor_sizes[m];
        const auto& ratios = spec.anchor_ratios[m];
        if (fm.width < 1 || fm.height < 1 || sizes.empty() || ratios.empty()) {
            throw std::invalid_argument("priors: feature map " + std::to_string(m) +
                                        " needs a size of at least 1x1, one anchor size and one ratio");
        }
        std::vector<cv::Vec2f> shapes;  // (w, h) per anchor at one cell
        for (float s : sizes) shapes.emplace_back(s * std::sqrt(ratios[0]), s / std::sqrt(ratios[0]));
        for (std::size_t r = 1; r < ratios.size(); ++r) {
            shapes.emplace_back(sizes[0] * std::sqrt(ratios[r]), sizes[0] / std::sqrt(ratios[r]));
        }
        for (int y = 0; y < fm.height; ++y) {
            for (int x = 0; x < fm.width; ++x) {
                const float cx = (static_cast<float>(x) + 0.5f) / static_cast<float>(fm.width);
                const float cy = (static_cast<float>(y) + 0.5f) / static_cast<float>(fm.height);
                for (const auto& s : shapes) priors.emplace_back(cx, cy, s[0], s[1]);
            }
        }
    }
    return priors;
}

void decode_ssd(const cv::Mat& loc_t, const cv::Mat& conf_t, const std::vector<cv::Vec4f>& priors,
                const cv::Vec4f& var, bool background_first, float threshold, std::vector<Detection>& out) {
    const cv::Mat loc = rows_of(loc_t, "loc"), conf = rows_of(conf_t, "conf");
    if (loc.rows != conf.rows || loc.rows != static_cast<int>(priors.size()) || loc.cols != 4) {
        throw std::invalid_argument("ssd: " + std::to_string(loc.rows) + " boxes, " +
                                    std::to_string(conf.rows) + " scores and " +
                                    std::to_string(priors.size()) + " priors do not match");
    }
    const int first = background_first ? 1 : 0;
    for (int i = 0; i < conf.rows; ++i) {
        const float* s = conf.ptr<float>(i);
        int best = first;
        for (int c = first + 1; c < conf.cols; ++c) {
            if (s[c] > s[best]) best = c;
        }
        if (below(s[best], threshold) || (background_first && s[0] > s[best])) continue;
        const float* l = loc.ptr<float>(i);
        const auto& p = priors[static_cast<std::size_t>(i)];
        const float cx = l[0] * var[0] * p[2] + p[0];
        const float cy = l[1] * var[1] * p[3] + p[1];
        const float w = std::exp(l[2] * var[2]) * p[2];
        const float h = std::exp(l[3] * var[3]) * p[3];
        push(out, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, best - first, s[best]);
    }
}

void decode_yolov5(const cv::Mat& output, cv::Size input, float threshold, std::vector<Detection>& out) {
    const cv::Mat rows = rows_of(output, "yolov5");
    if (rows.cols < 6) throw std::invalid_argument("yolov5: expected [1,N,5+classes]");
    const float iw = static_cast<float>(input.width), ih = static_cast<float>(input.height);
    for (int i = 0; i < rows.rows; ++i) {
        const float* r = rows.ptr<float>(i);
        if (below(r[4], threshold)) continue;
        int best = 5;
        for (int c = 6; c < rows.cols; ++c) {
            if (r[c] > r[best]) best = c;
        }
        const float score = r[4] * r[best];
        if (below(score, threshold)) continue;
        push(out, (r[0] - r[2] / 2) / iw, (r[1] - r[3] / 2) / ih, (r[0] + r[2] / 2) / iw,
             (r[1] + r[3] / 2) / ih, best - 5, score);
    }
}

void decode_yolov8(const cv::Mat& output, cv::Size input, float threshold, std::vector<Detection>& out) {
    if (output.type() != CV_32F || output.dims != 3 || output.size[0] != 1 || output.size[1] < 5) {
        throw std::invalid_argument("yolov8: expected a float [1,4+classes,N] output");
    }
    const int attrs = output.size[1], n = output.size[2];
    const cv::Mat m(attrs, n, CV_32F, const_cast<float*>(output.ptr<float>()));
    const float iw = static_cast<float>(input.width), ih = static_cast<float>(input.height);
    for (int i = 0; i < n; ++i) {
        int best = 4;
        for (int c = 5; c < attrs; ++c) {
            if (m.at<float>(c, i) > m.at<float>(best, i)) best = c;
        }
        const float score = m.at<float>(best, i);
        if (below(score, threshold)) continue;
        const float cx = m.at<float>(0, i), cy = m.at<float>(1, i), w = m.at<float>(2, i),
                    h = m.at<float>(3, i);
        push(out, (cx - w / 2) / iw, (cy - h / 2) / ih, (cx + w / 2) / iw, (cy + h / 2) / ih, best - 4,
             score);
    }
}

void decode_centernet(const cv::Mat& output, int classes, cv::Size input, float threshold,
                      std::vector<Detection>& out) {
    if (output.type() != CV_32F || output.dims != 4 || output.size[0] != 1 || classes < 1 ||
        output.size[1] != classes + 4) {
        throw std::invalid_argument("centernet: expected a float [1," + std::to_string(classes + 4) +
                                    ",H,W] output (the manifest's classes, then dx, dy, w, h)");
    }
    const int gh = output.size[2], gw = output.size[3];
    const std::size_t plane = static_cast<std::size_t>(gh) * static_cast<std::size_t>(gw);
    const float* base = output.ptr<float>();
    const float* dx = base + plane * static_cast<std::size_t>(classes);
    const float* dy = dx + plane;
    const float* bw = dy + plane;
    const float* bh = bw + plane;
    const float sx = static_cast<float>(input.width) / static_cast<float>(gw);
    const float sy = static_cast<float>(input.height) / static_cast<float>(gh);
    const float iw = static_cast<float>(input.width), ih = static_cast<float>(input.height);
    for (int c = 0; c < classes; ++c) {
        const float* s = base + plane * static_cast<std::size_t>(c);
        for (int r = 0; r < gh; ++r) {
            for (int col = 0; col < gw; ++col) {
                const std::size_t i = static_cast<std::size_t>(r) * static_cast<std::size_t>(gw) +
                                      static_cast<std::size_t>(col);
                const float v = s[i];
                if (below(v, threshold)) continue;
                bool peak = true;
                for (int nr = std::max(0, r - 1); peak && nr <= std::min(gh - 1, r + 1); ++nr) {
                    for (int nc = std::max(0, col - 1); nc <= std::min(gw - 1, col + 1); ++nc) {
                        // Ties keep the first cell in reading order, so a plateau yields one box.
                        const float n = s[static_cast<std::size_t>(nr) * static_cast<std::size_t>(gw) +
                                          static_cast<std::size_t>(nc)];
                        const bool before = nr < r || (nr == r && nc < col);
                        if (n > v || (before && n == v)) {
                            peak = false;
                            break;
                        }
                    }
                }
                if (!peak) continue;
                const float cx = (static_cast<float>(col) + dx[i]) * sx;
                const float cy = (static_cast<float>(r) + dy[i]) * sy;
                const float w = bw[i], h = bh[i];
                push(out, (cx - w / 2) / iw, (cy - h / 2) / ih, (cx + w / 2) / iw, (cy + h / 2) / ih, c, v);
            }
        }
    }
}

}  // namespace kg::vision::dnn
