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

// end_reason of the ends a stopping or reloading gateway sends for its open events.
inline constexpr const char* kEndStopped = "gateway stopped";
// end_reason of the ends a camera's events get when it goes offline: without frames the condition
// can be neither seen nor seen to clear (end_time is its last frame).
inline constexpr const char* kEndCameraOffline = "camera offline";
// end_reason of the ends a camera's events get when the check that sees them has failed on every
// frame for the rule's `clear`: it can no longer tell whether the condition holds or cleared
// (end_time is the check's last good frame).
inline constexpr const char* kEndCheckFailing = "check failing";
// end_reason of the ends a camera's events get when its picture has been black, blank or covered
// (camera_health says so) for the rule's `clear`: nothing in it can be seen, not even the condition
// clearing (end_time is the last usable frame).
inline constexpr const char* kEndPictureUnusable = "picture unusable";
// end_reason of the ends a starting gateway sends for the events its previous run left open
// (killed, crashed, power cut): it could not end them itself.
inline constexpr const char* kEndRestarted = "gateway restarted";
// end_reason of the ends a sensor's events get when it goes silent (offline): without readings the
// condition can be neither seen nor seen to clear (end_time is its last reading).
inline constexpr const char* kEndSensorOffline = "sensor offline";
// end_reason of the ends a sensor's threshold events get when it has read only impossible values
// (outside valid_range) for as long as a silence makes it offline: the condition can no longer be
// seen (end_time is its last good reading).
inline constexpr const char* kEndSensorInvalid = "sensor invalid";
// end_reason of the ends a rule's events get when the rule's schedule ends: outside it the
// condition is not judged, so it is not known to have cleared.
inline constexpr const char* kEndScheduleEnded = "schedule ended";
// error of the clip reports a starting gateway sends for the clips its previous run promised in a
// start and died before cutting (killed, crashed, power cut within clip_post of the start).
inline constexpr const char* kClipRestarted = "gateway restarted before the clip was recorded";

// Where the proof of an event is, relative to the evidence folder; empty when there is none.
struct EventEvidence {
    std::string snapshot;             // annotated JPEG of the frame that started it
    std::string snapshot_end;         // the best-scoring frame, at the end
    std::string clip;                 // MP4 around the start; written clip_post after it
    std::vector<std::string> errors;  // why some evidence is missing (the event is sent regardless)
};

// What the gateway knows of why a condition holds, where it knows it: a camera's outage says its
// latest failure to read the camera ("unauthorized": "cannot open: Server returned 401 ...").
struct EventCause {
    std::string kind;  // a word to sort by (ingest::FailureCause for cameras)
    std::string text;  // the failure as it was said, passwords masked
    bool operator==(const EventCause&) const = default;
};

// The kind of cause an open outage's messages last told the room, and when (monotonic clock): a
// reload hands it to the next run, which then tells a cause of another kind found meanwhile.
struct CauseTold {
    std::optional<std::string> kind;
    SteadyPoint at{};
};

struct Event {
    std::string id;
    std::string source;  // camera or sensor id
    bool from_sensor = false;
    std::optional<double> value;  // sensor events: the reading that caused this message
    std::string unit;
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
    EventEvidence evidence;
    // Why an end was sent: empty when the condition cleared; set when the gateway ended the event
    // itself (kEndStopped, kEndRestarted, kEndCameraOffline, kEndCheckFailing), so the room does not
    // take it for a resolved condition.
    std::string end_reason;
    std::optional<EventCause> cause;
    // disinfection/missed_cycle: the windows missed since it started (a window missed while it is
    // open is an update with one more); 0 for any other event.
    std::uint32_t windows_missed = 0;

    std::string message_id() const;
};

// A clip that was cut for an event (or could not be).
struct ClipReport {
    std::string event_id;
    std::string camera;
    std::string path;   // relative to the evidence folder, when written
    std::string error;  // when not
    TimePoint start_time{};
    double seconds = 0;
    std::size_t bytes = 0;
};

// Where events and their evidence go next (the outbox). Called from analysis and supervisor threads.
class EventSink {
public:
    virtual ~EventSink() = default;
    virtual void submit(const Event& event) = 0;
    virtual void submit_snapshot(const Event& event, std::string jpeg) = 0;
    virtual void submit_clip(const ClipReport& clip) = 0;
};

}  // namespace kg::events
