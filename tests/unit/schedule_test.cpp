// Schedules in the site's time zone: working hours, windows across midnight, holidays.
#include "rules/schedule.hpp"

#include <date/date.h>
#include <gtest/gtest.h>

using kg::rules::Calendar;
using kg::rules::Schedule;

namespace {

// A UTC instant from a Shanghai wall-clock time (UTC+8, no DST).
kg::TimePoint shanghai(int y, unsigned m, unsigned d, int hh, int mm) {
    const auto day = date::sys_days(date::year(y) / m / d);
    return kg::TimePoint(day + std::chrono::hours(hh) + std::chrono::minutes(mm) - std::chrono::hours(8));
}

Schedule working() {
    Schedule s;
    s.name = "working";
    s.days = kg::rules::parse_days("mon-fri");
    s.windows = {kg::rules::parse_window("06:00-13:30"), kg::rules::parse_window("16:00-19:00")};
    return s;
}

}  // namespace

TEST(Schedule, WorkingHoursInTheSitesTimeZone) {
    Calendar cal("Asia/Shanghai", {});
    const auto s = working();
    // 2026-11-24 is a Tuesday.
    EXPECT_FALSE(cal.active(s, shanghai(2026, 11, 24, 5, 59)));
    EXPECT_TRUE(cal.active(s, shanghai(2026, 11, 24, 6, 0)));
    EXPECT_TRUE(cal.active(s, shanghai(2026, 11, 24, 13, 29)));
    EXPECT_FALSE(cal.active(s, shanghai(2026, 11, 24, 13, 30)));
    EXPECT_TRUE(cal.active(s, shanghai(2026, 11, 24, 18, 0)));
    EXPECT_FALSE(cal.active(s, shanghai(2026, 11, 28, 10, 0)));  // Saturday
}

TEST(Schedule, TheSameInstantIsJudgedInTheConfiguredZone) {
    const auto s = working();
    const auto t = shanghai(2026, 11, 24, 7, 0);  // 07:00 in Shanghai is 23:00 Monday in London
    EXPECT_TRUE(Calendar("Asia/Shanghai", {}).active(s, t));
    EXPECT_FALSE(Calendar("Europe/London", {}).active(s, t));
}

TEST(Schedule, AWindowAcrossMidnightBelongsToTheDayItStarts) {
    Calendar cal("Asia/Shanghai", {});
    Schedule night;
    night.days = kg::rules::parse_days("fri");
    night.windows = {kg::rules::parse_window("22:00-06:00")};
    EXPECT_TRUE(cal.active(night, shanghai(2026, 11, 27, 23, 0)));  // Friday night
    EXPECT_TRUE(cal.active(night, shanghai(2026, 11, 28, 5, 59)));  // early Saturday: Friday's window
    EXPECT_FALSE(cal.active(night, shanghai(2026, 11, 28, 6, 0)));
    EXPECT_FALSE(cal.active(night, shanghai(2026, 11, 28, 23, 0)));  // Saturday night: not Friday
    EXPECT_FALSE(cal.active(night, shanghai(2026, 11, 27, 3, 0)));   // early Friday: Thursday's window
}

TEST(Schedule, HolidaysCloseTheDayAndInvertedSchedulesCoverThem) {
    Calendar cal("Asia/Shanghai", {"2026-10-01"});  // National Day, a Thursday
    const auto s = working();
    Schedule closed = s;
    closed.inverted = true;
    EXPECT_FALSE(cal.active(s, shanghai(2026, 10, 1, 10, 0)));
    EXPECT_TRUE(cal.active(closed, shanghai(2026, 10, 1, 10, 0)));
    EXPECT_TRUE(cal.active(s, shanghai(2026, 10, 2, 10, 0)));
    EXPECT_FALSE(cal.active(closed, shanghai(2026, 10, 2, 10, 0)));
    EXPECT_TRUE(cal.holiday(shanghai(2026, 10, 1, 0, 5)));
    EXPECT_FALSE(cal.holiday(shanghai(2026, 9, 30, 23, 55)));
}

TEST(Schedule, BadInputIsAClearError) {
    EXPECT_THROW(kg::rules::parse_window("6-13"), std::invalid_argument);
    EXPECT_THROW(kg::rules::parse_window("06:00-25:00"), std::invalid_argument);
    EXPECT_THROW(kg::rules::parse_days("monday"), std::invalid_argument);
    EXPECT_THROW(Calendar("Mars/Olympus", {}), std::invalid_argument);
    EXPECT_THROW(Calendar("Asia/Shanghai", {"2026-13-01"}), std::invalid_argument);
    EXPECT_EQ(kg::rules::parse_days("fri-mon"), 0b1110001u);
    EXPECT_EQ(kg::rules::parse_days("sat,sun"), 0b1100000u);
}

TEST(Schedule, TheNextChangeIsTheNextWindowEdgeAcrossWeekendsAndHolidays) {
    Calendar cal("Asia/Shanghai", {"2026-11-30"});
    const auto s = working();
    // Within a window, seconds into a minute: its end, on the minute.
    EXPECT_EQ(cal.next_change(s, shanghai(2026, 11, 24, 10, 0) + std::chrono::seconds(30)),
              shanghai(2026, 11, 24, 13, 30));
    // Between the windows: the afternoon's start.
    EXPECT_EQ(cal.next_change(s, shanghai(2026, 11, 24, 13, 30)), shanghai(2026, 11, 24, 16, 0));
    // Friday evening: over the weekend and the Monday holiday to Tuesday morning.
    EXPECT_EQ(cal.next_change(s, shanghai(2026, 11, 27, 20, 0)), shanghai(2026, 12, 1, 6, 0));
    // Beyond the horizon, none.
    EXPECT_EQ(cal.next_change(s, shanghai(2026, 11, 27, 20, 0), std::chrono::hours(48)), std::nullopt);
    // All day every day: none, unless the holiday closes it.
    Schedule always;
    always.windows = {kg::rules::parse_window("00:00-00:00")};
    EXPECT_EQ(cal.next_change(always, shanghai(2026, 11, 24, 10, 0)), shanghai(2026, 11, 30, 0, 0));
    always.on_holidays = true;
    EXPECT_EQ(cal.next_change(always, shanghai(2026, 11, 24, 10, 0)), std::nullopt);
}

TEST(Schedule, TheNextChangeFollowsTheClockThroughASummerTimeChange) {
    // 2026-03-29 in Berlin: 02:00 local does not exist, the clock goes from 01:59 (UTC+1) to 03:00 (UTC+2)
    // at 01:00 UTC. A window of 01:00-03:00 local ends then, after one hour, not two.
    Calendar cal("Europe/Berlin", {});
    Schedule night;
    night.windows = {kg::rules::parse_window("01:00-03:00")};
    const auto utc = [](int d, int hh, int mm) {
        return kg::TimePoint(date::sys_days(date::year(2026) / 3 / d) + std::chrono::hours(hh) +
                             std::chrono::minutes(mm));
    };
    EXPECT_EQ(cal.next_change(night, utc(28, 23, 30)), utc(29, 0, 0));  // 00:30 local -> 01:00 local
    EXPECT_EQ(cal.next_change(night, utc(29, 0, 30)), utc(29, 1, 0));   // 01:30 local -> 03:00 local
}
