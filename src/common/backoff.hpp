#pragma once
// Capped exponential back-off for reconnects: min, 2*min, 4*min, ... up to max, forever.

#include <algorithm>
#include <chrono>

namespace kg {

class Backoff {
public:
    Backoff(std::chrono::milliseconds min, std::chrono::milliseconds max)
        : min_(min), max_(max), next_(min) {}

    std::chrono::milliseconds next() {
        const auto current = next_;
        next_ = std::min(max_, next_ * 2);
        return current;
    }
    void reset() { next_ = min_; }

private:
    std::chrono::milliseconds min_, max_, next_;
};

}  // namespace kg
