#include "sensors/decode.hpp"

#include <cmath>
#include <cstring>
// date::parse's internals trip GCC 12's -Wmaybe-uninitialized (a known false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <date/date.h>
#pragma GCC diagnostic pop
#include <algorithm>
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

std::optional<TimePoint> time_at(const nlohmann::json& doc, const std::string& path) {
    const auto* node = node_at(doc, path);
    if (node == nullptr) return std::nullopt;
    if (node->is_number()) {
        double v = node->get<double>();
        if (v > 1e11) v /= 1000.0;  // milliseconds
        return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::duration<double>(v)));
    }
    if (!node->is_string()) return std::nullopt;
    std::istringstream in(node->get<std::string>());
    date::sys_time<std::chrono::milliseconds> t{};
    in >> date::parse("%FT%T%Ez", t);
    if (in.fail()) {
        in.clear();
        in.str(node->get<std::string>());
        in >> date::parse("%FT%TZ", t);
    }
    if (in.fail()) return std::nullopt;
    return std::chrono::time_point_cast<TimePoint::duration>(t);
}

}  // namespace kg::sensors
