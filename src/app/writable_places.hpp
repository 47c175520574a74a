#pragma once
// What --check-config says of the places the gateway writes, checked as the user that runs it
// (the unit's ExecStartPre runs as the service's user, in its sandbox): a folder it cannot write
// was found only by the running gateway, in its log, one consequence at a time.

#include <string>
#include <vector>

#include "config/config.hpp"

namespace kg::app {

// One line per place this process cannot write, naming the setting, the path, why, and what the
// gateway then does without it. Nothing is made.
std::vector<std::string> unwritable_places(const config::Gateway& cfg);

}  // namespace kg::app
