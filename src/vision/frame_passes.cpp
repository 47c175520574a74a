#include "vision/frame_passes.hpp"

namespace kg::vision {

std::shared_ptr<classic::FrontalFaces> FramePasses::frontal_faces(const std::string& cascade_dir) {
    for (const auto& f : faces_) {
        if (f->cascade_dir() == cascade_dir) return f;
    }
    faces_.push_back(std::make_shared<classic::FrontalFaces>(cascade_dir, frame_));
    return faces_.back();
}

}  // namespace kg::vision
