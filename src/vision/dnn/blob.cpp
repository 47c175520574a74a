#include "vision/dnn/blob.hpp"

#include <array>
#include <stdexcept>

namespace kg::vision::dnn {

void make_blob(const cv::Mat& bgr, bool rgb, const cv::Scalar& mean, double scale, cv::Mat& blob) {
    if (bgr.type() != CV_8UC3 && bgr.type() != CV_8UC1)
        throw std::invalid_argument("make_blob: expected an 8-bit picture with 3 channels (BGR) or 1 (grey)");
    const int step = bgr.channels();
    const int rows = bgr.rows, cols = bgr.cols;
    const std::array<int, 4> shape{1, 3, rows, cols};
    blob.create(4, shape.data(), CV_32F);
    // blobFromImage computes in float: (float(v) - float(mean)) * float(scale). The table holds
    // exactly those values, so both give the same bits.
    std::array<std::array<float, 256>, 3> lut{};
    for (int c = 0; c < 3; ++c) {
        const auto m = static_cast<float>(mean[c]);
        const auto s = static_cast<float>(scale);
        for (int v = 0; v < 256; ++v) lut[c][v] = (static_cast<float>(v) - m) * s;
    }
    // Output channel c reads source channel from[c]; a grey picture feeds all three.
    const std::array<int, 3> from = step == 1 ? std::array<int, 3>{0, 0, 0}
                                    : rgb     ? std::array<int, 3>{2, 1, 0}
                                              : std::array<int, 3>{0, 1, 2};
    const std::size_t plane = static_cast<std::size_t>(rows) * cols;
    float* out0 = blob.ptr<float>();
    float* out1 = out0 + plane;
    float* out2 = out1 + plane;
    for (int y = 0; y < rows; ++y) {
        const auto* p = bgr.ptr<unsigned char>(y);
        const std::size_t row = static_cast<std::size_t>(y) * cols;
        for (int x = 0; x < cols; ++x, p += step) {
            out0[row + x] = lut[0][p[from[0]]];
            out1[row + x] = lut[1][p[from[1]]];
            out2[row + x] = lut[2][p[from[2]]];
        }
    }
}

}  // namespace kg::vision::dnn
