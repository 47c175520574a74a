#pragma once
// Per-minute min / mean / max of a sensor's readings, so the monitor can draw a day's curve
// without receiving every reading.

#include <limits>
#include <optional>
#include <string>

#include "common/time.hpp"

namespace kg::sensors {

struct Rollup {
    TimePoint minute{};  // start of the minute (UTC)
    double min = std::numeric_limits<double>::infinity();
    double max = -std::numeric_limits<double>::infinity();
    double sum = 0;
    int count = 0;
    double mean() const { return count > 0 ? sum / count : 0.0; }
};

class Roller {
public:
    // Adds a reading; returns the finished minute when this reading starts a new one.
    std::optional<Rollup> add(TimePoint t, double v) {
        const auto minute = std::chrono::floor<std::chrono::minutes>(t);
        std::optional<Rollup> done;
        if (current_.count > 0 && minute != current_.minute) done = flush();
        if (current_.count == 0) current_.minute = minute;
        current_.min = std::min(current_.min, v);
        current_.max = std::max(current_.max, v);
        current_.sum += v;
        ++current_.count;
        return done;
    }
    // The current minute, if `now` is past it (readings stopped).
    std::optional<Rollup> expire(TimePoint now) {
        if (current_.count > 0 && now >= current_.minute + std::chrono::minutes(1)) return flush();
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
        current_ = Rollup{};
        return r;
    }
    Rollup current_;
};

}  // namespace kg::sensors
