#pragma once
// What the daemon's supervision timer does each time: the gateway's tick, then systemd's watchdog
// fed. Not fed once a part of the tick has failed on every run for `failing_limit` or longer: a
// gateway whose supervision is broken for good (its sensor rules, its camera states, its expiry)
// is restarted by systemd, as one whose loop hangs is. A part that fails for a while (a disk full
// for a minute, a broker away) and works again goes on being fed.

#include <spdlog/spdlog.h>

#include <chrono>
#include <functional>
#include <memory>

#include "app/gateway.hpp"
#include "common/log_throttle.hpp"

namespace kg::app {

class Supervision {
public:
    // `feed`: feeds the watchdog (sd_notify WATCHDOG=1). `failing_limit` zero: no watchdog, fed
    // whatever fails (there is nothing to restart the gateway).
    Supervision(Gateway& gateway, std::function<void()> feed,
                std::chrono::steady_clock::duration failing_limit, std::shared_ptr<spdlog::logger> log);

    // The gateway's tick, then the watchdog fed unless a part is broken for good. Never throws: a
    // tick that throws must not take the daemon down with it (out of io.run(), then again in
    // ~Gateway: std::terminate, a restart loop).
    void tick();
    // Whether the last tick() fed the watchdog.
    bool feeding() const { return !withheld_; }

private:
    Gateway& gateway_;
    std::function<void()> feed_;
    const std::chrono::steady_clock::duration failing_limit_;
    std::shared_ptr<spdlog::logger> log_;
    LogThrottle failures_;
    bool withheld_ = false;
};

}  // namespace kg::app
