#pragma once
// The monitoring room's memory: sites, cameras, sensors, alerts (one row per event id), every
// event message received (deduplicated by message_id), snapshots, sensor roll-ups, and the
// operators' actions with their publication state. One SQLite file, one connection, one lock.
//
// At-least-once delivery is absorbed here: a message_id seen before is a duplicate and changes
// nothing; a message older than what the alert already shows (a lower update sequence) is kept in
// the history but never rolls the alert back.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/sqlite_db.hpp"
#include "common/time.hpp"
#include "monitor/alert_state.hpp"
#include "monitor/retention.hpp"
#include "monitor/sequence.hpp"

namespace kg::monitor {

// One event message as the gateway publishes it (docs/schemas/event.schema.json), validated.
struct EventMessage {
    std::string message_id;
    std::string id;
    std::string site;
    std::string source_kind;  // "camera" or "sensor"
    std::string source;       // the camera's or sensor's id
    std::string check;
    std::string label;
    int severity = 3;
    std::string state;     // start | update | end
    std::int64_t seq = 0;  // start 0, update-<n> n, end highest
    std::string start_time;
    std::optional<std::string> end_time;
    // Why an `end` ended (docs/mqtt.md): "cleared", or one of the gateway's own ("gateway stopped",
    // "gateway restarted", "camera offline", "check failing", "picture unusable", "sensor offline",
    // "sensor invalid",
    // "schedule ended"),
    // which say nothing about the condition itself. Absent from older gateways.
    std::optional<std::string> end_reason;
    // Why, where the gateway knows (a camera's outage: "unauthorized", "unreachable", ...), as
    // JSON {"kind", "text"}; absent from most events and from older gateways.
    std::optional<std::string> cause;
    // disinfection/missed_cycle: the windows missed since it started (docs/mqtt.md); absent otherwise.
    std::optional<std::int64_t> windows_missed;
    std::string time;
    double score = 0, top_score = 0;
    std::optional<double> value;
    std::string unit;
    std::string raw;  // the payload as received
    // Names ingest shortened or cleaned to store them ("label" ...), for its log; empty mostly.
    std::vector<std::string> cleaned;
};

// expired: a late copy of a message of an alert that retention deleted (remembered 30 days): not
// stored, so that it does not reopen the alert.
enum class IngestOutcome { created, updated, duplicate, stale, rejected, expired };
const char* to_string(IngestOutcome o);

struct Alert {
    std::string id, site, source_kind, source, check, label;
    int severity = 3;
    std::string condition;  // the gateway's last state: start, update or end
    std::string start_time;
    std::optional<std::string> end_time;
    std::optional<std::string> end_reason;       // with condition "end", when the gateway said why
    std::optional<std::string> cause;            // the latest cause a message of it gave (JSON), if any
    std::optional<std::int64_t> windows_missed;  // the latest count a missed_cycle's message gave
    double score = 0, top_score = 0;
    std::optional<double> value;
    std::string unit;
    std::int64_t last_seq = 0;
    std::string received_at, updated_at;
    Status status = Status::open;
    std::optional<std::string> acknowledged_by, acknowledged_at, closed_by, closed_at, close_note;
    bool has_snapshot = false;
    std::optional<std::string> clip;  // the clip report (JSON) once it arrived
    int messages = 0;
};

struct AlertFilter {
    std::optional<std::string> site, check;
    std::optional<int> severity;
    // Empty: everything not closed. Otherwise one status.
    std::optional<Status> status;
    bool all = false;  // every status
    int limit = 200;
};

struct ActionRecord {
    std::int64_t seq = 0;
    std::string event_id, site, action, status_after, operator_name, note, time;
    std::string monitor;  // the client id of the instance that recorded it
    std::optional<std::string> published_at;
};

struct ActionResult {
    enum class Code { ok, not_found, refused } code = Code::ok;
    std::string error;
    std::optional<ActionRecord> record;
};

// What one prune() call deleted.
struct Pruned {
    std::int64_t alerts = 0, snapshots = 0, rollups = 0;
    std::int64_t pending_clips = 0;  // clip reports whose alert never came
    bool more = false;               // a batch was full: call again
    std::int64_t total() const { return alerts + snapshots + rollups + pending_clips; }
};

// What one numbered message (or `gateway` or `lost` message) did to its site's tracked stream.
struct TrackResult {
    // ignored: a stream the site replaced (a late message of its old outbox), or a `lost` about a
    // stream the room does not track; tracked: applied to the site's stream; started: a new stream.
    enum class Kind { ignored, tracked, started } kind = Kind::ignored;
    bool changed = false;  // missing or lost numbers changed: the site's row wants a refresh
    std::optional<GivenUp> given_up;
    std::int64_t lost = 0;  // numbers a `lost` message settled
    // A number that had been counted lost arrived (an operator requeued what the gateway had moved
    // aside, or it came after the room gave up): it is no longer counted.
    std::optional<std::int64_t> found;
    // With `started` for a site that had a stream: the replaced one and how many of its numbers
    // were still missing (the old outbox is gone: they are counted as lost, no longer asked for).
    std::string replaced_stream;
    std::int64_t replaced_missing = 0;
    // Its stream began after the room started following sites (by the two clocks), so it is
    // followed from its first number: with `started`, a site new to the room; with `tracked`, a
    // site first heard of through a numbered message, whose numbers below it are now awaited.
    bool from_first = false;
    // With `ignored`: the number is of a stream the site replaced (a late message of its old outbox).
    bool retired_stream = false;
    // With `started`: the stream is one the site had replaced, current again (its outbox came back);
    // `replaced_stream` is the one it takes over from.
    bool reinstated = false;
    // With `started` for a site new to the room: the site that follows the same stream (the
    // gateway's site.id was that one's); the stream is followed here from the number first heard.
    std::string renamed_from;
    // With `started` for a site that had a stream: its alerts still open, ended by the room with
    // kEndOutboxReplaced (the gateway's record of them went with its outbox).
    std::vector<std::string> ended_alerts;
};

// What set_gateway_info did: the number's effect, and the cameras and sensors it forgot.
struct GatewayStored {
    TrackResult track;
    std::vector<std::string> removed;  // "camera <id>", "sensor <id>"
};

// What add_event did with an event message, and what its number did to the site's stream.
struct EventStored {
    IngestOutcome outcome = IngestOutcome::rejected;
    TrackResult track;
};

// What set_clip did with a clip report, and what its number did to the site's stream. `attached`:
// to its alert. `pending`: the alert is not there yet (its start was lost and is asked for again):
// the report waits for it and is attached when it is created. Neither: another site's alert, or a
// late copy of an alert retention deleted. `evicted`: older waiting reports of the site dropped to
// stay within Store::kMaxPendingClips.
struct ClipStored {
    bool attached = false;
    bool pending = false;
    std::int64_t evicted = 0;
    TrackResult track;
};

// A notification waiting in the store's queue (monitor/notifier.hpp), taken for sending.
struct QueuedNotification {
    std::int64_t id = 0;
    std::string target, event_id, kind;
    int attempts = 0;  // failed attempts so far
    TimePoint queued_at;
    std::int64_t lease = 0;  // the token of this taking: a late answer cannot touch another's lease
};

// The kinds of notification: "open" when an alert arrives, "end" when the gateway ends it.
inline constexpr const char* kNotifyOpen = "open";
// The end_reason of an alert the room ended itself: its gateway started a new outbox (the old one was
// damaged and moved aside, or could not be opened), and with it went the record from which a restarted
// gateway ends what its last run left open. Only the gateway's own `end` replaces it.
inline constexpr const char* kEndOutboxReplaced = "outbox replaced";
inline constexpr const char* kNotifyEnd = "end";
// "again:<n>" when an open alert repeats: a disinfection cabinet that missed its n-th window while
// its missed_cycle is open (a regulator's tally counts each). One a count, so that each is sent once.
inline constexpr std::string_view kNotifyAgain = "again";
std::string notify_again_kind(std::int64_t windows_missed);
// The count an "again:<n>" kind says; none for another kind.
std::optional<std::int64_t> notify_again_count(std::string_view kind);

// Which notification targets take `kind` ("open", "again:<n>" or "end") of this event message (empty: none).
using NotifyRoutes = std::function<std::vector<std::string>(const EventMessage&, const std::string& kind)>;

// Missing ranges of a site's stream the room gave up on (no answer for replay.give_up).
struct GaveUp {
    std::string site, stream;
    std::vector<GivenUp> ranges;
};

// A site's missing ranges due for a replay request.
struct DueReplay {
    std::string site, stream;
    std::vector<MissingRange> ranges;
};

class Store {
public:
    explicit Store(const std::string& path, Retention retention = {});
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // --- ingest (from the MQTT thread) ---
    // Any live message from a site: its heartbeat. Written at most once per `resolution` a site by
    // this instance: each write is a commit, and at synchronous=FULL an fsync that the alerts behind
    // it wait for. A site's status messages (cameras, sensors, the gateway) come several a second at
    // city scale, and every one of them wrote it.
    void site_seen(const std::string& site, TimePoint when);
    bool has_site(const std::string& site);
    // How fresh `last_seen` is kept (1 s until set); the monitor sets a fraction of heartbeat_timeout.
    void set_seen_resolution(Duration resolution) {
        std::lock_guard lock(mutex_);
        seen_resolution_ = resolution;
    }
    // Returns true when the state changed (online <-> offline).
    bool set_availability(const std::string& site, const std::string& state, TimePoint when);
    // The gateway, event and clip messages may carry a sequence number (`seq`, docs/mqtt.md): it is
    // recorded in the message's own transaction, so a crash keeps both or neither. Stored, duplicate
    // or refused, the message was delivered: its number counts as received all the same (asking for
    // it again would bring the same message); the gateway message's says the broker has everything
    // up to it. The TrackResult says what the number did to the site's stream (`ignored` without one).
    //
    // The gateway message lists the site's cameras and sensors (`cameras`, `sensors`: each with its
    // `id`): those the room has that it no longer lists are forgotten (`removed`, "camera <id>" or
    // "sensor <id>"). An installer who took a camera out of the configuration otherwise left it
    // offline in the room for good. A gateway of an older version lists no sensors: its are kept.
    GatewayStored set_gateway_info(const std::string& site, const nlohmann::json& info, TimePoint when,
                                   const std::optional<Sequence>& seq = std::nullopt);
    // beyond_cap for a camera (sensor) the site did not have when it has kMaxSourcesPerSite already:
    // one broken or hostile site naming a new one in every message cannot grow the room's tables, and
    // every GET /api/sites with them, without end. not_listed for one the site's last gateway message
    // does not list: a state the broker kept (retained) from before it was removed.
    enum class SourceStored { stored, beyond_cap, not_listed };
    SourceStored set_camera_state(const std::string& site, const std::string& camera,
                                  const nlohmann::json& state);
    SourceStored set_sensor_state(const std::string& site, const std::string& sensor,
                                  const nlohmann::json& state);
    // A state topic cleared (an empty retained message): the camera or sensor is forgotten. True when
    // the room had it.
    bool forget_camera(const std::string& site, const std::string& camera);
    bool forget_sensor(const std::string& site, const std::string& sensor);
    static constexpr int kMaxSourcesPerSite = 256;
    // How long the ids of a roll-up minute's parts added may grow (see add_rollup): 16 of the gateway's ids.
    static constexpr int kMaxPartsText = 256;
    EventStored add_event(const EventMessage& m, TimePoint now,
                          const std::optional<Sequence>& seq = std::nullopt);
    // False when the event belongs to another site (a site cannot attach pictures to others' alerts).
    bool add_snapshot(const std::string& site, const std::string& event_id, const std::string& jpeg,
                      TimePoint now);
    // At most this many snapshots, and this many bytes of them, per site wait for their alert
    // (the newest one always); beyond them the oldest go.
    static constexpr int kMaxOrphanSnapshots = 100;
    static constexpr std::int64_t kMaxOrphanSnapshotBytes = std::int64_t{64} << 20;
    // At most this many clip reports per site wait for their alert; beyond it the oldest go.
    static constexpr int kMaxPendingClips = 1000;
    // A site's configuration warnings listed with it (config_warnings in its gateway message).
    static constexpr std::size_t kMaxConfigWarnings = 16, kMaxConfigWarningBytes = 512;
    // Ranges of lost numbers kept per stream to recognise one that arrives after all (the newest; as
    // many as a gateway's dead table keeps). A site that loses every other number does not grow
    // the table: the oldest ranges are forgotten (still counted lost, no longer recognised).
    static constexpr int kMaxLostRanges = 1000;
    ClipStored set_clip(const std::string& site, const std::string& event_id, const nlohmann::json& report,
                        TimePoint now, const std::optional<Sequence>& seq = std::nullopt);
    // False (nothing stored) for a sensor the site has no roll-ups of when it has roll-ups of
    // kMaxSourcesPerSite sensors already, unless its last gateway message lists it (a sensor
    // renamed): a broken or hostile site naming a new sensor in every message would grow the table,
    // and every chart's list of sensors, without end.
    bool add_rollup(const std::string& site, const std::string& sensor, const nlohmann::json& rollup);

    // --- sequence tracking (docs/mqtt.md, "Sequence numbers and replay") ---
    // A numbered message arrived that never reached the store (refused for its body): it was
    // delivered. Numbers that come with a message go through the message's own call above.
    TrackResult track_received(const std::string& site, const Sequence& s, TimePoint now);
    // The site's `lost` message: from..to of `stream` are gone for good.
    TrackResult track_lost(const std::string& site, const std::string& stream, std::int64_t from,
                           std::int64_t to, TimePoint now);
    // Missing ranges missing for `after` and not asked for within `every`, per site.
    std::vector<DueReplay> due_replays(TimePoint now, Duration after, Duration every);
    // Gives up on the ranges first missed at or before `cutoff` (no answer came): they are counted
    // as lost and no longer asked for. One transaction per site.
    std::vector<GaveUp> give_up_missed_before(TimePoint cutoff);
    // A replay request for from..to went out.
    void mark_asked(const std::string& site, const std::string& stream, std::int64_t from, std::int64_t to,
                    TimePoint now);
    // The site's tracked stream as stored (nullopt: its gateway sends no numbers).
    std::optional<StreamTrack> stream_track(const std::string& site);

    // --- queries (from the HTTP thread) ---
    nlohmann::json sites();  // each with cameras, sensors, open alert counts
    // One site's entry of sites(); nullopt for a site the room has not heard of.
    std::optional<nlohmann::json> site(const std::string& site);
    std::vector<Alert> alerts(const AlertFilter& filter);
    // How many alerts the filter matches, whatever its limit: the page says when it shows fewer.
    std::int64_t count_alerts(const AlertFilter& filter);
    std::optional<Alert> alert(const std::string& id);
    // Messages as received, oldest first: the first and the last kHistoryEnds of them when there
    // are more (a site sending an update 30 times a second made a detail of 20 000 lines, 3.6 MB
    // built under the store's lock on the HTTP thread for 0.3-0.4 s). `total`: how many there are.
    nlohmann::json alert_history(const std::string& id, std::size_t* total = nullptr);
    static constexpr std::size_t kHistoryEnds = 100;
    std::vector<ActionRecord> actions(const std::string& id);
    std::optional<std::string> snapshot(const std::string& id);
    // Per sensor, its minutes in [from, to); nullopt for a site the room has never heard from (a
    // typo in a link must not read as "no sensor data").
    std::optional<nlohmann::json> rollups(const std::string& site, const std::string& from,
                                          const std::string& to);
    std::vector<std::string> checks();
    std::int64_t count_alerts();
    // Alerts by status (open, acknowledged, closed; each present, 0 when none).
    std::map<std::string, std::int64_t> count_alerts_by_status();

    // --- closed loop ---
    // `monitor_id`: this instance's client id, recorded with the action so that the decision's id
    // stays the same whichever instance publishes it (instances may share one database).
    ActionResult act(const std::string& id, Action action, const std::string& operator_name,
                     const std::string& note, TimePoint now, const std::string& monitor_id = "monitor");
    std::vector<ActionRecord> unpublished_actions(int limit);
    void mark_published(std::int64_t seq, TimePoint when);

    // --- retiring a site (store_sites.cpp) ---
    // What retire_site did: when, the alerts it closed (as actions: decisions to publish to the site,
    // as any close is), and how many cameras and sensors it forgot.
    struct SiteRetired {
        std::string retired_at;
        std::vector<ActionRecord> closed;
        std::int64_t cameras = 0, sensors = 0;
    };
    // An operator retires a site the room should stop watching (decommissioned, renamed), in one
    // transaction: its alerts not closed are closed by `operator_name`, the note naming the
    // retirement (kept, as closed alerts are, until retention.alerts); its cameras, sensors,
    // sequence following (so no replay is asked of it again), and the clip reports and pictures
    // waiting for an alert that never came are forgotten; its row goes, and the retirement is kept
    // on record. The caller decides whether it may be (api.cpp: offline or silent). nullopt: the
    // room has no such site. Should the site publish again, it comes back as a new site.
    std::optional<SiteRetired> retire_site(const std::string& site, const std::string& operator_name,
                                           const std::string& note, TimePoint now,
                                           const std::string& monitor_id = "monitor");
    // Retired and not heard from since (no row): what the broker kept of it (retained messages, sent
    // again at each subscription; its last will) must not bring it back (ingest.cpp).
    bool retired(const std::string& site);
    // The retirements on record, newest first: who retired which site, when and why.
    nlohmann::json retirements(int limit = 200);

    // --- notifications (monitor/notifier.hpp) ---
    // Set before ingest starts: from then on add_event queues, in its own transaction, one
    // notification per target the routes name, once per alert and kind.
    void set_notify_routes(NotifyRoutes routes) {
        std::lock_guard lock(mutex_);
        notify_routes_ = std::move(routes);
    }
    // The target's next notification no one is sending at `now`, leased for `lease` (another
    // instance on this database leaves it alone meanwhile). The most urgent alert's first (severity
    // 1 before 2 before 3), then the oldest: a robot takes 20 messages a minute, and a gas leak
    // waited behind the missed disinfections a city's windows closing at one hour had queued (the
    // review of `again`); an alert's own open and end, one severity, keep their order.
    std::optional<QueuedNotification> take_notification(const std::string& target, TimePoint now,
                                                        Duration lease);
    // Taken by the target (or no longer wanted): out of the queue.
    void notification_done(std::int64_t id);
    // A failed attempt (counted, with why); the lease ends, if still this taking's.
    void notification_failed(const QueuedNotification& n, const std::string& error);
    // Drops the target's notifications queued before `cutoff` and not leased at `now`; returns how many.
    std::int64_t drop_notifications_queued_before(const std::string& target, TimePoint cutoff, TimePoint now);
    // Drops the queued notifications of targets no longer configured; returns how many.
    std::int64_t forget_notifications_except(const std::vector<std::string>& targets);
    // Notifications waiting, per target.
    std::map<std::string, std::int64_t> queued_notifications();

    // --- retention ---
    // Deletes at most `batch` rows of each kind past the retention at `now`, in one short
    // transaction, so ingest and the dashboard wait for one batch at most.
    Pruned prune(TimePoint now, int batch = 500);
    // Brings the query planner's statistics of the alerts up to date when they grew tenfold since
    // (refresh_statistics): after each retention pass. Speed only: a failure changes nothing else.
    void optimize();
    const Retention& retention() const { return retention_; }
    // When the room began following sites with this database (the room's clock): the first time
    // the broker granted it the events, which note_watching() is told, once and for all. (Granted
    // is not received: a broker grants what its ACL denies, and under a wrong prefix the room hears
    // nothing. The room was meant to watch from then all the same: what the sites sent since is
    // asked for once it hears them.) A site
    // whose stream began after it is followed from the stream's first number. Unknown until then,
    // and for a database this process may not write.
    std::optional<TimePoint> note_watching(TimePoint now);
    std::optional<TimePoint> watching_since() {
        std::lock_guard lock(mutex_);
        return watching_since_;
    }

private:
    void add_late_tables();
    void add_seq_assumed();
    // The stream began at or after the room started following sites (the caller holds mutex_).
    bool began_while_watching(const Sequence& s) const;
    // The numbers a site's stream was taken to have delivered before the room watched, when it
    // was first heard of through a numbered message; forgotten once read (the caller holds mutex_).
    std::optional<std::int64_t> take_assumed(const std::string& site, const std::string& stream);
    std::optional<TimePoint> read_watching_since();
    // Whether `id` may have a row in `table` (cameras or sensors) of `site`: it has one, or the site has
    // fewer than kMaxSourcesPerSite. The caller holds mutex_.
    bool room_for_source(const char* table, const char* column, const std::string& site,
                         const std::string& id);
    // Whether `sensor` may have roll-ups of `site` (add_rollup); the caller holds mutex_.
    bool room_for_rollups(const std::string& site, const std::string& sensor);
    // Whether the site's last gateway message lists `id` in its `list` ("cameras", "sensors"); true
    // when it has no such list (no gateway message yet, a gateway of an older version).
    bool listed_source(const char* list, const std::string& site, const std::string& id);
    bool forget_source(const char* table, const char* column, const std::string& site, const std::string& id);
    Alert read_alert(sqlite::Stmt& s);
    nlohmann::json read_sites(const std::optional<std::string>& only);  // all when nullopt
    // A TEXT column the table had not in an earlier release (alerts.end_reason, rollups.parts).
    void add_column(const char* table, const char* column, const char* type = "TEXT");
    void add_read_indexes();
    // alerts.messages and the trigger that keeps it (message_count_), where the file can take them.
    void add_message_count();
    // alerts.cause and alerts.windows_missed (cause_column_, windows_column_), where the file can
    // take them.
    void add_shown_columns();
    // Adds a column to alerts that this process needs only to show (a file it may only read goes
    // without); whether the alerts have it.
    bool add_shown_column(const char* column, const char* type);
    // Keeps what an alert's message says that is only shown (its cause, the windows missed).
    void keep_shown(const EventMessage& m);
    std::string alert_columns() const;  // kAlertColumns, or without alerts.messages, and the cause
    // Runs a statistics statement (ANALYZE); its failure changes only speed.
    void analyse(const char* sql);
    void refresh_statistics();                // caller holds mutex_ (or constructs)
    bool was_deleted(const std::string& id);  // caller holds mutex_
    // How long an alert retention deleted is remembered, so that a late copy cannot reopen it.
    static constexpr auto kDeletedAlertMemory = std::chrono::hours(24 * 30);
    void ensure_site(const std::string& site);
    // Clip reports waiting for their alert (see ClipStored); the caller holds mutex_ and a transaction.
    bool keep_pending_clip(const std::string& site, const std::string& event_id, const nlohmann::json& report,
                           TimePoint now, std::int64_t& evicted);
    void attach_pending_clip(const std::string& site, const std::string& event_id);
    // Sequence tracking; the caller holds mutex_ (and a transaction to write).
    std::optional<StreamTrack> load_current_track(const std::string& site);
    // The site's track of `stream_id` (retired or current); the current one without it.
    std::optional<StreamTrack> load_track(const std::string& site, const std::string* stream_id);
    bool is_retired_stream(const std::string& site, const std::string& stream);
    // Another site whose current stream is `stream`: the gateway it came from now has another site id.
    std::optional<std::string> site_following(const std::string& stream, const std::string& except);
    // The start of the latest gateway run whose `gateway` message named the site's `stream`.
    std::optional<TimePoint> run_started(const std::string& site, const std::string& stream);
    // Writes the ranges `after` counted lost since `before` to seq_lost (part of save_track).
    void save_lost(const std::string& site, const StreamTrack& before, const StreamTrack& after);
    void save_track(const std::string& site, const StreamTrack& before, const StreamTrack& after);
    // Takes `seq` out of the numbers counted lost of the site's stream; false when it was not one.
    bool take_lost(const std::string& site, const std::string& stream, std::int64_t seq);
    void start_stream(const std::string& site, const StreamTrack& track, TimePoint now, TrackResult& result);
    void retire_stream(const std::string& site, const StreamTrack& old, TimePoint now, TrackResult& result);
    // Makes the retired stream `back` the site's current one again, retiring `current` as a
    // replacement does (its open alerts ended).
    void reinstate_stream(const std::string& site, std::optional<StreamTrack> current,
                          const StreamTrack& back, TimePoint now, TrackResult& result);
    void end_alerts_of_replaced_outbox(const std::string& site, TimePoint now, TrackResult& result);
    // Ends `alert` (already stored) as the room does when its outbox was replaced, and queues the end.
    void end_as_outbox_replaced(const EventMessage& alert, TimePoint now);
    enum class Creates { from_gateway, from_message, never };
    // Loads the site's track of `s.stream` (starting it as `creates` says), applies `apply(track)`
    // and writes back what changed. The caller holds mutex_ and a transaction.
    template <typename Apply>
    TrackResult apply_track(const std::string& site, const Sequence& s, Creates creates, TimePoint now,
                            Apply apply);
    // The writes of add_event, set_gateway_info's number and track_received; the caller holds mutex_
    // and a transaction.
    IngestOutcome store_event(const EventMessage& m, TimePoint now);
    TrackResult record_received(const std::string& site, const Sequence& s, TimePoint now);
    TrackResult record_sent(const std::string& site, const Sequence& s, TimePoint now);
    // Runs `work` under the lock in one transaction, committed when it returns (whatever it
    // returns: a duplicate's number is recorded too) and rolled back if it throws.
    template <typename Work>
    auto in_transaction(Work work) {
        std::lock_guard lock(mutex_);
        sqlite::Transaction tx(db_);
        auto result = work();
        tx.commit();
        return result;
    }
    // How many replaced streams of a site are remembered, so that a late message of one is not
    // taken for a new outbox.
    static constexpr int kRetiredStreams = 8;

    void queue_notifications(const EventMessage& m, IngestOutcome outcome, TimePoint now);

    Retention retention_;
    NotifyRoutes notify_routes_;
    std::mt19937_64 lease_tokens_{std::random_device{}()};
    std::mutex mutex_;
    std::optional<TimePoint> watching_since_;  // guarded by mutex_
    bool message_count_ = false;               // alerts.messages is there (add_message_count)
    bool cause_column_ = false;                // alerts.cause is there (add_shown_columns)
    bool windows_column_ = false;              // alerts.windows_missed is there (add_shown_columns)
    bool seq_assumed_made_ = false;            // guarded by mutex_ (the table exists)
    Duration seen_resolution_ = std::chrono::seconds(1);
    std::map<std::string, TimePoint> seen_written_;  // per site, the last `last_seen` this instance wrote
    // Per site, the sensors it has roll-ups of (read again from the table for a sensor not in it:
    // retention, or another instance, changes the table).
    std::map<std::string, std::set<std::string>> rollup_sensors_;
    sqlite::Db db_;
};

}  // namespace kg::monitor
