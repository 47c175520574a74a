#include "common/iso_time.hpp"

#include <chrono>
#include <cstddef>

namespace kg {

namespace {

// `count` decimal digits at text[pos], nothing else (no sign, no space): sscanf's %2d took "-1".
bool digits(const std::string& text, std::size_t pos, std::size_t count, int& out) {
    if (pos + count > text.size()) return false;
    out = 0;
    for (std::size_t i = pos; i < pos + count; ++i) {
        if (text[i] < '0' || text[i] > '9') return false;
        out = out * 10 + (text[i] - '0');
    }
    return true;
}

}  // namespace

std::optional<TimePoint> parse_iso8601_utc(const std::string& text) {
    // "YYYY-MM-DDTHH:MM:SS", then an optional fraction, then Z.
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
    if (!digits(text, 0, 4, y) || text.size() < 20 || text[4] != '-' || !digits(text, 5, 2, mo) ||
        text[7] != '-' || !digits(text, 8, 2, d) || text[10] != 'T' || !digits(text, 11, 2, h) ||
        text[13] != ':' || !digits(text, 14, 2, mi) || text[16] != ':' || !digits(text, 17, 2, s))
        return std::nullopt;
    // Years a nanosecond clock holds (1678-2262) with room: past them the time wrapped round (2300
    // read as 1715).
    if (y < 1900 || y > 2200) return std::nullopt;
    const std::chrono::year_month_day day{std::chrono::year(y), std::chrono::month(static_cast<unsigned>(mo)),
                                          std::chrono::day(static_cast<unsigned>(d))};
    if (!day.ok() || h > 23 || mi > 59 || s > 60) return std::nullopt;  // 60: a leap second
    std::size_t pos = 19;
    long millis = 0;
    if (text[pos] == '.') {
        const std::size_t first = ++pos;
        long scale = 100;
        for (; pos < text.size() && text[pos] >= '0' && text[pos] <= '9'; ++pos) {
            millis += (text[pos] - '0') * scale;
            scale /= 10;
        }
        if (pos == first) return std::nullopt;  // a point without digits
    }
    if (pos + 1 != text.size() || (text[pos] != 'Z' && text[pos] != 'z')) return std::nullopt;
    return TimePoint(std::chrono::sys_days(day)) + std::chrono::hours(h) + std::chrono::minutes(mi) +
           std::chrono::seconds(s) + std::chrono::milliseconds(millis);
}

}  // namespace kg
