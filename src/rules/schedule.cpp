#include "rules/schedule.hpp"

#include <date/date.h>
#include <date/tz.h>
#include <fmt/format.h>

#include <algorithm>
#include <regex>
#include <sstream>
#include <stdexcept>

namespace kg::rules {

struct Calendar::Zone {
    const date::time_zone* tz;
};

namespace {

int parse_clock(const std::string& s, const std::string& whole) {
    int h = -1, m = -1;
    char colon = 0;
    std::istringstream in(s);
    if (!(in >> h >> colon >> m) || colon != ':' || h < 0 || h > 24 || m < 0 || m > 59 ||
        (h == 24 && m != 0) || !in.eof()) {
        throw std::invalid_argument(fmt::format("'{}' is not a time window like 06:30-13:30", whole));
    }
    return h * 60 + m;
}

int weekday_index(const std::string& name) {
    static const char* names[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
    for (int i = 0; i < 7; ++i) {
        if (name == names[i]) return i;
    }
    return -1;
}

}  // namespace

TimeWindow parse_window(const std::string& text) {
    const auto dash = text.find('-');
    if (dash == std::string::npos) {
        throw std::invalid_argument(fmt::format("'{}' is not a time window like 06:30-13:30", text));
    }
    TimeWindow w;
    w.start_minute = parse_clock(text.substr(0, dash), text) % 1440;
    w.end_minute = parse_clock(text.substr(dash + 1), text) % 1440;
    return w;
}

unsigned parse_days(const std::string& text) {
    if (text == "daily" || text == "all") return 0x7f;
    unsigned days = 0;
    std::istringstream in(text);
    std::string part;
    while (std::getline(in, part, ',')) {
        const auto dash = part.find('-');
        const int a = weekday_index(part.substr(0, dash));
        const int b = dash == std::string::npos ? a : weekday_index(part.substr(dash + 1));
        if (a < 0 || b < 0) {
            throw std::invalid_argument(
                fmt::format("'{}' is not a list of days like mon-fri or sat,sun", text));
        }
        for (int d = a;; d = (d + 1) % 7) {  // "fri-mon" wraps over the weekend
            days |= 1u << d;
            if (d == b) break;
        }
    }
    if (days == 0) throw std::invalid_argument(fmt::format("'{}' names no day", text));
    return days;
}

Calendar::Calendar(const std::string& time_zone, const std::vector<std::string>& holidays)
    : zone_(std::make_unique<Zone>()) {
    try {
        zone_->tz = date::locate_zone(time_zone);
    } catch (const std::exception&) {
        throw std::invalid_argument(fmt::format("unknown time zone '{}'", time_zone));
    }
    for (const auto& h : holidays) {
        std::istringstream in(h);
        date::year_month_day ymd{};
        in >> date::parse("%F", ymd);
        // The whole text, in its one form: "2026-10-01 to 2026-10-07" read as its first day alone
        // would leave the rest of the week a school day.
        static const std::regex form(R"(^\d{4}-\d{2}-\d{2}$)");
        if (in.fail() || !ymd.ok() || !std::regex_match(h, form))
            throw std::invalid_argument(fmt::format("'{}' is not a date like 2026-10-01", h));
        holidays_.insert(date::sys_days(ymd).time_since_epoch().count());
    }
}

Calendar::~Calendar() = default;
Calendar::Calendar(Calendar&&) noexcept = default;

Calendar::LocalTime Calendar::local(TimePoint t) const {
    const auto lt = zone_->tz->to_local(std::chrono::time_point_cast<std::chrono::seconds>(t));
    const auto day = date::floor<date::days>(lt);
    const auto minutes = std::chrono::duration_cast<std::chrono::minutes>(lt - day).count();
    const date::weekday wd{day};
    return {day.time_since_epoch().count(), static_cast<int>((wd.c_encoding() + 6) % 7),
            static_cast<int>(minutes)};
}

std::string Calendar::local_text(TimePoint t) const {
    return date::format("%F %T", zone_->tz->to_local(std::chrono::time_point_cast<std::chrono::seconds>(t)));
}

std::string Calendar::local_date(TimePoint t) const {
    return date::format("%F", zone_->tz->to_local(std::chrono::time_point_cast<std::chrono::seconds>(t)));
}

bool Calendar::holiday(TimePoint t) const { return holidays_.count(local(t).day_number) > 0; }

bool Calendar::in_windows(const Schedule& s, const LocalTime& lt) const {
    auto day_applies = [&](long day_number, int weekday) {
        if (!(s.days & (1u << weekday))) return false;
        return s.on_holidays || holidays_.count(day_number) == 0;
    };
    for (const auto& w : s.windows) {
        if (w.start_minute < w.end_minute) {
            if (lt.minute >= w.start_minute && lt.minute < w.end_minute &&
                day_applies(lt.day_number, lt.weekday)) {
                return true;
            }
        } else {
            // Crosses midnight (or is the whole day when start == end).
            if (lt.minute >= w.start_minute && day_applies(lt.day_number, lt.weekday)) return true;
            if (lt.minute < w.end_minute && day_applies(lt.day_number - 1, (lt.weekday + 6) % 7)) return true;
        }
    }
    return false;
}

namespace {

// Which minutes of an ordinary week (from Monday 00:00) the schedule's windows cover, `not` aside.
std::vector<bool> covered_minutes(const Schedule& s) {
    constexpr int kWeek = 7 * 1440;
    std::vector<bool> in(kWeek, false);
    for (const auto& w : s.windows) {
        // A window belongs to the day it starts on; one whose end is not after its start runs
        // into the next day (the whole day when they are equal).
        const int length = w.start_minute < w.end_minute ? w.end_minute - w.start_minute
                                                         : 1440 - w.start_minute + w.end_minute;
        for (int day = 0; day < 7; ++day) {
            if (!(s.days & (1u << day))) continue;
            for (int m = 0; m < length; ++m)
                in[static_cast<std::size_t>((day * 1440 + w.start_minute + m) % kWeek)] = true;
        }
    }
    return in;
}

}  // namespace

bool never_ends(const Schedule& s) {
    const auto in = covered_minutes(s);
    return std::all_of(in.begin(), in.end(), [&](bool b) { return b != s.inverted; });
}

bool never_active(const Schedule& s) {
    const auto in = covered_minutes(s);
    return std::all_of(in.begin(), in.end(), [&](bool b) { return b == s.inverted; });
}

bool Calendar::active(const Schedule& s, TimePoint t) const {
    const bool in = in_windows(s, local(t));
    return s.inverted ? !in : in;
}

std::optional<TimePoint> Calendar::next_change(const Schedule& s, TimePoint from,
                                               std::chrono::minutes horizon) const {
    // Minute by minute: windows are whole minutes, but a zone's offset may move by a quarter hour,
    // so the local minutes that follow one another are not walked, the clock's are (8 days: 11 520
    // look-ups, a few milliseconds, asked once per change).
    const bool now = active(s, from);
    auto t = std::chrono::time_point_cast<std::chrono::minutes>(from);
    if (t <= from) t += std::chrono::minutes(1);
    for (const auto end = from + horizon; t <= end; t += std::chrono::minutes(1)) {
        if (active(s, t) != now) return TimePoint(t);
    }
    return std::nullopt;
}

}  // namespace kg::rules
