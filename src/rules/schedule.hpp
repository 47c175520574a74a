#pragma once
// When a rule applies: weekly time windows in the site's time zone (working hours, meal
// preparation, closed hours), with holidays on which the canteen is closed all day. A window
// whose end is before its start crosses midnight and belongs to the day it starts on.

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/time.hpp"

namespace kg::rules {

struct TimeWindow {
    int start_minute = 0;  // minutes after local midnight, 0..1439
    int end_minute = 0;    // exclusive; <= start_minute crosses midnight (00:00-00:00 is all day)
};

struct Schedule {
    std::string name;
    unsigned days = 0x7f;  // bit 0 = Monday ... bit 6 = Sunday
    std::vector<TimeWindow> windows;
    bool on_holidays = false;  // windows apply on holidays too
    bool inverted = false;     // active exactly when the windows are not (e.g. "closed" = not "working")
};

// Parses "06:30-13:30"; throws std::invalid_argument with the reason.
TimeWindow parse_window(const std::string& text);
// Parses "mon-fri", "sat,sun", "mon-sun", "daily"; throws std::invalid_argument.
unsigned parse_days(const std::string& text);

// True when the schedule is active at every minute of an ordinary week (holidays aside): a rule
// judged at the end of its windows would never be judged.
bool never_ends(const Schedule& schedule);
// True when it is active at no minute of an ordinary week: a `not` of a schedule that covers it all
// (holidays, on which its windows may not apply, aside).
bool never_active(const Schedule& schedule);

class Calendar {
public:
    // time_zone: an IANA name such as Asia/Shanghai; holidays: "YYYY-MM-DD" local dates.
    // Throws std::invalid_argument for an unknown zone or a bad date.
    Calendar(const std::string& time_zone, const std::vector<std::string>& holidays);
    ~Calendar();
    Calendar(Calendar&&) noexcept;

    bool active(const Schedule& schedule, TimePoint t) const;
    // The first whole minute after `from` at which active() differs from active(from), looked for
    // up to `horizon` ahead (holidays and time-zone changes included); none when it does not change
    // within it. For telling people when something opens or closes, not for timing rules.
    std::optional<TimePoint> next_change(const Schedule& schedule, TimePoint from,
                                         std::chrono::minutes horizon = std::chrono::hours(24 * 8)) const;
    bool holiday(TimePoint t) const;
    // "2026-11-24 14:30:05", the canteen's wall clock (burned into evidence).
    std::string local_text(TimePoint t) const;
    // "2026-11-24", the local date (evidence folders).
    std::string local_date(TimePoint t) const;

private:
    struct LocalTime {
        long day_number;  // days since 1970-01-01, local
        int weekday;      // 0 = Monday
        int minute;       // of the day
    };
    LocalTime local(TimePoint t) const;
    bool in_windows(const Schedule& s, const LocalTime& lt) const;

    struct Zone;
    std::unique_ptr<Zone> zone_;
    std::set<long> holidays_;  // local day numbers
};

}  // namespace kg::rules
