#pragma once
// Picks frames at the analysis rate from a stream of any frame rate, by the frames' own times,
// so a 25 fps camera analysed at 2 fps gives one frame every 0.5 s of stream time.

#include <limits>

namespace kg::ingest {

class FrameSampler {
public:
    explicit FrameSampler(double fps) : interval_(1.0 / fps) {}

    bool accept(double t) {
        // A jump back (loop, camera restart) or far ahead (lost packets) starts the schedule again.
        if (!started_ || t < next_ - interval_ - 1.0 || t > next_ + 10.0 * interval_) {
            started_ = true;
            next_ = t + interval_;
            return true;
        }
        if (t + kTolerance < next_) return false;
        next_ += interval_;
        if (next_ <= t) next_ = t + interval_;  // fell behind: do not burst to catch up
        return true;
    }

    void reset() { started_ = false; }

private:
    static constexpr double kTolerance = 1e-3;
    double interval_;
    double next_ = 0.0;
    bool started_ = false;
};

}  // namespace kg::ingest
