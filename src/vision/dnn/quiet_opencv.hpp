#pragma once
// OpenCV logs a failed shape inference as five lines of its internals before it throws; the
// callers' errors say what they say, naming the manifest. The level is process-wide: held while
// detectors are built, it silences only other threads' OpenCV lines of that moment.

#include <opencv2/core/utils/logger.hpp>

namespace kg::vision::dnn {

class QuietOpenCv {
public:
    QuietOpenCv() : was_(cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT)) {}
    ~QuietOpenCv() { cv::utils::logging::setLogLevel(was_); }
    QuietOpenCv(const QuietOpenCv&) = delete;
    QuietOpenCv& operator=(const QuietOpenCv&) = delete;

private:
    cv::utils::logging::LogLevel was_;
};

}  // namespace kg::vision::dnn
