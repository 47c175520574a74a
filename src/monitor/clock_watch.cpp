#include "monitor/clock_watch.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace kg::monitor {

void ClockWatch::heard(const std::string& site, TimePoint sent, TimePoint now,
                       std::chrono::steady_clock::time_point steady) {
    std::lock_guard lock(mutex_);
    if (sites_.size() >= kMaxSites && !sites_.contains(site)) return;
    sites_[site] = {std::chrono::duration<double>(sent - now).count(), steady};
    // At most once a minute: with hundreds of sites a state comes many times a second.
    if (checked_ && steady - *checked_ < std::chrono::minutes(1)) return;
    checked_ = steady;
    std::erase_if(sites_, [&](const auto& s) { return steady - s.second.when > kWithin; });
    const auto off = offset_locked(steady);
    if (!off || std::abs(off->seconds) <= kOffBy) return;
    if (warned_ && steady - *warned_ < std::chrono::hours(1)) return;
    warned_ = steady;
    log_->warn(
        "the room's clock is {:.0f} s {} the clocks of {} sites (their median): set it right (NTP), or "
        "alert ages and heartbeats read wrong (roll-ups and retention go by the sites' clocks while 3 in 4 "
        "agree)",
        std::abs(off->seconds), off->seconds > 0 ? "behind" : "ahead of", off->sites);
}

std::optional<ClockWatch::Offset> ClockWatch::offset(std::chrono::steady_clock::time_point steady) const {
    std::lock_guard lock(mutex_);
    return offset_locked(steady);
}

namespace {
TimePoint::duration as_duration(double seconds) {
    return std::chrono::duration_cast<TimePoint::duration>(std::chrono::duration<double>(seconds));
}

// Whether the sites agree enough for their median to stand for the room's clock.
bool trusted(const std::optional<ClockWatch::Offset>& off) {
    return off && off->agreeing >= ClockWatch::kMinSites && off->agreeing * 4 >= off->sites * 3;
}

}  // namespace

TimePoint ClockWatch::later_of(TimePoint now, std::chrono::steady_clock::time_point steady) const {
    const auto off = offset(steady);
    return trusted(off) && off->seconds > 0 ? now + as_duration(off->seconds) : now;
}

TimePoint ClockWatch::earlier_of(TimePoint now, std::chrono::steady_clock::time_point steady) const {
    const auto off = offset(steady);
    return trusted(off) && off->seconds < 0 ? now + as_duration(off->seconds) : now;
}

std::optional<ClockWatch::Offset> ClockWatch::offset_locked(
    std::chrono::steady_clock::time_point steady) const {
    std::vector<double> offsets;
    for (const auto& [site, h] : sites_) {
        if (steady - h.when <= kWithin) offsets.push_back(h.offset);
    }
    if (offsets.size() < kMinSites) return std::nullopt;
    const auto mid = offsets.begin() + static_cast<std::ptrdiff_t>(offsets.size() / 2);
    std::nth_element(offsets.begin(), mid, offsets.end());
    const double median = *mid;
    const auto agreeing = static_cast<std::size_t>(std::count_if(
        offsets.begin(), offsets.end(), [&](double o) { return std::abs(o - median) <= kAgree; }));
    return Offset{median, offsets.size(), agreeing};
}

}  // namespace kg::monitor
