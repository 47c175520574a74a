#pragma once
// The query of a request's target, read one way by both HTTP sides (the gateway's local API and
// public site, the monitor's dashboard API), so that a parameter means the same to each.

#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace kg::web {

// %XX decoded and '+' read as a space, as HTML forms send them; a '%' not followed by two hex
// digits stays as it is.
std::string url_decode(std::string_view s);

// The parameters between the target's '?' and its end or '#', decoded. A repeated name keeps its
// last value; a name without '=' has the value "".
std::map<std::string, std::string> parse_query(std::string_view target);

// A count given as a parameter: digits only (no sign, no space), at most 9 of them, from min to
// max; none otherwise.
std::optional<long> whole_number(std::string_view value, long min, long max);

}  // namespace kg::web
