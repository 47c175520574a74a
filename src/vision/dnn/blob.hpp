#pragma once
// The network input from an 8-bit BGR picture already at the input size: NCHW float, channels in
// the network's order, (v - mean) * scale. The same numbers as cv::dnn::blobFromImage, in one pass
// through a per-channel lookup table instead of its float copy, subtraction, scaling and split:
// OpenCV 4.6 spends ~7.6 ms on those for a 512x512 input here, about a quarter of the network's own
// time; this takes under 1 ms.

#include <opencv2/core/mat.hpp>

namespace kg::vision::dnn {

// bgr: CV_8UC3, or CV_8UC1 (grey, fed to all three channels). mean: per channel in the network's order (as
// blobFromImage with swapRB takes it). blob is reallocated only when the size changes.
void make_blob(const cv::Mat& bgr, bool rgb, const cv::Scalar& mean, double scale, cv::Mat& blob);

}  // namespace kg::vision::dnn
