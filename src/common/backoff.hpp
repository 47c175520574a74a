#pragma once
// Capped exponential back-off for reconnects: min, 2*min, 4*min, ... up to max, forever; back to
// min only after a connection that lasted.

#include <algorithm>
#include <chrono>

namespace kg {

class Backoff {
public:
    using Clock = std::chrono::steady_clock;

    // `stable`: how long a connection must last for the next wait to start from `min` again.
    Backoff(std::chrono::milliseconds min, std::chrono::milliseconds max,
            Clock::duration stable = std::chrono::minutes(1))
        : min_(min), max_(max), next_(min), stable_(stable) {}

    // The wait before the next attempt.
    std::chrono::milliseconds next(Clock::time_point now = Clock::now()) {
        if (connected_ && now - connected_at_ >= stable_) next_ = min_;
        connected_ = false;
        const auto current = next_;
        next_ = std::min(max_, next_ * 2);
        return current;
    }

    // A connection was made. Resetting here instead went back to `min` at every connect: a broker
    // that closes each one at once (another box with the same client id takes the session over,
    // an ACL that disconnects) was reconnected to every second, for ever.
    void connected(Clock::time_point now = Clock::now()) {
        connected_ = true;
        connected_at_ = now;
    }

    // Back to `min` now (a configuration change, a test).
    void reset() {
        next_ = min_;
        connected_ = false;
    }

private:
    std::chrono::milliseconds min_, max_, next_;
    Clock::duration stable_;
    bool connected_ = false;
    Clock::time_point connected_at_{};
};

}  // namespace kg
