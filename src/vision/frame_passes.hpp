#pragma once
// The work a camera's checks share on each frame: network passes (dnn/network_pass.hpp), the
// classic back-end's frontal-face search (classic/frontal_faces.hpp) and the grey picture (motion
// and camera health). One per camera pipeline, which
// analyses one frame at a time and calls begin_frame() before the checks see a new picture.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vision/classic/frontal_faces.hpp"
#include "vision/dnn/network_pass.hpp"
#include "vision/frame_stamp.hpp"

namespace kg::vision {

class FramePasses {
public:
    FramePasses() : frame_(std::make_shared<std::uint64_t>(0)) {}
    FramePasses(const FramePasses&) = delete;
    FramePasses& operator=(const FramePasses&) = delete;

    dnn::NetworkPasses& networks() { return networks_; }
    const dnn::NetworkPasses& networks() const { return networks_; }
    // The frontal-face search of the cascades in `cascade_dir`, made on first use.
    std::shared_ptr<classic::FrontalFaces> frontal_faces(const std::string& cascade_dir);
    // The picture in grey: converted on the first call of a frame, the same Mat after.
    const cv::Mat& gray(const cv::Mat& bgr);
    std::uint64_t gray_conversions() const { return gray_conversions_; }  // for tests
    // Lets go of the networks and face searches, which only detectors read, once they are gone: what
    // is left serves the checks that read the grey picture (a camera's analysis handed to the next
    // run, which holds its own networks).
    void drop_detector_work() {
        networks_.clear();
        faces_.clear();
    }
    // A new picture: every shared pass runs again when first read.
    void begin_frame() {
        ++*frame_;
        networks_.begin_frame();
    }

private:
    std::shared_ptr<std::uint64_t> frame_;
    dnn::NetworkPasses networks_;
    std::vector<std::shared_ptr<classic::FrontalFaces>> faces_;
    FrameStamp gray_stamp_{frame_};
    cv::Mat gray_;
    std::uint64_t gray_conversions_ = 0;
};

}  // namespace kg::vision
