#pragma once
// A model manifest (models/<name>.yaml): which network file, how to feed it, how to decode its
// outputs, and what its classes mean to the gateway (which check, which label, which severity).
// A user's own model gets events with no code change: map its class names to checks here.

#include <opencv2/core/types.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "vision/dnn/decoders.hpp"

namespace kg::vision::dnn {

enum class Layout { ultraface, ssd, yolov5, yolov8, centernet };

struct ModelClass {
    std::string name;   // as the model calls it
    std::string check;  // the check it feeds (empty: not used for events)
    std::string label;  // the label events carry (default: name)
    int severity = 3;
};

// How a network wants its input (shared by detectors and classifiers).
struct InputSpec {
    cv::Size size{320, 240};
    bool rgb = true;           // the network wants RGB (else BGR)
    cv::Scalar mean{0, 0, 0};  // subtracted per channel, in the network's channel order
    double scale = 1.0 / 255;  // multiplied after the mean
};

// The second stage of a two-stage model: every box the detector finds is cut out (widened by
// `expand` of its size on each side, made square around its centre when `square`), resized to
// the classifier's input and classified; the box takes the classifier's best class. Its score is
// detector score x class probability. A box whose best probability is under that class's
// `min_probability` is dropped (neither class is sure enough to raise or clear an alarm), and so is
// a box whose combined score is under `min_score` (a weak head that the classifier is sure of is
// still a weak finding: the threshold an installer moves to trade recall for precision).
struct ClassifierSpec {
    std::string model;   // .onnx, resolved
    std::string output;  // output name (empty: the network's only output), [1,K] probabilities
    InputSpec input;
    float expand = 0.15f;
    bool square = true;
    std::vector<ModelClass> classes;     // by output index
    std::vector<float> min_probability;  // per class, 0 = keep always
    float min_score = 0;                 // on detector score x class probability
};

struct Manifest {
    std::string name;
    std::string source;  // the manifest's own path, for messages
    std::string model;   // .onnx or .caffemodel, resolved
    std::string config;  // .prototxt for Caffe, resolved; empty for ONNX
    // centernet: more networks of the model's outputs, fed alike. Each is run on the picture and
    // the decoder reads the mean of all their maps: an ensemble of separately trained networks,
    // whose mistakes differ more than their finds. Each adds a network's CPU.
    struct EnsembleMember {
        std::string model;  // .onnx, resolved
        // Empty: the model's input, and the mean takes all its maps. Another size (cheaper when
        // smaller): only its score maps join the mean, resized to the model's grid; the boxes'
        // offsets and sizes, in another grid and other pixels, are the other networks'.
        cv::Size input;
    };
    std::vector<EnsembleMember> ensemble;
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
    // Present: the detector's boxes are classified again and take the classifier's classes.
    std::optional<ClassifierSpec> classifier;
};

// The classes a model's detections carry: the classifier's when it has one (its first stage only
// finds the boxes), else the detector's.
inline const std::vector<ModelClass>& detection_classes(const Manifest& m) {
    return m.classifier ? m.classifier->classes : m.classes;
}

class ManifestError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Relative model paths are resolved against the manifest's folder; `${NAME}` from the environment.
// Throws ManifestError naming the file, line and key.
Manifest load_manifest(const std::string& path);

}  // namespace kg::vision::dnn
