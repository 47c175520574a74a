#pragma once
// Output decoders for the detector layouts the dnn back-end understands. Each takes the network's
// raw output tensors and appends detections with boxes normalised to the network input
// (before any letterbox is undone), class ids counted without the background class.

#include <opencv2/core/mat.hpp>
#include <vector>

#include "vision/detection.hpp"

namespace kg::vision::dnn {

// UltraFace-style: boxes [1,N,4] already decoded to normalised x1,y1,x2,y2; scores [1,N,C] with
// class 0 = background.
void decode_ultraface(const cv::Mat& boxes, const cv::Mat& scores, float threshold,
                      std::vector<Detection>& out);

// SSD with prior boxes generated from feature-map sizes, anchor sizes and ratios (the AIZOO /
// "anchor generator" convention): per feature map cell, row-major, first every size at the first
// ratio, then the first size at every other ratio.
struct PriorSpec {
    std::vector<cv::Size> feature_maps;             // width x height per map
    std::vector<std::vector<float>> anchor_sizes;   // per map, normalised
    std::vector<std::vector<float>> anchor_ratios;  // per map, width/height
};
// Priors as (cx, cy, w, h), normalised.
std::vector<cv::Vec4f> make_priors(const PriorSpec& spec);

// loc [1,N,4] encoded (dx, dy, dw, dh) against the priors with `variances` (x, y, w, h);
// conf [1,N,C] class probabilities; `background_first`: class 0 is background and skipped.
void decode_ssd(const cv::Mat& loc, const cv::Mat& conf, const std::vector<cv::Vec4f>& priors,
                const cv::Vec4f& variances, bool background_first, float threshold,
                std::vector<Detection>& out);

// YOLOv5 layout: [1,N,5+C] = cx, cy, w, h (input pixels), objectness, C class scores.
void decode_yolov5(const cv::Mat& output, cv::Size input, float threshold, std::vector<Detection>& out);
// YOLOv8 layout: [1,4+C,N] = cx, cy, w, h (input pixels) then C class scores, no objectness.
void decode_yolov8(const cv::Mat& output, cv::Size input, float threshold, std::vector<Detection>& out);

// CenterNet layout (the project's own models, models/train/train_head_detector.py): [1,C+4,H,W] =
// C score maps (already probabilities), then per cell dx, dy (the centre in cells from the cell's
// top-left corner) and w, h (input pixels). The centre is ((col + dx) * input.w / W, (row + dy) *
// input.h / H). A detection is a cell scoring >= threshold and at least as high as its 8
// neighbours in the same map (the peak stands in for NMS within a class).
void decode_centernet(const cv::Mat& output, int classes, cv::Size input, float threshold,
                      std::vector<Detection>& out);

}  // namespace kg::vision::dnn
