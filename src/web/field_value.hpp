#pragma once
// Reading HTTP header field values.

#include <string_view>

namespace kg::web {

// `s` without the optional white space (spaces and tabs, RFC 9110 5.6.3) around it.
inline std::string_view without_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace kg::web
