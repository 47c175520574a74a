#pragma once
// The outbox's record of an event open in the room (SqliteStore's open_events): what ending it
// takes when the run that opened it is gone without ending it (a crash, a power cut). The end then
// carries the same id, source, check, label, zone, severity, start time and scores as the event.

#include <string>

#include "events/event.hpp"

namespace kg::outbox {

// The record of a start or an update, as JSON.
std::string open_record(const events::Event& event);

// The end of the event `id` that `record` describes: end_time and time `now`, end_reason `reason`.
// Throws std::runtime_error naming the event and what is wrong with the record.
events::Event end_from_record(const std::string& id, const std::string& record, TimePoint now,
                              const std::string& reason);

}  // namespace kg::outbox
