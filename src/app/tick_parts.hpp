#pragma once
// The parts of the gateway's supervision tick (camera states, the gateway message, the sensor
// rules, evidence expiry, ...), each run on its own: one that throws is logged with its name and
// why, and the parts after it still run. Run one after another unguarded, a part that threw on
// every tick stopped every part after it for good: a failing state publish left the sensor rules
// unrun, and a warm fridge raised no alert.

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/log_throttle.hpp"

namespace kg::app {

class TickParts {
public:
    using Clock = std::chrono::steady_clock;

    // `log_every`: a part failing for the same reason is logged at most this often, each line
    // standing for the failures held back, and said to work again only after such a line; a
    // failure for a reason not said before goes out at once.
    explicit TickParts(std::shared_ptr<spdlog::logger> log,
                       Clock::duration log_every = std::chrono::minutes(1));

    // Runs `part` named `name`. What it throws is caught and logged (naming the part and why); false
    // then, and the caller goes on with its next part. On the tick's thread.
    bool run(std::string_view name, const std::function<void()>& part, Clock::time_point now = Clock::now());

    // The parts whose latest run failed, by name: "<name> failing for <n> s: <why>" (for /readyz).
    std::vector<std::string> failing(Clock::time_point now = Clock::now()) const;
    // Each part that ever failed, with its failures since this TickParts began (for the metrics).
    std::map<std::string, std::uint64_t> failures_total() const;

private:
    struct Part {
        std::uint64_t failures = 0;  // since it last worked
        std::uint64_t total = 0;     // ever
        Clock::time_point first_failure, last_failure;
        std::string why;                        // the latest failure's
        std::string said_why;                   // the last reason a line gave
        bool said_failing = false;              // a failed line went out since the part last worked
        std::unique_ptr<LogThrottle> throttle;  // its own: one noisy part does not hide another
    };

    std::shared_ptr<spdlog::logger> log_;
    const Clock::duration log_every_;
    std::map<std::string, Part, std::less<>> parts_;
};

}  // namespace kg::app
