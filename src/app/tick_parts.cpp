#include "app/tick_parts.hpp"

#include <fmt/format.h>

#include <exception>

namespace kg::app {
namespace {

long long whole_seconds(TickParts::Clock::duration d) {
    return std::chrono::duration_cast<std::chrono::seconds>(d).count();
}

}  // namespace

TickParts::TickParts(std::shared_ptr<spdlog::logger> log, Clock::duration log_every)
    : log_(std::move(log)), log_every_(log_every) {}

bool TickParts::run(std::string_view name, const std::function<void()>& part, Clock::time_point now) {
    std::string why;
    try {
        part();
    } catch (const std::exception& e) {
        why = e.what();
    } catch (...) {
        why = "an exception that is no std::exception";
    }
    auto it = parts_.find(name);
    if (why.empty()) {
        if (it != parts_.end() && it->second.failures > 0) {
            log_->info("supervision: {} works again, after {} failure(s) over {} s", name,
                       it->second.failures,
                       whole_seconds(it->second.last_failure - it->second.first_failure));
            it->second.failures = 0;
        }
        return true;
    }
    if (it == parts_.end()) it = parts_.emplace(std::string(name), Part{}).first;
    auto& p = it->second;
    if (p.failures == 0) p.first_failure = now;
    ++p.failures;
    p.last_failure = now;
    p.why = why;
    if (!p.throttle) p.throttle = std::make_unique<LogThrottle>(log_every_);
    if (const auto n = p.throttle->pass(now)) {
        log_->error("supervision: {} failed ({} time(s) since the last line): {}; the other parts go on",
                    name, n, why);
    }
    return false;
}

std::optional<std::string> TickParts::failing_for(Clock::duration bound) const {
    for (const auto& [name, p] : parts_) {
        if (p.failures == 0 || p.last_failure - p.first_failure < bound) continue;
        return fmt::format("{} has failed on every run for {} s ({} times): {}", name,
                           whole_seconds(p.last_failure - p.first_failure), p.failures, p.why);
    }
    return std::nullopt;
}

}  // namespace kg::app
