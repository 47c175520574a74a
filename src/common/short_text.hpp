#pragma once

#include <algorithm>
#include <cstddef>
#include <string_view>

namespace kg {

// Names that travel in every event message and alert notification: a check's or label's name
// ("model:" and an id is 70 bytes) and a reading's unit ("degC", "%RH", "ppm"). The gateway refuses
// longer ones at load and the monitoring room refuses them in a message, so that neither a
// misconfigured site nor a hostile one can fill a robot's message (WeCom takes 4 KiB) or a
// dashboard's filters.
inline constexpr std::size_t kMaxNameBytes = 128;
inline constexpr std::size_t kMaxUnitBytes = 32;

// Non-empty, at most `max_bytes`, no control characters (UTF-8 text beyond ASCII is fine).
inline bool is_short_text(std::string_view text, std::size_t max_bytes = kMaxNameBytes) {
    return !text.empty() && text.size() <= max_bytes && std::none_of(text.begin(), text.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
    });
}

}  // namespace kg
