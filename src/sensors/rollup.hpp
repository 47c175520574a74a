#pragma once
// Per-minute min / mean / max of a sensor's readings, so the monitor can draw a day's curve
// without receiving every reading.

#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>

#include "common/time.hpp"

namespace kg::sensors {

struct Rollup {
    TimePoint minute{};  // start of the minute (UTC)
    double min = std::numeric_limits<double>::infinity();
    double max = -std::numeric_limits<double>::infinity();
    double sum = 0;
    int count = 0;
    // Which Roller summed it: the parts of one minute that two runs send (a restart within it) have
    // two, and a part the broker delivers twice has the same one, so the room adds it up once.
    std::uint64_t part = 0;
    double mean() const { return count > 0 ? sum / count : 0.0; }
};

class Roller {
public:
    // Random, not counted: two processes (a stop's part and the next run's) must not meet on one id,
    // and they share nothing to count with. A copy (a reload carrying the minute on) keeps the id,
    // for it sends the same part.
    Roller() : part_((static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}()) {}

    // Adds a reading taken at `t` (its own time) that arrived at `arrived`; returns the finished
    // minute when this reading starts a new one. A reading up to 5 minutes behind a minute already
    // begun or sent is left out.
    std::optional<Rollup> add(TimePoint t, double v, TimePoint arrived) {
        // How far the device's clock runs behind: expire() waits for it, or a batching device's
        // minute would be sent before most of its readings arrived.
        lag_ = std::max(TimePoint::duration::zero(), arrived - t);
        const auto minute = std::chrono::floor<std::chrono::minutes>(t);
        // A reading of a minute already closed, a little behind the ones before it (a device whose
        // clock sits near the limit where its own time is believed, flipping between its time and
        // the arrival): it stays out of the curve. Starting that minute again sent it twice, the
        // second time with this one reading, and the room keeps the last. Further back is a clock
        // stepped back: the minutes start over from there.
        const bool behind = current_.count > 0
                                ? minute < current_.minute && current_.minute - minute <= kStraggler
                                : last_sent_ && minute <= *last_sent_ && *last_sent_ - minute <= kStraggler;
        if (behind) return std::nullopt;
        std::optional<Rollup> done;
        if (current_.count > 0 && minute != current_.minute) done = flush();
        if (current_.count == 0) current_.minute = minute;
        current_.min = std::min(current_.min, v);
        current_.max = std::max(current_.max, v);
        current_.sum += v;
        ++current_.count;
        return done;
    }
    // The current minute, if `now` (the wall clock) is past it on the readings' clock (readings stopped).
    std::optional<Rollup> expire(TimePoint now) {
        if (current_.count > 0 && now - lag_ >= current_.minute + std::chrono::minutes(1)) return flush();
        return std::nullopt;
    }

    // Whatever the current minute holds (at shutdown).
    std::optional<Rollup> take() {
        if (current_.count == 0) return std::nullopt;
        return flush();
    }

private:
    Rollup flush() {
        Rollup r = current_;
        r.part = part_;
        last_sent_ = current_.minute;
        current_ = Rollup{};
        return r;
    }
    static constexpr auto kStraggler = std::chrono::minutes(5);
    std::uint64_t part_;
    Rollup current_;
    std::optional<TimePoint> last_sent_;  // the minute flushed last
    TimePoint::duration lag_{};           // arrival - own time of the newest reading
};

}  // namespace kg::sensors
