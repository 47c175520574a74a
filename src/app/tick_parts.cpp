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
        if (it == parts_.end() || it->second.failures == 0) return true;
        auto& p = it->second;
        // Only after a failed line: a part that fails on every other tick would otherwise say once a
        // minute that it failed and every second that it works again.
        if (p.said_failing) {
            log_->info("supervision: {} works again, after {} failure(s) over {} s (the last: {})", name,
                       p.failures, whole_seconds(p.last_failure - p.first_failure), p.why);
        }
        p.failures = 0;
        p.said_failing = false;
        return true;
    }
    if (it == parts_.end()) it = parts_.emplace(std::string(name), Part{}).first;
    auto& p = it->second;
    if (p.failures == 0) p.first_failure = now;
    ++p.failures;
    ++p.total;
    p.last_failure = now;
    p.why = why;
    if (!p.throttle) p.throttle = std::make_unique<LogThrottle>(log_every_);
    auto n = p.throttle->pass(now);
    // A reason not said before goes out at once: held back, it could be lost to a recovery.
    if (n == 0 && why != p.said_why) n = 1;
    if (n > 0) {
        log_->error("supervision: {} failed ({} time(s) since the last line): {}; the other parts go on",
                    name, n, why);
        p.said_why = why;
        p.said_failing = true;
    }
    return false;
}

std::vector<std::string> TickParts::failing(Clock::time_point now) const {
    std::vector<std::string> out;
    for (const auto& [name, p] : parts_) {
        if (p.failures > 0)
            out.push_back(
                fmt::format("{} failing for {} s: {}", name, whole_seconds(now - p.first_failure), p.why));
    }
    return out;
}

std::map<std::string, std::uint64_t> TickParts::failures_total() const {
    std::map<std::string, std::uint64_t> out;
    for (const auto& [name, p] : parts_) out[name] = p.total;
    return out;
}

}  // namespace kg::app
