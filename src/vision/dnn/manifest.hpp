#pragma once
// A model manifest (models/<name>.yaml): which network file, how to feed it, how to decode its
// outputs, and what its classes mean to the gateway (which check, which label, which severity).
// A user's own model gets events with no code change: map its class names to checks here.

#include <opencv2/core/types.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "vision/dnn/decoders.hpp"

namespace kg::vision::dnn {

enum class Layout { ultraface, ssd, yolov5, yolov8 };

struct ModelClass {
    std::string name;   // as the model calls it
    std::string check;  // the check it feeds (empty: not used for events)
    std::string label;  // the label events carry (default: name)
    int severity = 3;
};

struct Manifest {
    std::string name;
    std::string source;  // the manifest's own path, for messages
    std::string model;   // .onnx or .caffemodel, resolved
    std::string config;  // .prototxt for Caffe, resolved; empty for ONNX
    cv::Size input{320, 240};
    bool rgb = true;           // the network wants RGB (else BGR)
    cv::Scalar mean{0, 0, 0};  // subtracted per channel, in the network's channel order
    double scale = 1.0 / 255;  // multiplied after the mean
    bool letterbox = false;    // keep the aspect ratio and pad (YOLO) instead of stretching
    Layout layout = Layout::ultraface;
    std::vector<std::string> outputs;  // output names in the order the layout reads them
    PriorSpec priors;                  // ssd
    cv::Vec4f variances{0.1f, 0.1f, 0.2f, 0.2f};
    bool background_first = false;  // ssd: class 0 is background
    float score_threshold = 0.5f;
    float nms_iou = 0.4f;
    bool class_agnostic_nms = false;
    float nms_area_offset = 0.0f;     // see non_max_suppression()
    std::vector<ModelClass> classes;  // by class index (background excluded)
};

class ManifestError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Relative model paths are resolved against the manifest's folder; `${NAME}` from the environment.
// Throws ManifestError naming the file, line and key.
Manifest load_manifest(const std::string& path);

}  // namespace kg::vision::dnn
