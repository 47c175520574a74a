#pragma once
// A log line repeated by what clients do (refused connections, refused viewers) goes through at
// most once per interval, with how many were held back: a client in a loop must not flood the
// journal, whose rate limit would then drop the gateway's own lines.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>

namespace kg {

class LogThrottle {
public:
    using Clock = std::chrono::steady_clock;

    explicit LogThrottle(Clock::duration every = std::chrono::minutes(1)) : every_(every) {}

    // 0: hold this occurrence back. Otherwise log now: the number of occurrences the line stands
    // for, this one and those held back since the last line.
    std::uint64_t pass(Clock::time_point now = Clock::now()) {
        std::lock_guard lock(mutex_);
        ++held_;
        if (last_ && now - *last_ < every_) return 0;
        last_ = now;
        const auto n = held_;
        held_ = 0;
        return n;
    }

private:
    const Clock::duration every_;
    std::mutex mutex_;
    std::optional<Clock::time_point> last_;
    std::uint64_t held_ = 0;
};

}  // namespace kg
