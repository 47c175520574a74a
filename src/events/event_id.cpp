#include "events/event_id.hpp"

#include <fmt/format.h>

#include "events/event.hpp"

namespace kg::events {

EventIdGenerator::EventIdGenerator() {  // NOLINT(cert-msc51-cpp): rng_ is seeded here, from random_device
    std::random_device rd;
    std::seed_seq seed{rd(), rd(), rd(), rd()};
    rng_.seed(seed);
}

std::string EventIdGenerator::next(TimePoint t) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    std::uint64_t r;
    {
        std::lock_guard lock(mutex_);
        r = rng_();
    }
    return fmt::format("{:011x}-{:016x}", ms, r);
}

const char* to_string(EventState s) {
    switch (s) {
        case EventState::start:
            return "start";
        case EventState::update:
            return "update";
        case EventState::end:
            return "end";
    }
    return "?";
}

std::string Event::message_id() const {
    switch (state) {
        case EventState::start:
            return id + ":start";
        case EventState::update:
            return fmt::format("{}:update-{}", id, update_number);
        case EventState::end:
            return id + ":end";
    }
    return id;
}

}  // namespace kg::events
