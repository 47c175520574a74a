#include "app/supervision.hpp"

#include <exception>
#include <optional>
#include <string>

namespace kg::app {

Supervision::Supervision(Gateway& gateway, std::function<void()> feed,
                         std::chrono::steady_clock::duration failing_limit,
                         std::shared_ptr<spdlog::logger> log)
    : gateway_(gateway), feed_(std::move(feed)), failing_limit_(failing_limit), log_(std::move(log)) {}

void Supervision::tick() {
    try {
        gateway_.tick();
    } catch (const std::exception& e) {
        // Its parts catch their own: only what runs between them comes here.
        if (const auto n = failures_.pass())
            log_->error("supervision tick failed ({} time(s) since the last line): {}", n, e.what());
    }
    std::optional<std::string> broken;
    if (failing_limit_.count() > 0) broken = gateway_.failing_part(failing_limit_);
    if (broken) {
        if (!withheld_) {
            log_->error(
                "supervision broken: {}; systemd's watchdog is no longer fed, so that systemd restarts the "
                "gateway",
                *broken);
        }
        withheld_ = true;
        return;
    }
    if (withheld_) log_->warn("supervision works again: systemd's watchdog is fed again");
    withheld_ = false;
    feed_();  // the supervision loop is alive, and its parts work
}

}  // namespace kg::app
