#pragma once
// Event ids: time-ordered, unique across restarts and gateways without coordination
// (milliseconds since the epoch, then 64 random bits), like ULIDs.

#include <mutex>
#include <random>
#include <string>

#include "common/time.hpp"

namespace kg::events {

class EventIdGenerator {
public:
    EventIdGenerator();
    std::string next(TimePoint t);

private:
    std::mutex mutex_;
    std::mt19937_64 rng_;
};

}  // namespace kg::events
