#include "monitor/clock_watch.hpp"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace kg::monitor {

void ClockWatch::heard(const std::string& site, TimePoint sent, TimePoint now,
                       std::chrono::steady_clock::time_point steady) {
    std::lock_guard lock(mutex_);
    if (sites_.size() >= kMaxSites && !sites_.contains(site)) return;
    // A site's offset is the largest of its last minutes: a message can only come late, and after
    // the room's own outage the broker delivers its backlog as live, each message as old as the
    // outage; taken as it came, the room's clock read that far ahead. Within the burst the site's
    // newest message, sent just before the room came back, sets it right.
    const double offset = std::chrono::duration<double>(sent - now).count();
    auto [it, added] = sites_.try_emplace(site, Heard{offset, steady, steady});
    auto& h = it->second;
    if (!added && (offset >= h.offset || steady - h.best_when > kLargestOf)) {
        h.offset = offset;
        h.best_when = steady;
    }
    h.when = steady;
    // At most once a minute: with hundreds of sites a state comes many times a second.
    if (checked_ && steady - *checked_ < std::chrono::minutes(1)) return;
    checked_ = steady;
    std::erase_if(sites_, [&](const auto& s) { return steady - s.second.when > kWithin; });
    const auto off = offset_locked(steady);
    const auto before = std::exchange(last_off_, std::nullopt);
    if (!off || std::abs(off->seconds) <= kOffBy) return;
    last_off_ = off->seconds;
    // Said only when two checks a minute apart agree: while a backlog drains, the offset climbs
    // towards 0 from one check to the next; a clock that is off stays where it is.
    if (!before || std::abs(off->seconds - *before) > kSteady) return;
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
