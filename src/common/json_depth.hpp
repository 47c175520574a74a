#pragma once
// How deeply a JSON text nests its arrays and objects, read without parsing it. nlohmann's parser
// takes any depth, but dump() recurses once per level: a 256 KiB payload of 100 000 brackets
// overflows the stack, and no catch stops that. Texts from the network are measured first.

#include <cstddef>
#include <string_view>

namespace kg {

// True when `text` nests arrays and objects more than `limit` levels deep. Brackets inside strings
// (escapes included) do not count; the text need not be valid JSON.
inline bool json_nested_deeper_than(std::string_view text, std::size_t limit) {
    std::size_t depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') {
                ++i;  // the escaped character, a quote or a backslash included
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return true;
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return false;
}

}  // namespace kg
