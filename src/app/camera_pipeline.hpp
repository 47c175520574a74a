#pragma once
// Everything that belongs to one camera: its input (the ingest worker, the frame hand-off and the
// parents' feed: CameraInput, which a reload may hand to the next run), its clip ring, its checks, the zone
// and schedule rules, the event trackers and the evidence of their events. The analysis side runs on the
// shared pool; the supervisor side (offline detection, clips, the state report) runs on the gateway's timer.

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "app/analysis_pool.hpp"
#include "app/camera_input.hpp"
#include "common/log_throttle.hpp"
#include "common/logging.hpp"
#include "config/config.hpp"
#include "events/event_tracker.hpp"
#include "evidence/event_evidence.hpp"
#include "evidence/packet_ring.hpp"
#include "evidence/training_frames.hpp"
#include "ingest/camera_stats.hpp"
#include "ingest/camera_worker.hpp"
#include "ingest/latest_frame.hpp"
#include "publish/payloads.hpp"
#include "rules/schedule.hpp"
#include "rules/zones.hpp"
#include "stream/public_feed.hpp"
#include "vision/check.hpp"
#include "vision/frame_passes.hpp"
#include "vision/motion.hpp"

namespace kg::app {

// What every camera of a site shares.
struct SiteContext {
    const config::Gateway& config;
    const rules::Calendar& calendar;
    const std::map<std::string, rules::Schedule>& schedules;
    evidence::EvidenceStore* evidence;         // null: no evidence kept
    evidence::EvidenceStore* training_frames;  // null: no frames saved for labelling
    events::EventSink& sink;
    events::EventIdGenerator& ids;
    const Logging& logging;
    // The cameras' logins, shared by every camera of the process and kept across reloads (see
    // ingest::LoginGate); null: this camera's own (tests).
    ingest::LoginGate* logins;
};

// Makes the check a camera's configuration names (tests give their own; empty: the built-in ones).
using CheckFactory = std::function<std::unique_ptr<vision::Check>(const std::string& name)>;

// Whether a camera configured as `after` is watched as `before` was: fetched from the same place,
// judged offline after the same silence. What a reload hands over of its connection goes on then.
bool watched_alike(const config::Camera& before, const config::Camera& after);
// Whether an open event of `check` on a camera configured as `before` goes on where it is
// configured as `after`: watched alike, the check still run, by the same rule, in the same zones and
// masks, and judged on each picture afresh by a built-in check (no_mask, bare_head, black, blank),
// or, with `learned_kept` (the next run's check took what this one's learned:
// CameraPipeline::take_over_analysis), by a built-in check that learns over time (camera_health's
// frozen and covered, unattended, after_hours_motion, cleanliness, bin_lid) set up alike.
bool events_alike(const config::Camera& before, const config::Camera& after, const std::string& check,
                  const std::string& label, bool learned_kept = false);
// Whether the built-in `check` learns over time from the pictures, as the five above do.
bool learns(const std::string& check);

class CameraPipeline final : public AnalysisJob {
public:
    CameraPipeline(const config::Camera& camera, AnalysisPool& pool, const SiteContext& site,
                   const CheckFactory& make_checks = {});
    ~CameraPipeline() override;

    void start();
    // Stops the camera's input, or with `keep_input` (a reload whose next run has the camera's input
    // alike: CameraInput::Spec) detaches it from this pipeline and leaves it running, for
    // release_input() once this run is done with its counters.
    void stop(bool keep_input = false);
    std::unique_ptr<CameraInput> release_input();
    // Before start(): the input the previous run's pipeline of this camera released, if made alike;
    // this one's own, made and not started, goes. False (`input` left as it was) otherwise.
    bool take_over_input(std::unique_ptr<CameraInput>& input);
    const CameraInput::Spec& input_spec() const { return input_->spec(); }
    // The open `unstable` and `damaged` events, judged from the input's counters (breaks in the last
    // hour, damaged pictures), which go on with a handed-over input: ended at the reload, they were
    // raised again at once by the next run from the same counters, one more alert each reload.
    struct StreamEvents {
        std::optional<events::EventTracker::Handover> unstable, damaged;
    };
    // At a reload that hands this camera's input over, before close_events(): handed over instead of
    // ended. Supervisor side.
    StreamEvents hand_over_stream_events(TimePoint now, const std::string& reason);
    // Before start(), once take_over_input() took the input they were judged from: takes over those
    // this camera judges alike (the same thresholds, `health.unstable_after` or
    // `health.damaged_share`, and camera_health's rule). Returns the ends of the others, to be sent.
    std::vector<events::Event> take_over_stream_events(StreamEvents handed, const config::Camera& before);
    // Sends an end (with `reason`) for every open event of this camera. Only once stopped and its
    // frames are no longer analysed: the trackers belong to the analysis thread while it runs.
    void close_events(TimePoint now, const std::string& reason);
    // At a reload, before close_events(): the camera's offline event, if open, is handed to the next
    // run instead of ended (EventTracker::Handover), so that a camera down for days is one outage
    // in the room, not one more at each configuration edit, its start time kept. Supervisor side.
    std::optional<events::EventTracker::Handover> hand_over_offline(TimePoint now, const std::string& reason);
    // Before start(): takes over the offline event the previous run's pipeline of this camera handed
    // over, if this one is fetched from the same place and judged offline after the same silence
    // (`before`: the camera as that run had it). It ends when frames are back, as its own would.
    // `told`: what the room was told of its cause (the previous run's cause_told()).
    bool take_over_offline(const events::EventTracker::Handover& h, const config::Camera& before,
                           const events::CauseTold& told = {});
    events::CauseTold cause_told() const { return {told_kind_, cause_sent_at_}; }
    // An open event of a check handed from one run to the next at a reload, with its best frame so
    // far (the snapshot its end will carry).
    struct HandedEvent {
        std::string check, label, zone;
        events::EventTracker::Handover open;
        std::optional<evidence::EventEvidence::BestFrame> best;
    };
    // At a reload, before close_events(): the open events of the conditions judged on each picture
    // afresh by the built-in checks (a missing mask or head covering; a black or blank picture), handed over
    // instead of ended when `after` (the camera as the next run has it) judges them alike
    // (events_alike): the room saw each reload end them as `gateway stopped` and raise them again as
    // new alerts (the 62nd session's review: 31 `black` alerts of one camera in 35 reloads). Those
    // judged over time (frozen, unattended, a floor against its learned reference) start afresh in
    // the next run, and end at the reload as before. Only once stopped.
    // With `input_kept` (the camera's input handed to the next run too) the events of the checks that
    // learn over time go as well, for the next run's checks to take what these learned
    // (release_analysis()).
    std::vector<HandedEvent> hand_over_events(TimePoint now, const std::string& reason,
                                              const config::Camera& after, bool input_kept = false);
    // A condition seen, not yet confirmed, at a reload: since when its `confirm` has been running.
    struct PendingCondition {
        std::string check, label, zone;
        TimePoint since;
    };
    // At a reload, before close_events(): the conditions pending confirmation that `after` judges
    // alike (as hand_over_events() judges the open ones). Forgotten, their confirmation started again
    // in the next run: a reload every few minutes kept a condition from ever being raised, and each
    // delayed it by its `confirm`. Only once stopped.
    std::vector<PendingCondition> hand_over_pending(const config::Camera& after, bool input_kept = false);
    // Before start(), after take_over_analysis(): their confirmation goes on from when the previous
    // run first saw them, where this camera judges them alike.
    void take_over_pending(const std::vector<PendingCondition>& pending, const config::Camera& before);
    // Before start(): takes over what the previous run's pipeline of this camera handed over
    // (`before`: the camera as that run had it); the end of each it does not judge alike is sent,
    // with its best frame, as the stop would have. Returns the ids taken over.
    std::vector<std::string> take_over_events(std::vector<HandedEvent> handed, const config::Camera& before);
    // What this camera's analysis learned from its pictures: its checks that learn over time and its
    // motion map (with the frame passes they read, without the detectors' networks), for the next
    // run's pipeline of a camera whose input goes on.
    struct Analysis {
        std::unique_ptr<vision::FramePasses> passes;
        std::unique_ptr<vision::MotionMap> motion;
        std::vector<std::unique_ptr<vision::Check>> checks;
    };
    // At a reload that hands the camera's input over: the last thing done with this pipeline, as
    // release_input() (its checks go).
    std::unique_ptr<Analysis> release_analysis();
    // Before start(), once take_over_input() took the input that `earlier` analysed (`before`: the
    // camera as that run had it): each check of the same name, set up alike, takes what its
    // predecessor learned (vision::Check::take_state_from), and the motion map its background.
    // Their open events, handed over, then go on (take_over_events(), after this). Returns the
    // names of the checks that took it.
    const std::vector<std::string>& take_over_analysis(Analysis& earlier, const config::Camera& before);
    // Before start(): the last frame of the previous run's pipeline of this camera, online at the
    // reload, if this one watches it as that one did (watched_alike). Until its own first frame the
    // camera is online, and offline `offline_after` from that frame, as if the reload had not been:
    // the room saw every camera offline at each reload, for the seconds its stream took to open.
    bool take_over_seen(const config::Camera& before, TimePoint last_frame, SteadyPoint last_frame_steady);
    // Cuts and reports the clips still waiting for their post-roll (EventEvidence::flush). Only
    // once stopped: the ring no longer grows and no new clip is pending.
    void flush_clips(std::chrono::steady_clock::time_point deadline);
    // Cuts the clips whose post-roll has passed (EventEvidence::poll): on the gateway's clip thread,
    // not the supervisor's, which serves HTTP too.
    void cut_due_clips(SteadyPoint now);

    // Analysis side: runs the checks on the newest frame.
    void run_once() override;
    // Runs the checks on one frame and turns what they see into events (run_once() on the newest).
    // Analysis side: one thread at a time, frames in order.
    void analyse(const ingest::Frame& frame);

    // Supervisor side (one thread): offline detection, due clips, the numbers for the state report.
    // `steady`: the same moment on the steady clock, which judges how long ago the last frame was.
    publish::CameraState supervise(TimePoint now, SteadyPoint steady = std::chrono::steady_clock::now());
    // The numbers for the last state report of a stopping gateway, after close_events(): nothing is
    // observed, so no event opens (an offline camera's would, right after its "gateway stopped").
    publish::CameraState final_state(TimePoint now);

    const config::Camera& camera() const { return camera_; }
    // The camera's ingest counters, which its worker writes (and a test, without a camera).
    ingest::CameraStats& stats() { return input_->stats(); }
    // What the public sees of this camera; null unless it is public and the public side is on, and
    // until start().
    stream::PublicFeed* public_feed() const { return input_ ? input_->feed() : nullptr; }
    // Public hours, for its feed.
    void set_public_open(bool open) { input_->set_open(open); }

private:
    // Ends the camera's open events (not its offline event) as of its last frame.
    publish::CameraState report(TimePoint now, SteadyPoint steady,
                                bool observe);  // supervise() and final_state()
    void end_for_offline(TimePoint last_frame);
    // The stream's own health, on the supervisor's tick: `unstable` (it broke health.unstable_after
    // times in the last hour) and `damaged` (health.damaged_share of the last minute's pictures
    // decoded with errors).
    void judge_stream(TimePoint now, SteadyPoint steady, const ingest::CameraStatsSnapshot& st, bool offline,
                      TimePoint last_frame);
    // An end made under trackers_mutex_, with its best frame, for evidence_ once the lock is let go.
    using EndedEvent = std::pair<events::Event, std::optional<evidence::EventEvidence::BestFrame>>;
    struct Tracked {
        std::string check, label, zone;
        events::EventTracker tracker;
        const rules::Schedule* schedule;  // null: always applies
        // The checks (indices in checks_) whose observations it has had: two checks may report the
        // same check name and label (a user's model beside a built-in check).
        std::vector<std::size_t> producers;
        SteadyPoint last_seen{};  // and on the wall clock: its last observation
        TimePoint last_seen_wall{};
        // This frame's observation, from all its producers (analyse()): marked with the frame.
        std::uint64_t frame_mark = 0;
        float frame_score = 0;
        std::vector<vision::Box> frame_boxes;
    };
    // Whether the tracker's observations all came from the built-in check of its name.
    bool own(const Tracked& t) const;
    // At a take-over (under trackers_mutex_): the tracker of a condition the previous run handed over
    // (`before`: the camera as it had it), its producing check noted; null where this camera has not
    // the check, or judges the condition otherwise (events_alike).
    Tracked* tracker_taking_over(const std::string& check, const std::string& label, const std::string& zone,
                                 const config::Camera& before);
    Tracked& tracker_for(const vision::Observation& o, std::size_t producer);
    // The tracker of a condition, made for it if none is yet (`severity` > 0: the producer's own
    // for it, a model's class mapping). Under trackers_mutex_.
    Tracked& tracker_of(const std::string& check, const std::string& label, const std::string& zone,
                        std::size_t producer, int severity);
    events::TrackerRule rule_for(const std::string& check) const;
    std::unique_ptr<vision::Check> make_check(const std::string& name);
    void check_failed(std::size_t check, const std::exception& e);
    void analyse_frame(const ingest::Frame& frame);
    void frame_failed(const ingest::Frame& frame, const char* what);
    // The labels of the open events, for the state report. Under trackers_mutex_.
    void refresh_conditions();
    // Ends the open events that no check has seen for their rule's clear time because the checks
    // that see them fail, or because the picture is unusable (`blind`: black, blank or covered, as
    // camera_health sees this frame). Under trackers_mutex_; the ends go into `ended`, for
    // evidence_ after it.
    void end_unseen(const ingest::Frame& frame, bool blind, std::vector<EndedEvent>& ended);
    // Whether a check judges nothing in a black, blank or covered picture (its observations then
    // ignored): the ones that look at people and the scene.
    static bool blinded(const std::string& check);

    const config::Camera camera_;
    AnalysisPool& pool_;
    const SiteContext& site_;
    std::shared_ptr<spdlog::logger> log_;

    evidence::PacketRing ring_;  // attached to the input while this pipeline runs
    evidence::EventEvidence evidence_;
    std::unique_ptr<evidence::TrainingFrames> training_;  // when training_frames covers this camera
    rules::ZoneFilter zones_;

    // Analysis side, touched by one pool thread at a time. On the heap, in this order, so that
    // release_analysis() hands them over together, the checks' pointers into the others still good.
    std::unique_ptr<vision::FramePasses> passes_ =
        std::make_unique<vision::FramePasses>();  // work the checks share, done once per frame
    std::unique_ptr<vision::MotionMap> motion_;   // when a check needs it
    std::vector<std::unique_ptr<vision::Check>> checks_;
    // The checks that took what the previous run's learned (take_over_analysis()): their open
    // events go on across the reload as those judged afresh do.
    std::vector<std::string> learned_taken_;
    std::vector<std::size_t> produced_;  // observations_ produced by checks_[i] end at produced_[i]
    // A deque: trackers are never moved once made. Under trackers_mutex_: the supervisor ends their
    // events when the camera goes offline, when no frame comes to the analysis side.
    std::deque<Tracked> trackers_;
    std::uint64_t frame_mark_ = 0;   // counts the frames analyse() judged
    std::vector<Tracked*> touched_;  // the trackers this frame observed, in order
    std::mutex trackers_mutex_;
    std::optional<SteadyPoint> outage_ended_at_;  // under trackers_mutex_: the last end_for_offline()
    std::vector<vision::Observation> raw_, observations_;
    std::vector<EndedEvent> failing_ended_;   // end_unseen(), reused frame after frame
    std::vector<EndedEvent> schedule_ended_;  // ended by their rule's schedule, reused likewise

    // A check that throws loses its observations of that frame; the others and the camera go on.
    // One that keeps failing ends its open events once their rule's clear time has passed.
    struct CheckFailures {
        std::uint64_t unlogged = 0;  // failures since the last log line
        std::optional<std::chrono::steady_clock::time_point> logged;
        bool failed_now = false;  // on the frame being analysed
    };
    std::vector<CheckFailures> failures_;  // per checks_[i]
    LogThrottle frame_failures_;           // frames lost to anything but a check

    // Shared with the supervisor.
    std::mutex conditions_mutex_;
    std::vector<std::string> conditions_;
    std::vector<std::optional<std::chrono::steady_clock::time_point>> failed_at_;  // per checks_[i]

    // Supervisor side.
    TimePoint started_at_{};
    SteadyPoint started_steady_{};
    // The previous run's last frame (take_over_seen), for as long as this run has none of its own.
    std::optional<TimePoint> seen_before_;
    std::optional<SteadyPoint> seen_before_steady_;
    std::unique_ptr<events::EventTracker> offline_;
    // The open outage's latest cause (which its end says), the kind the room was last told of it
    // (none: no cause told yet), and when.
    std::optional<events::EventCause> outage_cause_;
    std::optional<std::string> told_kind_;
    SteadyPoint cause_sent_at_{};
    static constexpr auto kCauseUpdateEvery = std::chrono::minutes(1);
    std::unique_ptr<events::EventTracker> unstable_, damaged_;
    struct DamageSample {
        SteadyPoint t;
        std::uint64_t in = 0, damaged = 0;
    };
    std::deque<DamageSample> damage_samples_;  // the last kDamageWindow of the supervisor's ticks
    static constexpr std::chrono::seconds kDamageWindow{60};
    struct RateSample {
        SteadyPoint t;
        std::uint64_t in = 0, analysed = 0, analysis_ns = 0;
    };
    std::deque<RateSample> rate_samples_;
    // Last, so that it stops (joining the ingest thread, which calls the members above) first.
    std::unique_ptr<CameraInput> input_;
    bool input_taken_over_ = false;  // take_over_input(): its counters began in an earlier run
};

}  // namespace kg::app
