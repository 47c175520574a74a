#pragma once
// One forward pass of a network per frame, read by every detector that needs it. The project's two
// hygiene checks use one head network (its `heads` map for the mask check, its `covering` maps for
// the head-covering check): run once, read twice, instead of once per check.
//
// Detectors whose manifests name the same network file and feed it the same input (size, stretch or
// letterbox, colour order, mean, scale) share a pass through one NetworkPasses. Like detectors, it is
// not thread-safe: one per camera pipeline, which analyses one frame at a time and calls
// begin_frame() before the checks see it.

#include <cstdint>
#include <memory>
#include <opencv2/dnn.hpp>
#include <string>
#include <vector>

#include "vision/dnn/manifest.hpp"

namespace kg::vision::dnn {

class NetworkPass {
public:
    // `frame`: the owner's frame counter, or null for a pass of its own (runs on every call).
    // Throws ManifestError naming the manifest when the network cannot be loaded.
    NetworkPass(const Manifest& manifest, std::shared_ptr<const std::uint64_t> frame);

    // The network's outputs when a manifest names none.
    std::vector<std::string> unconnected_outputs() const { return net_.getUnconnectedOutLayersNames(); }
    // Adds outputs a reader needs to every later run; returns their places in run()'s result.
    // Throws ManifestError naming `reader` (the reader's manifest) when the network has no layer
    // of that name: a wrong name in one manifest must fail at start-up, not at the first forward
    // pass, where it would also break every other check reading this network.
    std::vector<std::size_t> add_outputs(const std::vector<std::string>& names, const std::string& reader);
    // The check add_outputs() makes before it adds anything, for a reader that must check several
    // passes before it joins any.
    void check_outputs(const std::vector<std::string>& names, const std::string& reader) const;
    // The shape of output `name` at this pass's input (shape inference, no forward pass).
    cv::dnn::MatShape output_shape(const std::string& name) const;

    // The outputs on this picture: computed on the first call of a frame, the same Mats after.
    const std::vector<cv::Mat>& run(const cv::Mat& bgr);
    // Letterbox: multiply the input's normalised box coordinates by these to get the picture's.
    float fx() const { return fx_; }
    float fy() const { return fy_; }

    // Whether `manifest` feeds this network exactly as this pass does.
    bool feeds_alike(const Manifest& manifest) const;
    // Readers that asked for outputs (two or more: a shared pass).
    std::size_t readers() const { return readers_; }
    // Forward passes run so far (for tests and logs: shared readers add none).
    std::uint64_t runs() const { return runs_; }

private:
    std::string source_;  // the first manifest's path, for messages
    std::string model_, config_;
    cv::Size input_;
    bool rgb_, letterbox_;
    cv::Scalar mean_;
    double scale_;

    cv::dnn::Net net_;
    std::vector<std::string> names_;
    std::size_t readers_ = 0;
    std::shared_ptr<const std::uint64_t> frame_;
    bool fresh_ = false;        // outputs_ hold the frame *frame_ names
    std::uint64_t ran_on_ = 0;  // that frame
    // The picture that frame was. Best effort against a caller that forgets begin_frame(): it
    // catches a new picture in another buffer, not one decoded into the same buffer (same
    // address and size), so begin_frame() stays the contract.
    const uchar* ran_data_ = nullptr;
    cv::Size ran_size_;
    std::uint64_t runs_ = 0;
    float fx_ = 1.0f, fy_ = 1.0f;
    // Reused between frames.
    cv::Mat resized_, padded_, blob_;
    std::vector<cv::Mat> outputs_;
};

class NetworkPasses {
public:
    NetworkPasses() : frame_(std::make_shared<std::uint64_t>(0)) {}
    NetworkPasses(const NetworkPasses&) = delete;
    NetworkPasses& operator=(const NetworkPasses&) = delete;

    // The pass feeding `manifest`'s network, made on first use.
    std::shared_ptr<NetworkPass> pass_for(const Manifest& manifest);
    // A new picture: every pass runs again when first read.
    void begin_frame() { ++*frame_; }
    // Passes read by more than one detector.
    std::size_t shared() const;
    // Passes with a reader: the networks run per frame when every check reads.
    std::size_t count() const;

private:
    std::shared_ptr<std::uint64_t> frame_;
    std::vector<std::shared_ptr<NetworkPass>> passes_;
};

}  // namespace kg::vision::dnn
