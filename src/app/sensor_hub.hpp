#pragma once
// The sensor side of the gateway: inputs (MQTT, Modbus) -> readings -> rules -> events, into the
// same outbox as the cameras'; current values as retained state and per-minute roll-ups.

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "app/camera_pipeline.hpp"
#include "app/event_log.hpp"
#include "outbox/outbox.hpp"
#include "publish/mqtt_link.hpp"
#include "publish/topics.hpp"
#include "sensors/inputs.hpp"
#include "sensors/rollup.hpp"
#include "sensors/sensor_rules.hpp"

namespace kg::app {

// What one run's sensors hand to the next at a reload (the process goes on): each sensor's last
// reading and its minute in progress. A door contact reports once when the door opens; without its
// last reading the next run would not know the door is open until it shut again. And the minute
// in progress goes on in the next run instead of being sent twice, cut in two.
// What a run hands to the next across a reload (the process goes on).
struct CarryOver {
    struct Sensor {
        config::Sensor config;  // as the previous run read it
        std::optional<sensors::Reading> last;
        sensors::Roller roller;
        sensors::SensorRules::Cycles cycles;      // a disinfection cabinet's last cycle and missed one
        std::optional<SteadyPoint> silent_since;  // SensorRules::silent_since()
        // Its open events, not ended by the stop (SensorRules::hand_over): taken over by the next
        // run when it judges their conditions alike, else their ends are sent. An offline one's end
        // carries the latest cause; the kind the room was told, and when, come below.
        std::vector<events::EventTracker::Handover> open;
        // Its thresholds' conditions pending confirmation (SensorRules::pending_limits).
        std::map<std::size_t, TimePoint> pending;
        events::CauseTold cause_told;  // what the room was told of its offline event's cause
    };
    std::map<std::string, Sensor> sensors;
    // The cameras' open offline events (CameraPipeline::hand_over_offline), by camera id, with the
    // camera as that run had it.
    struct CameraOffline {
        config::Camera config;
        events::EventTracker::Handover open;
        events::CauseTold cause_told;  // CameraPipeline::cause_told()
    };
    std::map<std::string, CameraOffline> camera_offline;
    // The cameras' other open events the next run judges alike (CameraPipeline::hand_over_events),
    // by camera id, with the camera as that run had it.
    struct CameraEvents {
        config::Camera config;
        std::vector<CameraPipeline::HandedEvent> open;
        std::vector<CameraPipeline::PendingCondition> pending;  // CameraPipeline::hand_over_pending
    };
    std::map<std::string, CameraEvents> camera_events;
    // The cameras online at the stop that the next run watches as this one did, with their last
    // frame (CameraPipeline::take_over_seen): online across the reload, not offline to the room
    // until their first frame; judged offline from that frame if none comes.
    struct CameraSeen {
        config::Camera config;
        TimePoint last_frame;
        SteadyPoint last_frame_steady;  // the process's steady clock, which a reload keeps
    };
    std::map<std::string, CameraSeen> camera_seen;
    // The cameras' inputs (their connection and parents' feed, CameraPipeline::release_input) that
    // the next run has alike (CameraInput::Spec), still running, by camera id: the camera is not
    // connected to again, and parents' streams go on.
    std::map<std::string, std::unique_ptr<CameraInput>> camera_inputs;
    // And what their analysis learned from them (CameraPipeline::release_analysis), with the camera
    // as that run had it: the next run's checks set up alike take it over.
    struct CameraAnalysis {
        config::Camera config;
        std::unique_ptr<CameraPipeline::Analysis> analysis;
    };
    std::map<std::string, CameraAnalysis> camera_analysis;
    // Their open `unstable` and `damaged` events (CameraPipeline::hand_over_stream_events), with
    // the camera as that run had it.
    struct CameraStream {
        config::Camera config;
        CameraPipeline::StreamEvents open;
    };
    std::map<std::string, CameraStream> camera_stream;
    // The state topics of the cameras and sensors reloads removed: cleared (an empty retained
    // message) again on each connection of the next run, for the broker that was down when the
    // stopping run cleared them, or would keep their last states for good.
    std::vector<std::string> cleared_states;
    EventLog::Day event_day;     // the parents' "today" figures
    EventLog::Open open_events;  // and the events open now (those handed over, above)
    // The MQTT sensor input, still connected and subscribed, when the next run reads the same broker
    // with the same account and client id (MqttSensorInput::detach): what the sensors send meanwhile waits
    // in its queue for the next run.
    std::unique_ptr<sensors::MqttSensorInput> mqtt_input;
    bool from_a_run = false;  // handed over by a run of this process (a reload), not a fresh start
    // A reload's next run failed in its start and took what was handed over with it: the events
    // it left open in the outbox were ended by no crash, and end as stopped (the run after is the
    // configuration before, started again).
    bool hand_over_lost = false;
};

// One minute's roll-up of a sensor, through the outbox as telemetry. `partial`: another run may
// send the rest of the minute (it is cut by a stop, or began before this run), so the room adds the
// two instead of keeping the last.
// Whether a run of `next` sends its events where `now` does (the same site, topics and outbox), so
// that an event open in one can go on in the other.
bool continues_events(const config::Gateway& now, const config::Gateway& next);
// Whether a run of `next` is, to the room, the same gateway as `now` going on: it sends its events
// where `now` does, to the same broker with the same account. A reload between them does not say
// the site, its cameras and its sensors offline: the room saw each reload as a restart.
bool continues_presence(const config::Gateway& now, const config::Gateway& next);
// Whether a sensor configured as `before` is read as `after` is: its last reading and minute in
// progress hold for the next run (the same source and unit).
bool reads_alike(const config::Sensor& before, const config::Sensor& after);

// The ends of the events a reload handed over that no run took over: sent as the stop would have.
void end_handed_over(events::EventSink& sink, CarryOver& carried);

void publish_rollup(outbox::Outbox& outbox, const publish::Topics& topics, const std::string& site,
                    const config::Sensor& sensor, const sensors::Rollup& r, bool partial = false);

class SensorHub {
public:
    SensorHub(const SiteContext& site, outbox::Outbox& outbox, publish::MqttLink& link,
              const publish::Topics& topics);
    ~SensorHub();

    // Before start(): takes over the previous run's readings and minutes (a reload) for the sensors
    // read the same way as before (same source and unit); the minutes of the others are sent now.
    void adopt(CarryOver carried);
    void start();
    // Ends the sensors' events and publishes their states offline. With `carry` (a reload) each
    // sensor's last reading and minute in progress go there instead of a partial roll-up, and so do
    // the open events of the sensors `next` (the reload's configuration) keeps, unended, when its
    // events go to the same place (continues_events). The states of sensors `next` does not have
    // are cleared instead.
    void stop(CarryOver* carry = nullptr, const config::Gateway* next = nullptr);
    // Reading from any input thread.
    void on_reading(const sensors::Reading& reading);
    // Supervisor: staleness, disinfection windows, roll-ups of quiet minutes, state reports.
    // `steady_now`: the same moment on the monotonic clock, on which staleness and `for` are timed.
    void tick(TimePoint now, SteadyPoint steady_now, bool publish_all_states);

    std::size_t size() const { return entries_.size(); }
    // Current state of every sensor, for the local API and the metrics.
    nlohmann::json states(TimePoint now);
    // What the inputs could not turn into readings, for the metrics: by sensor (each of this hub's
    // sensors listed), and failed connects by Modbus device.
    sensors::SensorCounts input_counts() const;
    std::map<std::string, std::uint64_t> connect_failures() const;

private:
    struct Entry {
        std::unique_ptr<sensors::SensorRules> rules;
        sensors::Roller roller;
        std::vector<std::string> last_conditions;
        std::optional<sensors::Reading> last;  // the last valid reading, for the next run
        // While its offline event is open: why it has no readings, as its input found last (the
        // state and the end say it), the kind the room was last told and when.
        std::optional<events::EventCause> cause;
        events::CauseTold told;
    };
    // A silence's cause changed during the outage (a sensor silent, then its broker gone): an
    // update says it, at once when the room was told none, else at most this often (an input whose
    // failures alternate), as for a camera.
    static constexpr std::chrono::minutes kCauseUpdateEvery{1};
    // Keeps `e`'s cause as its input found it (`cause`) while its offline event is open, and adds
    // an update to `out` when the room should hear of it. True when the cause changed.
    // The events of `out` from `begin` on are the ones its rules made at this tick.
    static bool follow_cause(Entry& e, const std::optional<events::EventCause>& cause, TimePoint now,
                             SteadyPoint steady_now, std::vector<events::Event>& out, std::size_t begin);
    // The end of its outage among `out` from `begin` on carries the latest cause, as a camera's
    // does, and the entry forgets it.
    static void end_cause(Entry& e, std::vector<events::Event>& out, std::size_t begin);
    void deliver(std::vector<events::Event>& events);
    // Why `sensor` has no readings, as its input last found (sensors::SilenceCauses).
    std::optional<events::EventCause> silence_cause(const std::string& sensor) const;
    // Partial when cut by the stop (`stopping`) or begun before this hub was made.
    void publish_rollup(const config::Sensor& sensor, const sensors::Rollup& r, bool stopping = false);
    struct StateMessage {
        std::string topic;
        std::string payload;
    };
    // The retained state of a sensor, made under mutex_ and published after both locks are let go:
    // publishing takes Paho's process-wide mutex, and no lock of ours is held into Paho's (when
    // readings were handled on Paho's thread, holding it, that order deadlocked the supervisor with
    // it: ThreadSanitizer, test_sensors). `running` false: the gateway stops reading the sensor (a
    // stop or a reload), so not online.
    StateMessage state_message(const Entry& e, TimePoint now, bool running = true) const;
    void publish_states(const std::vector<StateMessage>& messages);

    const SiteContext& site_;
    outbox::Outbox& outbox_;
    publish::MqttLink& link_;
    const publish::Topics& topics_;
    std::shared_ptr<spdlog::logger> log_;
    const TimePoint created_ = Clock::now();  // a minute begun before it may be partly another run's

    std::mutex mutex_;  // readings arrive on input threads, ticks on the supervisor
    // Taken before mutex_ by whatever makes events, and held until they are in the outbox: two
    // threads' events reach it in the order they were made (an offline sensor's start, made by a
    // tick, went in after the end a reading arriving meanwhile made), while the fsync of their
    // commit does not hold up the state reads that take mutex_ alone.
    std::mutex deliver_mutex_;
    std::map<std::string, Entry> entries_;
    std::vector<events::Event> pending_;
    bool stopped_ = false;  // stop() ran: the destructor's call does nothing more

    std::vector<const config::Sensor*>
        mqtt_sensors_;  // this run's, for the input start() makes or adopt() takes
    std::unique_ptr<sensors::MqttSensorInput> mqtt_;
    std::vector<std::unique_ptr<sensors::ModbusPoller>> modbus_;
};

}  // namespace kg::app
