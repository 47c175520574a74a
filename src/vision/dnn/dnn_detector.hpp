#pragma once
// Runs any ONNX or Caffe detector through OpenCV's cv::dnn as its manifest describes: resize
// (stretch or letterbox), colour order, mean and scale; forward; decode; NMS; labels. A CenterNet
// manifest may name an ensemble: its networks' maps are averaged before decoding.

#include <memory>

#include "vision/detection.hpp"
#include "vision/dnn/manifest.hpp"
#include "vision/dnn/network_pass.hpp"

namespace kg::vision::dnn {

class DnnDetector final : public Detector {
public:
    // Throws ManifestError when the model cannot be loaded, naming the file. With `passes`, the
    // network's forward pass is shared with the other detectors built on the same passes that feed
    // the same network alike (network_pass.hpp); the caller then calls passes->begin_frame() for
    // every new picture. Without, this detector runs its network on every call.
    explicit DnnDetector(Manifest manifest, NetworkPasses* passes = nullptr);

    void detect(const cv::Mat& bgr, std::vector<Detection>& out) override;
    const std::vector<std::string>& labels() const override { return labels_; }
    const Manifest& manifest() const { return manifest_; }

private:
    void check_shapes(const std::vector<std::string>& names) const;
    DnnDetector(Manifest manifest, NetworkPasses* passes, std::unique_ptr<NetworkPasses> own);

    Manifest manifest_;
    // Without the caller's passes: passes of its own, a new frame on every call, so that an
    // ensemble's networks still share the frame's preparation.
    std::unique_ptr<NetworkPasses> own_passes_;
    std::shared_ptr<NetworkPass> pass_;
    std::vector<std::size_t> outputs_;  // where the layout's outputs are in the pass's
    // Manifest::ensemble: a pass per further network (shared like any other), where its output is.
    struct Member {
        std::shared_ptr<NetworkPass> pass;
        std::size_t output;
        bool resized;  // at another input: its score maps are resized to the model's grid
    };
    // The mean of the model's maps and its members' into mean_.
    void average_members(const cv::Mat& model_maps, const cv::Mat& bgr);

    std::vector<Member> members_;
    cv::Mat mean_;     // the ensemble's mean maps, reused between frames
    cv::Mat resized_;  // a member's score map at the model's grid, reused between frames
    std::vector<cv::Vec4f> priors_;
    std::vector<std::string> labels_;
};

}  // namespace kg::vision::dnn
