#pragma once
// One forward pass of a network per frame, read by every detector that needs it. The project's two
// hygiene checks use one head network (its `heads` map for the mask check, its `covering` maps for
// the head-covering check): run once, read twice, instead of once per check.
//
// Detectors whose manifests name the same network file and feed it the same input (size, stretch or
// letterbox, colour order, mean, scale) share a pass through one NetworkPasses. Passes of different
// networks fed alike (an ensemble's members) share the frame's preparation, a NetworkInput: the
// frame is resized and converted to a blob once for all of them. Like detectors, NetworkPasses is
// not thread-safe: one per camera pipeline, which analyses one frame at a time and calls
// begin_frame() before the checks see it.

#include <cstdint>
#include <memory>
#include <opencv2/dnn.hpp>
#include <string>
#include <vector>

#include "vision/dnn/manifest.hpp"
#include "vision/frame_stamp.hpp"

namespace kg::vision::dnn {

// A frame made into a network's input: resized (stretched, or letterboxed), colour-ordered and
// normalised into a blob, once per frame for every network fed alike.
class NetworkInput {
public:
    // `frame`: the owner's frame counter (NetworkPasses').
    NetworkInput(const Manifest& manifest, std::shared_ptr<const std::uint64_t> frame);

    // Whether `manifest` feeds its network exactly as this input is made.
    bool feeds_alike(const Manifest& manifest) const;
    // The blob of this picture: made on the first call of a frame, the same Mat after. (cv::dnn
    // copies an input on setInput(), so several networks may be given it.)
    const cv::Mat& blob(const cv::Mat& bgr);
    cv::Size size() const { return input_; }
    // Letterbox: multiply the input's normalised box coordinates by these to get the picture's.
    float fx() const { return fx_; }
    float fy() const { return fy_; }
    // Frames prepared so far (for tests: the networks sharing this input add none).
    std::uint64_t preparations() const { return preparations_; }

private:
    cv::Size input_;
    bool rgb_, letterbox_;
    cv::Scalar mean_;
    double scale_;
    FrameStamp stamp_;
    std::uint64_t preparations_ = 0;
    float fx_ = 1.0f, fy_ = 1.0f;
    // Reused between frames.
    cv::Mat resized_, padded_, blob_;
};

class NetworkPass {
public:
    // `frame`: the owner's frame counter (NetworkPasses'); `input`: the frame's preparation, shared
    // with other networks fed alike. Throws ManifestError naming the manifest when the network
    // cannot be loaded.
    NetworkPass(const Manifest& manifest, std::shared_ptr<const std::uint64_t> frame,
                std::shared_ptr<NetworkInput> input);

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
    // Throws ManifestError, naming `reader` and the input size, when the network cannot take that
    // input (e.g. a size off its stride).
    cv::dnn::MatShape output_shape(const std::string& name, const std::string& reader = {}) const;

    // The outputs on this picture: computed on the first call of a frame, the same Mats after.
    const std::vector<cv::Mat>& run(const cv::Mat& bgr);
    // Letterbox: multiply the input's normalised box coordinates by these to get the picture's.
    // Those of the picture the outputs are of: the shared input may since have been made from
    // another picture (a caller that forgot begin_frame()).
    float fx() const { return fx_; }
    float fy() const { return fy_; }
    const NetworkInput& input() const { return *input_; }

    // Whether `manifest` feeds this network exactly as this pass does.
    bool feeds_alike(const Manifest& manifest) const;
    // Readers that asked for outputs (two or more: a shared pass).
    std::size_t readers() const { return readers_; }
    // Forward passes run so far (for tests and logs: shared readers add none).
    std::uint64_t runs() const { return runs_; }

private:
    std::string source_;  // the first manifest's path, for messages
    std::string model_, config_;
    std::shared_ptr<NetworkInput> input_;

    cv::dnn::Net net_;
    std::vector<std::string> names_;
    std::size_t readers_ = 0;
    FrameStamp stamp_;  // which picture outputs_ hold
    std::uint64_t runs_ = 0;
    float fx_ = 1.0f, fy_ = 1.0f;
    std::vector<cv::Mat> outputs_;  // reused between frames
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
    // Frame preparations (resize and blob) per frame when every check reads.
    std::size_t inputs() const;
    // Lets go of every network and preparation (the detectors that read them gone already).
    void clear() {
        passes_.clear();
        inputs_.clear();
    }

private:
    std::shared_ptr<std::uint64_t> frame_;
    std::vector<std::shared_ptr<NetworkInput>> inputs_;
    std::vector<std::shared_ptr<NetworkPass>> passes_;
};

}  // namespace kg::vision::dnn
