#pragma once
// A log line repeated by what clients do (refused connections, refused viewers) goes through at
// most once per interval, with how many were held back: a client in a loop must not flood the
// journal, whose rate limit would then drop the gateway's own lines.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace kg {

class LogThrottle {
public:
    using Clock = std::chrono::steady_clock;

    explicit LogThrottle(Clock::duration every = std::chrono::minutes(1)) : every_(every) {}

    // 0: hold this occurrence back. Otherwise log now: the number of occurrences the line stands
    // for, this one and those held back since the last line.
    std::uint64_t pass(Clock::time_point now = Clock::now()) {
        std::lock_guard lock(mutex_);
        ++held_;
        if (last_ && now - *last_ < every_) return 0;
        last_ = now;
        const auto n = held_;
        held_ = 0;
        return n;
    }

private:
    const Clock::duration every_;
    std::mutex mutex_;
    std::optional<Clock::time_point> last_;
    std::uint64_t held_ = 0;
};

// A failure that keeps coming back the same way (a camera unreachable for a week, tried every
// 30 s: 240 lines an hour, hiding everything else in the journal) is logged the first few times
// in a row, then once every `every` with how many tries it stands for. A new reason, or a success
// between, starts the count again.
class RepeatedFailure {
public:
    using Clock = std::chrono::steady_clock;
    static constexpr std::uint64_t kShown = 3;  // failures in a row logged one by one

    explicit RepeatedFailure(Clock::duration every = std::chrono::minutes(10)) : every_(every) {}

    struct Verdict {
        bool log = false;
        std::uint64_t in_row = 0;  // this failure's number in the row, from 1
        std::uint64_t held = 0;    // with `log`: failures since the last line that were not logged
        // With `log`, when the reason changed: the previous reason's failures not logged, and it.
        std::uint64_t held_before = 0;
        std::string reason_before;
        // With `log` and `in_row` == kShown: from now on the failures are summarised.
        bool quiet_from_now = false;
    };

    Verdict failed(const std::string& reason, Clock::time_point now = Clock::now()) {
        Verdict v;
        ++total_;
        if (reason != reason_) {
            // Said with the new reason's first line: a count held back is never dropped.
            v.held_before = held_;
            if (held_ > 0) v.reason_before = reason_;
            reason_ = reason;
            in_row_ = 0;
            held_ = 0;
        }
        v.in_row = ++in_row_;
        if (in_row_ <= kShown || now - last_logged_ >= every_) {
            v.log = true;
            v.held = held_;
            v.quiet_from_now = in_row_ == kShown;
            held_ = 0;
            last_logged_ = now;
        } else {
            ++held_;
        }
        return v;
    }

    // The failures in a row are past kShown: only summarised.
    bool quiet() const { return in_row_ >= kShown; }

    // What a logged failure's line adds: the tries not logged since the last line (and the reason
    // they failed for, when it changed), and at the last one logged one by one, that from now on
    // it is said once every interval.
    std::string note(const Verdict& v) const {
        std::string out;
        if (v.held_before > 0)
            out += " (after " + std::to_string(v.held_before) +
                   " more tries that failed: " + v.reason_before + ")";
        if (v.held > 0) out += " (" + std::to_string(v.held) + " more tries failed so since the last line)";
        if (v.quiet_from_now)
            out += " (" + std::to_string(v.in_row) + " tries in a row: from now on said once every " +
                   std::to_string(std::chrono::duration_cast<std::chrono::minutes>(every_).count()) +
                   " min while it fails so)";
        return out;
    }

    // It worked: how many failures in a row came before, whatever their reasons (0 if none), and
    // the count starts again.
    std::uint64_t succeeded() {
        const auto n = total_;
        total_ = 0;
        reason_.clear();
        in_row_ = 0;
        held_ = 0;
        return n;
    }

private:
    const Clock::duration every_;
    std::string reason_;
    std::uint64_t in_row_ = 0, held_ = 0, total_ = 0;
    Clock::time_point last_logged_{};
};

// Lines said because of what one sender did (a broken gateway's messages, one address's sign-ins),
// throttled per sender: each key has its first `burst` lines in an interval logged, the rest held
// back and counted, that count said with the key's next line after the interval. One sender in a
// loop keeps its few lines a minute and cannot push the others' lines, or the daemon's own, out of
// the journal (10 000 lines per 30 s per service by default). The keys kept are bounded: past
// `max_keys`, new keys share one entry, so a sender that changes its key with every message (a site
// name of its own each time) neither grows the map nor earns a burst per name for longer than an
// interval. A count held back for a key that goes quiet, or whose entry made room for others, is
// not said; the daemon's counters have every occurrence.
class KeyedLogThrottle {
public:
    using Clock = std::chrono::steady_clock;

    struct Verdict {
        bool log = false;
        std::uint64_t held = 0;  // with `log`: this key's occurrences held back before this one
    };

    explicit KeyedLogThrottle(std::size_t burst = 5, Clock::duration every = std::chrono::minutes(1),
                              std::size_t max_keys = 256)
        : burst_(burst), every_(every), max_keys_(max_keys) {}

    std::size_t burst() const { return burst_; }

    Verdict pass(std::string_view key, Clock::time_point now = Clock::now()) {
        std::lock_guard lock(mutex_);
        Entry& e = entry(key, now);
        if (e.logged == 0 || now - e.window_start >= every_) {
            e.window_start = now;
            e.logged = 0;
        }
        if (e.logged < burst_) {
            ++e.logged;
            const Verdict v{true, e.held};
            e.held = 0;
            return v;
        }
        ++e.held;
        return {};
    }

private:
    struct Entry {
        Clock::time_point window_start{};
        std::size_t logged = 0;  // lines logged in the window from window_start
        std::uint64_t held = 0;
    };

    Entry& entry(std::string_view key, Clock::time_point now) {
        if (const auto it = entries_.find(std::string(key)); it != entries_.end()) return it->second;
        if (entries_.size() >= max_keys_) {
            // Entries whose window is over go, with what they held back (the daemon's counters have
            // it): kept, a table once filled by a sender's many keys would share one entry among
            // all new keys for good (the review of the 53rd session).
            std::erase_if(entries_, [&](const auto& kv) { return now - kv.second.window_start >= every_; });
            if (entries_.size() >= max_keys_) return others_;
        }
        return entries_[std::string(key)];
    }

    const std::size_t burst_;
    const Clock::duration every_;
    const std::size_t max_keys_;
    std::mutex mutex_;
    std::unordered_map<std::string, Entry> entries_;
    Entry others_;  // the keys that found the map full
};

}  // namespace kg
