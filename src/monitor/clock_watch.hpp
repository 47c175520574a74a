#pragma once
// The room's own clock against the sites'. Every live camera or sensor state carries the time its
// gateway sent it; when most sites agree that the room's clock is off (NTP down on the room's
// server), the room says so: a clock a day behind refuses every site's roll-ups as "ahead", and a
// wrong clock makes every alert's age and every heartbeat wrong. One site's clock being off is
// that site's problem, and the median over the sites is not moved by it.

#include <spdlog/logger.h>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/time.hpp"

namespace kg::monitor {

class ClockWatch {
public:
    static constexpr std::size_t kMinSites = 3;                // fewer cannot outvote one site's clock
    static constexpr auto kWithin = std::chrono::minutes(10);  // sites heard from this recently count
    static constexpr double kOffBy = 120;                      // seconds: beyond delivery delays
    static constexpr std::size_t kMaxSites = 10000;

    explicit ClockWatch(std::shared_ptr<spdlog::logger> log) : log_(std::move(log)) {}

    // A live message of `site`, stamped `sent` by its gateway, came at `now` on the room's clock.
    // Warns, at most once an hour, while the median is off by more than kOffBy.
    void heard(const std::string& site, TimePoint sent, TimePoint now,
               std::chrono::steady_clock::time_point steady = std::chrono::steady_clock::now());

    struct Offset {
        double seconds = 0;  // the sites' clocks minus the room's (the median): > 0, the room is behind
        std::size_t sites = 0;
        std::size_t agreeing = 0;  // of them, within kAgree of the median
    };
    static constexpr double kAgree = 600;  // seconds
    // Over the sites heard within kWithin; nothing with fewer than kMinSites.
    std::optional<Offset> offset(
        std::chrono::steady_clock::time_point steady = std::chrono::steady_clock::now()) const;

    // The later of the room's clock `now` and the sites' (their median, when at least 3 sites and
    // three in four agree on it within 10 minutes: two sites of three a year off must not move it):
    // what a site's time may not run far beyond. A room clock a day behind would otherwise refuse
    // every roll-up.
    TimePoint later_of(TimePoint now,
                       std::chrono::steady_clock::time_point steady = std::chrono::steady_clock::now()) const;
    // The earlier of the two: what retention counts back from. A room clock set a year ahead would
    // otherwise delete every record as past its time.
    TimePoint earlier_of(
        TimePoint now, std::chrono::steady_clock::time_point steady = std::chrono::steady_clock::now()) const;

private:
    std::optional<Offset> offset_locked(std::chrono::steady_clock::time_point steady) const;

    std::shared_ptr<spdlog::logger> log_;
    mutable std::mutex mutex_;
    static constexpr auto kLargestOf = std::chrono::minutes(2);  // a site's offset: the largest of these
    struct Heard {
        double offset = 0;
        std::chrono::steady_clock::time_point when, best_when;  // last heard; when `offset` was
    };
    std::map<std::string, Heard> sites_;
    static constexpr double kSteady = 60;  // seconds: two checks agree within this
    std::optional<std::chrono::steady_clock::time_point> checked_, warned_;
    std::optional<double> last_off_;  // the last check's offset, when it was off
};

}  // namespace kg::monitor
