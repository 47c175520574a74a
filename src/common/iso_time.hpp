#pragma once
// Reading back the times the gateway and the store write: "2026-11-24T06:26:13.123Z" (UTC, the
// fraction optional). Writing them is kg::iso8601_utc (common/time.hpp).

#include <optional>
#include <string>

#include "common/time.hpp"

namespace kg {

std::optional<TimePoint> parse_iso8601_utc(const std::string& text);

}  // namespace kg
