#pragma once
// A decoded camera frame at the analysis size, as the checks see it.

#include <cstdint>
#include <opencv2/core/mat.hpp>

#include "common/time.hpp"

namespace kg::ingest {

struct Frame {
    cv::Mat image;           // BGR, analysis width x height; buffer reused frame after frame
    std::uint64_t seq = 0;   // number of the sampled frame since the worker started
    TimePoint time{};        // wall-clock time the frame was decoded (reported to people)
    SteadyPoint steady{};    // the same moment on the monotonic clock (event timing)
    double stream_time = 0;  // seconds on the stream's own clock
    bool keyframe = false;
};

}  // namespace kg::ingest
