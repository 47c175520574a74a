#pragma once
// The monitor reads the gateway's times with the gateway's own reader (common/iso_time.hpp).

#include "common/iso_time.hpp"

namespace kg::monitor {

using kg::parse_iso8601_utc;

}  // namespace kg::monitor
