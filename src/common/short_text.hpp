#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
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

// `text` made short and printable: control characters become spaces, and past `max_bytes` it is
// cut at a character's start and ends in "...". For a name a site sent that the room must not
// refuse with its alert.
inline std::string shortened_text(std::string text, std::size_t max_bytes = kMaxNameBytes) {
    for (auto& c : text)
        if (const auto u = static_cast<unsigned char>(c); u < 0x20 || u == 0x7f) c = ' ';
    if (text.size() <= max_bytes) return text;
    std::size_t cut = max_bytes - 3;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // not mid-character
    text.resize(cut);
    return text + "...";
}

}  // namespace kg
