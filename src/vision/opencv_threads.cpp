#include "vision/opencv_threads.hpp"

#include <opencv2/core/utility.hpp>

namespace kg::vision {

void run_opencv_on_callers_threads() {
    // 0, not 1: OpenCV's documented "no threading", each parallel_for_ run as a plain loop.
    cv::setNumThreads(0);
}

}  // namespace kg::vision
