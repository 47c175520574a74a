#pragma once
// The closed loop of one alert (预警 -> 核查 -> 处置 -> 反馈) as a small state machine:
//   open --acknowledge--> acknowledged --close (what was done)--> closed
// plus notes at any time (a re-check days later is a note on a closed alert). Kept apart from
// the store so that the rules are read, and tested, in one place.

#include <optional>
#include <string>

#include "common/time.hpp"
#include "monitor/monitor_config.hpp"

namespace kg::monitor {

enum class Status { open, acknowledged, closed };
enum class Action { acknowledge, close, note };

const char* to_string(Status s);
const char* to_string(Action a);
std::optional<Status> parse_status(const std::string& text);
std::optional<Action> parse_action(const std::string& text);

struct Transition {
    bool ok = false;
    Status next = Status::open;
    std::string error;  // why not, for the operator
};

// Whether `action` may be taken on an alert in `current`; `note` is the operator's text.
Transition transition(Status current, Action action, const std::string& note);

// Where an alert stands against its tier's deadlines, counted from when it was received.
struct DeadlineState {
    std::optional<TimePoint> acknowledge_due;
    std::optional<TimePoint> close_due;
    bool overdue = false;
    std::string overdue_reason;  // "acknowledge" or "close" (empty when not overdue)
};

DeadlineState deadline_state(const std::array<Deadline, 3>& deadlines, int severity, Status status,
                             TimePoint received, TimePoint now);

}  // namespace kg::monitor
