#include "monitor/alert_state.hpp"

namespace kg::monitor {

const char* to_string(Status s) {
    switch (s) {
        case Status::open:
            return "open";
        case Status::acknowledged:
            return "acknowledged";
        case Status::closed:
            return "closed";
    }
    return "open";
}

const char* to_string(Action a) {
    switch (a) {
        case Action::acknowledge:
            return "acknowledge";
        case Action::close:
            return "close";
        case Action::note:
            return "note";
    }
    return "note";
}

std::optional<Status> parse_status(const std::string& text) {
    if (text == "open") return Status::open;
    if (text == "acknowledged") return Status::acknowledged;
    if (text == "closed") return Status::closed;
    return std::nullopt;
}

std::optional<Action> parse_action(const std::string& text) {
    if (text == "acknowledge") return Action::acknowledge;
    if (text == "close") return Action::close;
    if (text == "note") return Action::note;
    return std::nullopt;
}

namespace {

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

}  // namespace

Transition transition(Status current, Action action, const std::string& note) {
    switch (action) {
        case Action::acknowledge:
            if (current == Status::open) return {true, Status::acknowledged, {}};
            return {false, current,
                    current == Status::acknowledged ? "already acknowledged" : "already closed"};
        case Action::close:
            // Verification comes before handling: an alert nobody looked at cannot be closed.
            if (current == Status::open) return {false, current, "acknowledge it first"};
            if (current == Status::closed) return {false, current, "already closed"};
            // The feedback is the point of the loop: what was done must be written down.
            if (blank(note)) return {false, current, "say what was done (a note is required to close)"};
            return {true, Status::closed, {}};
        case Action::note:
            if (blank(note)) return {false, current, "the note is empty"};
            return {true, current, {}};
    }
    return {false, current, "unknown action"};
}

DeadlineState deadline_state(const std::array<Deadline, 3>& deadlines, int severity, Status status,
                             TimePoint received, TimePoint now) {
    DeadlineState out;
    if (severity < 1 || severity > 3) return out;
    const auto& d = deadlines[static_cast<std::size_t>(severity - 1)];
    if (d.acknowledge) out.acknowledge_due = received + *d.acknowledge;
    if (d.close) out.close_due = received + *d.close;
    if (status == Status::open && out.acknowledge_due && now > *out.acknowledge_due) {
        out.overdue = true;
        out.overdue_reason = "acknowledge";
    } else if (status != Status::closed && out.close_due && now > *out.close_due) {
        out.overdue = true;
        out.overdue_reason = "close";
    }
    return out;
}

}  // namespace kg::monitor
