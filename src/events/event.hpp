#pragma once
// An event: a condition on one camera (or sensor) with a start, updates and an end. Every message
// about it carries the same id.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/time.hpp"
#include "vision/check.hpp"

namespace kg::events {

enum class EventState { start, update, end };
const char* to_string(EventState s);

struct Event {
    std::string id;
    std::string source;  // camera id
    std::string check;
    std::string label;
    std::string zone;  // empty: whole frame
    int severity = 3;  // 1 immediate, 2 fix within a deadline, 3 routine
    EventState state = EventState::start;
    std::uint32_t update_number = 0;  // n of "update-n"
    TimePoint start_time{};
    std::optional<TimePoint> end_time;
    TimePoint time{};  // when this message was produced
    float score = 0;
    float top_score = 0;
    std::vector<vision::Box> boxes;

    std::string message_id() const;
};

// Where events go next (the outbox). Called from analysis and supervisor threads.
class EventSink {
  public:
    virtual ~EventSink() = default;
    virtual void submit(const Event& event) = 0;
};

}  // namespace kg::events
