#pragma once

#include <cstdint>
#include <memory>
#include <opencv2/core.hpp>

namespace kg::vision {

// Which picture a cached result belongs to: the owner's frame number and, as a best effort against
// a caller that forgets begin_frame(), the picture's buffer. It catches a new picture in another
// buffer, not one decoded into the same buffer (same address and size), so begin_frame() stays the
// contract.
class FrameStamp {
public:
    explicit FrameStamp(std::shared_ptr<const std::uint64_t> frame) : frame_(std::move(frame)) {}
    bool holds(const cv::Mat& bgr) const {
        return fresh_ && on_ == *frame_ && data_ == bgr.data && size_ == bgr.size();
    }
    void set(const cv::Mat& bgr) {
        fresh_ = true;
        on_ = *frame_;
        data_ = bgr.data;
        size_ = bgr.size();
    }
    void clear() { fresh_ = false; }

private:
    std::shared_ptr<const std::uint64_t> frame_;
    bool fresh_ = false;
    std::uint64_t on_ = 0;
    const uchar* data_ = nullptr;
    cv::Size size_;
};

}  // namespace kg::vision
