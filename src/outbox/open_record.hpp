#pragma once
// The outbox's record of an event open in the room (SqliteStore's open_events): what ending it
// takes when the run that opened it is gone without ending it (a crash, a power cut). The end then
// carries the same id, source, check, label, zone, severity, start time and scores as the event.
// Likewise its record of a clip a start named and that was not reported yet (pending_clips): what
// reporting it takes when the run that promised it is gone.

#include <string>

#include "events/event.hpp"

namespace kg::outbox {

// The record of a start or an update, as JSON.
std::string open_record(const events::Event& event);

// The end of the event `id` that `record` describes: end_time and time `now`, end_reason `reason`.
// Throws std::runtime_error naming the event and what is wrong with the record.
events::Event end_from_record(const std::string& id, const std::string& record, TimePoint now,
                              const std::string& reason);

// The record of the clip a start names (event.evidence.clip, not empty).
std::string clip_record(const events::Event& start);

// The report of the clip that `record` describes for the event `event_id`: its camera, start time
// and path (relative to the evidence folder, as the start named it), with `error`. Throws
// std::runtime_error naming the event and what is wrong with the record.
events::ClipReport clip_from_record(const std::string& event_id, const std::string& record,
                                    const std::string& error);

}  // namespace kg::outbox
