#include "sensors/decode.hpp"

#include <cmath>
#include <cstring>
// date::parse's internals trip GCC 12's -Wmaybe-uninitialized (a known false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <date/date.h>
#pragma GCC diagnostic pop
#include <algorithm>
#include <cctype>
#include <sstream>

namespace kg::sensors {

int register_count(config::SensorSource::Type type) {
    using T = config::SensorSource::Type;
    return type == T::int16 || type == T::uint16 ? 1 : 2;
}

double decode_registers(const std::vector<std::uint16_t>& regs, const config::SensorSource& src) {
    using T = config::SensorSource::Type;
    double raw = 0;
    if (src.type == T::int16) {
        raw = static_cast<std::int16_t>(regs.at(0));
    } else if (src.type == T::uint16) {
        raw = regs.at(0);
    } else {
        // Modbus sends each register high byte first; devices disagree on which register comes first.
        const std::uint32_t hi = src.low_word_first ? regs.at(1) : regs.at(0);
        const std::uint32_t lo = src.low_word_first ? regs.at(0) : regs.at(1);
        const std::uint32_t bits = (hi << 16) | lo;
        if (src.type == T::int32) {
            raw = static_cast<std::int32_t>(bits);
        } else if (src.type == T::uint32) {
            raw = bits;
        } else {
            float f;
            std::memcpy(&f, &bits, sizeof f);
            raw = f;
        }
    }
    return raw * src.scale + src.offset;
}

const nlohmann::json* node_at(const nlohmann::json& doc, const std::string& path) {
    const nlohmann::json* node = &doc;
    std::istringstream in(path);
    std::string part;
    while (std::getline(in, part, '.')) {
        if (node->is_object()) {
            auto it = node->find(part);
            if (it == node->end()) return nullptr;
            node = &*it;
        } else if (node->is_array() && !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
            const auto i = std::stoul(part);
            if (i >= node->size()) return nullptr;
            node = &(*node)[i];
        } else {
            return nullptr;
        }
    }
    return node;
}

std::optional<double> number_at(const nlohmann::json& doc, const std::string& path) {
    const auto* node = node_at(doc, path);
    if (node == nullptr) return std::nullopt;
    // A door contact or a relay reports true/false (Zigbee2MQTT's {"contact": true}).
    if (node->is_boolean()) return node->get<bool>() ? 1.0 : 0.0;
    if (node->is_number()) {
        const double v = node->get<double>();
        return std::isfinite(v) ? std::optional<double>(v) : std::nullopt;
    }
    if (node->is_string()) {
        const auto& s = node->get_ref<const std::string&>();
        // Decimal only: strtod reads "0x10" as 16 (and "0x1p4" too), which no sensor means.
        if (s.find_first_of("xXpP") != std::string::npos) return std::nullopt;
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (end != s.c_str() && *end == 0 && std::isfinite(v)) return v;
    }
    return std::nullopt;
}

bool boolean_at(const nlohmann::json& doc, const std::string& path) {
    const auto* node = node_at(doc, path);
    return node != nullptr && node->is_boolean();
}

bool says_no_measurement(const nlohmann::json& doc, std::string_view payload, const std::string& path) {
    auto nan_text = [](std::string_view text) {
        while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
        while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
        if (!text.empty() && (text.front() == '-' || text.front() == '+')) text.remove_prefix(1);
        return text.size() == 3 && std::tolower(static_cast<unsigned char>(text[0])) == 'n' &&
               std::tolower(static_cast<unsigned char>(text[1])) == 'a' &&
               std::tolower(static_cast<unsigned char>(text[2])) == 'n';
    };
    if (doc.is_discarded()) return path.empty() && nan_text(payload);
    const auto* node = node_at(doc, path);
    if (node == nullptr) return false;
    return node->is_null() || (node->is_string() && nan_text(node->get_ref<const std::string&>()));
}

namespace {

// The years a device's time may name (a clock never set reads 1970: the clock check says so).
// Beyond them it is a wrong unit, and TimePoint (nanoseconds) overflows past 2262: a reading
// dated 1677 passed the clock check (its difference overflowed too) and stopped every threshold
// of its sensor.
constexpr double kEarliest = 0;         // 1970-01-01
constexpr double kLatest = 7258118400;  // 2200-01-01

std::optional<TimePoint> from_seconds(double seconds) {
    if (!std::isfinite(seconds) || seconds < kEarliest || seconds >= kLatest) return std::nullopt;
    return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::duration<double>(seconds)));
}

}  // namespace

std::optional<TimePoint> time_at(const nlohmann::json& doc, const std::string& path) {
    const auto* node = node_at(doc, path);
    if (node == nullptr) return std::nullopt;
    if (node->is_number()) {
        // Epoch seconds, milliseconds, microseconds or nanoseconds, told apart by size: this
        // century in each unit lies in its own range.
        const double v = node->get<double>();
        int exponent = 0;  // of the unit: 1e0 s ... 1e9 ns
        while (exponent <= 9 && v >= kLatest * std::pow(10.0, exponent)) exponent += 3;
        const auto placed = exponent > 9 ? std::nullopt : from_seconds(v / std::pow(10.0, exponent));
        if (!placed || node->is_number_float()) return placed;
        // Integers as they are: a microsecond or nanosecond epoch is past a double's precision.
        const auto n = node->get<std::int64_t>();
        using namespace std::chrono;
        switch (exponent) {
            case 0:
                return TimePoint(duration_cast<TimePoint::duration>(seconds(n)));
            case 3:
                return TimePoint(duration_cast<TimePoint::duration>(milliseconds(n)));
            case 6:
                return TimePoint(duration_cast<TimePoint::duration>(microseconds(n)));
            default:
                return TimePoint(duration_cast<TimePoint::duration>(nanoseconds(n)));
        }
    }
    if (!node->is_string()) return std::nullopt;
    // The fraction cut to microseconds: Python gives 6 digits and Go's RFC 3339 up to 9, and
    // date::parse takes as many as its precision and read the rest as the offset (".123456+08:00"
    // came out two days early).
    std::string text = node->get<std::string>();
    if (const auto dot = text.find('.'); dot != std::string::npos) {
        auto end = dot + 1;
        while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
        if (end - dot - 1 > 6) text.erase(dot + 7, end - dot - 7);
    }
    // Trailing blanks are no part of the time ("...Z " from a hand-made payload).
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    // "+08:00", "Z", and ISO 8601's basic "+0800" (Java's pattern letter Z writes it).
    for (const char* format : {"%FT%T%Ez", "%FT%TZ", "%FT%T%z"}) {
        std::istringstream in(text);
        date::sys_time<std::chrono::microseconds> t{};
        in >> date::parse(format, t);
        // Whatever follows what was read makes it another format, not a time to half-read.
        if (in.fail() || in.peek() != std::char_traits<char>::eof()) continue;
        if (!from_seconds(std::chrono::duration<double>(t.time_since_epoch()).count())) return std::nullopt;
        return std::chrono::time_point_cast<TimePoint::duration>(t);
    }
    return std::nullopt;
}

}  // namespace kg::sensors
