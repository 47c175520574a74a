#pragma once
// The composition root: builds the components from the config, starts them in data-flow order
// (broker link, outbox, analysis, cameras) and stops them in reverse.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "app/analysis_pool.hpp"
#include "app/camera_pipeline.hpp"
#include "app/event_log.hpp"
#include "app/sensor_hub.hpp"
#include "app/tick_parts.hpp"
#include "common/file_lock.hpp"
#include "common/log_throttle.hpp"
#include "common/logging.hpp"
#include "common/worker_thread.hpp"
#include "config/config.hpp"
#include "events/event_id.hpp"
#include "evidence/evidence_store.hpp"
#include "outbox/outbox.hpp"
#include "outbox/replay.hpp"
#include "outbox/sqlite_store.hpp"
#include "publish/mqtt_link.hpp"
#include "publish/topics.hpp"
#include "rules/schedule.hpp"
#include "web/local_api.hpp"
#include "web/public_site.hpp"

namespace kg::app {

class Gateway final : public web::GatewayView, public web::PublicView {
public:
    // `logins`: the cameras' logins, kept by the process across reloads (see ingest::LoginGate);
    // null: this run's own.
    Gateway(config::Gateway cfg, const Logging& logging, ingest::LoginGate* logins = nullptr);
    ~Gateway() override;

    // `carried`: at a reload, the previous run's sensor readings and minutes in progress. Taken over
    // inside start(), after the events a crashed run left open are ended: a reading that raises an
    // alarm at once (gas, no `for`) would otherwise open an event those ends would close.
    void start(CarryOver carried = {});
    // Periodic supervision, from the main thread's timer: offline detection, clips, state reports,
    // the sensor rules, evidence expiry. Each part runs on its own (TickParts): one that throws is
    // logged and the others still run.
    void tick();
    // A seam for tests: called with a part's name before tick() runs that part; what it throws is that
    // part's failure. Unset in the daemon.
    void before_tick_part(std::function<void(std::string_view part)> hook) { before_part_ = std::move(hook); }
    // With `carry` (a reload: the process goes on) the sensors hand their readings and minutes in
    // progress over instead of sending partial roll-ups. With `next` (the configuration the reload
    // goes on with) the retained states of the cameras and sensors it no longer has are cleared on
    // the broker (an empty retained message): shown offline, they stayed there for every subscriber.
    void stop(CarryOver* carry = nullptr, const config::Gateway* next = nullptr);

    static constexpr auto kTickInterval = std::chrono::milliseconds(500);

    // How the last reload asked for since the process started went (refused, failed and the
    // configuration before it started again, or made), for /metrics: the log alone told that the box
    // runs something else than its file.
    struct ReloadOutcome {
        TimePoint at;
        bool made = false;
    };
    void note_reload(ReloadOutcome outcome) { last_reload_ = outcome; }
    // Before start(): when the process started, and whether a reload started this run (made, or
    // failed and the configuration before started again). The room's `gateway` message says the
    // first as `started_at` and then this run's start as `reloaded_at`: a reload is not a restart.
    void note_process_start(TimePoint at, bool reloaded) {
        process_started_ = at;
        reloaded_ = reloaded;
    }
    // An HTTP side the process opens (`side`: "api" or "public"; `what`: how the log names it):
    // `problem` empty while it listens, else why not (a port taken: it is tried again with back-off).
    // In /readyz and /metrics: a parents' page not served was in the log alone.
    void note_listener(const std::string& side, std::string what, std::string problem) {
        listeners_[side] = {std::move(what), std::move(problem)};
    }

    // web::GatewayView, on the main thread (as tick()).
    nlohmann::json cameras() const override;
    nlohmann::json sensors() const override;
    nlohmann::json recent_events(std::size_t limit) const override;
    std::optional<nlohmann::json> event(const std::string& event_id) const override;
    bool clip_pending(const std::string& event_id) const override {
        return event_log_.clip_pending(event_id);
    }
    std::optional<std::string> evidence_file(const std::string& event_id,
                                             const std::string& kind) const override;
    bool ready(std::string& why_not) const override;
    std::string metrics() const override;
    nlohmann::json dead_messages(std::size_t limit) const override;
    std::size_t requeue_dead() override { return outbox_.requeue_dead(); }

    // web::PublicView: only what parents may see.
    nlohmann::json public_status() const override;
    stream::PublicFeed* public_feed(const std::string& camera) const override;
    web::ViewerCounter& viewers() const override { return *viewers_; }

private:
    void adopt(CarryOver&& carried);
    CameraPipeline* camera_pipeline(const std::string& id) const;  // null: no such camera in this run
    // At a fresh start: the missed disinfection cycles the previous run's stop ended (`history`,
    // the event messages it published; `alive_at`, its last heartbeat), raised again through
    // `carried` as a reload hands them over.
    void carry_missed_cycles(const std::vector<std::string>& history, std::optional<TimePoint> alive_at,
                             CarryOver& carried);
    void note_alive(TimePoint now);  // the heartbeat in the outbox (SqliteStore::note_alive)
    void publish_states(TimePoint now, bool due);
    void publish_gateway(TimePoint now);
    void apply_public_hours(TimePoint now);
    // On Paho's callback thread: a retained state of a camera or sensor this run has not is queued.
    void note_state(const publish::MqttLink::Message& message, const std::string& filter, const char* kind);
    void clear_foreign_states();
    void run_part(std::string_view name, SteadyPoint now, const std::function<void()>& part);

    const config::Gateway cfg_;
    std::shared_ptr<spdlog::logger> log_;
    TickParts tick_parts_;
    std::function<void(std::string_view)> before_part_;
    publish::Topics topics_;
    events::EventIdGenerator ids_;
    rules::Calendar calendar_;
    std::map<std::string, rules::Schedule> schedules_;
    // Held while this gateway runs: a second process on the same outbox would send this one's
    // messages and end its open events as left by a crash.
    std::optional<FileLock> outbox_lock_;
    publish::MqttLink link_;
    // Why the outbox file could not be used and messages are kept in memory only; empty when it is a
    // file (before store_).
    std::string outbox_memory_only_;
    std::uint64_t corrupt_outboxes_ = 0;  // damaged outbox files moved aside at the start (before store_)
    // Why evidence.path cannot be written (no snapshot or clip kept), empty when it can: checked at the
    // start and with each expiry, so that a folder mended meanwhile (chown, a drop-in) is seen.
    std::string evidence_unwritable_;
    void check_evidence_folder();
    std::unique_ptr<outbox::SqliteStore> store_;
    outbox::Outbox outbox_;
    outbox::ReplayDesk replay_desk_;  // answers the room's replay requests through the outbox
    EventLog event_log_;
    std::unique_ptr<evidence::EvidenceStore> evidence_;
    // Kept while saving is on, and also while it is off but the folder exists, so that frames
    // saved before still expire.
    std::unique_ptr<evidence::EvidenceStore> training_frames_;
    std::unique_ptr<ingest::LoginGate> own_logins_;  // without the process's
    SiteContext site_;
    AnalysisPool pool_;
    std::vector<std::unique_ptr<CameraPipeline>> cameras_;
    // Cuts the clips whose post-roll has passed. Not on the supervisor's thread, which serves the
    // local API and the parents' page: muxing and syncing three 30 MB clips held every request up
    // to 288 ms (the evidence review), and an SD card takes seconds.
    WorkerThread clip_cutter_;
    RepeatedFailure clip_failures_;                // on clip_cutter_'s thread
    std::unique_ptr<web::ViewerCounter> viewers_;  // the public side's viewers, for its caps and metrics
    bool public_open_ = true;                      // within public hours, as last ticked
    std::map<std::string, std::pair<std::string, std::string>>
        listeners_;  // note_listener: side -> what, problem
    // When the public hours next open or close (none: not within 8 days, or no hours), for the
    // parents' page; worked out at a change, not on every tick (it walks the week minute by minute).
    std::optional<TimePoint> public_change_;
    std::optional<TimePoint> public_change_worked_at_;
    std::unique_ptr<SensorHub> sensors_;
    std::vector<bool> last_online_;
    std::vector<publish::CameraState> states_;  // as last supervised (offline at the start)
    bool supervised_ = false;                   // the first tick has supervised the cameras

    TimePoint started_at_{};
    std::optional<TimePoint> process_started_;  // note_process_start (none: this run's start)
    bool reloaded_ = false;
    // config::doubts of the running configuration: in the log at start, in /metrics, and to the room
    // in the gateway message.
    std::vector<std::string> config_warnings_;
    std::optional<ReloadOutcome> last_reload_;  // none since the process started: nothing to say
    SteadyPoint last_state_publish_{};
    SteadyPoint last_expiry_{};
    SteadyPoint last_alive_note_{};
    std::atomic<bool> republish_{false};
    // Cleared on every connection (CarryOver::cleared_states); set before the link starts.
    std::vector<std::string> cleared_states_;
    // The state topics this run publishes (its enabled cameras, its sensors): a retained state on
    // any other of the site's is left from a camera or sensor it does not have, and is cleared.
    // Fixed at construction, so read from Paho's thread without a lock.
    const std::set<std::string> own_states_;
    std::mutex foreign_mutex_;
    // Under foreign_mutex_: topic -> whose state it is ("camera 'x'"), for the next tick to clear
    // (MqttLink::publish refuses until the connection's hooks ran, and the broker sends the retained
    // states before).
    std::map<std::string, std::string> foreign_states_;
    // The highest acknowledged number the retained gateway message last carried (-1: none yet).
    std::atomic<std::int64_t> published_acknowledged_{-1};
    bool running_ = false;
};

}  // namespace kg::app
