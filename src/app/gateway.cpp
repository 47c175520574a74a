#include "app/gateway.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <thread>

#include "app/missed_cycles.hpp"
#include "common/url_text.hpp"
#include "common/writable_folder.hpp"
#include "config/config_loader.hpp"
#include "evidence/event_evidence.hpp"
#include "publish/payloads.hpp"
#include "stream/hls_writer.hpp"
#include "vision/detector_factory.hpp"

namespace kg::app {
namespace {

constexpr auto kShutdownDrain = std::chrono::seconds(3);
// For the clips still pending at a stop: remuxing a ring's packets takes well under a second each.
constexpr auto kClipFlushTime = std::chrono::seconds(5);
constexpr auto kExpiryInterval = std::chrono::minutes(1);
// How often the heartbeat is written: a crashed run's down-time is known to within this.
constexpr auto kAliveInterval = std::chrono::minutes(1);

int analysis_threads(int configured) {
    if (configured > 0) return configured;
    const int cores = static_cast<int>(std::thread::hardware_concurrency());
    return std::max(1, cores - 1);
}

// "20261201T054734Z": a file name part that sorts by time and names the zone.
std::string utc_stamp() {
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    char out[32];
    std::strftime(out, sizeof out, "%Y%m%dT%H%M%SZ", &utc);
    return out;
}

// Moves a damaged outbox (and its WAL) aside as <path>.corrupt-<UTC time>, kept for whoever wants
// to recover from it; returns the new name.
std::string move_aside(const std::string& path) {
    std::string aside = path + ".corrupt-" + utc_stamp();
    std::filesystem::rename(path, aside);  // throws filesystem_error naming both paths
    for (const char* suffix : {"-wal", "-shm"}) {
        std::error_code ec;  // absent after a clean close
        if (std::filesystem::exists(path + suffix, ec))
            std::filesystem::rename(path + suffix, aside + suffix, ec);
    }
    return aside;
}

// Opens the durable outbox. A damaged file is moved aside and a new one started, so that one bad
// file does not leave every later start without durability; if no file can be used at all, events
// still flow through memory, loudly: `memory_only` then says why (readiness and /metrics show it).
std::unique_ptr<outbox::SqliteStore> open_store(const config::Outbox& cfg, spdlog::logger& log,
                                                std::uint64_t& moved_aside, std::string& memory_only) {
    outbox::SqliteStore::Limits limits{cfg.max_messages, cfg.max_bytes};
    // Rounded up: a keep_sent under a second still keeps (the sent table counts whole seconds).
    limits.keep_sent = std::chrono::ceil<std::chrono::seconds>(cfg.keep_sent);
    limits.keep_sent_bytes = cfg.keep_sent_bytes;
    try {
        if (cfg.path != ":memory:") {
            std::filesystem::create_directories(std::filesystem::path(cfg.path).parent_path());
        }
        try {
            auto store = std::make_unique<outbox::SqliteStore>(cfg.path, limits);
            log.info("outbox {}: {} messages waiting", cfg.path, store->size());
            return store;
        } catch (const outbox::StoreError& e) {
            if (!e.corrupt() || cfg.path == ":memory:") throw;
            const auto aside = move_aside(cfg.path);
            ++moved_aside;
            log.error(
                "{}; the damaged file was moved aside to {} (the messages it held are not sent) and a new "
                "outbox is started",
                e.what(), aside);
            auto store = std::make_unique<outbox::SqliteStore>(cfg.path, limits);
            log.info("outbox {}: new, empty", cfg.path);
            return store;
        }
    } catch (const std::exception& e) {
        log.error("{}; events will be kept in memory only and lost on a restart", e.what());
        memory_only = e.what();
        return std::make_unique<outbox::SqliteStore>(":memory:", limits);
    }
}

// A start snapshot for a replay, if still in the evidence folder (and of a JPEG's size: a file that
// grew past it is not one the gateway wrote).
std::optional<std::string> read_snapshot(const std::filesystem::path& path) {
    constexpr std::uintmax_t kLargest = 16u << 20;
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec || size == 0 || size > kLargest) return std::nullopt;
    std::ifstream in(path, std::ios::binary);
    std::string jpeg(static_cast<std::size_t>(size), '\0');
    if (!in.read(jpeg.data(), static_cast<std::streamsize>(size))) return std::nullopt;
    return jpeg;
}

std::map<std::string, rules::Schedule> make_schedules(const std::vector<config::Schedule>& configured) {
    std::map<std::string, rules::Schedule> out;
    for (const auto& c : configured) {
        rules::Schedule s{c.name, c.days, {}, c.on_holidays, c.inverted};
        for (const auto& t : c.times) s.windows.push_back(rules::parse_window(t));  // validated by the loader
        out.emplace(c.name, std::move(s));
    }
    return out;
}

// The outbox's lock (<outbox.path>.lock). Another gateway holding it stops this one from starting;
// a lock that cannot be taken at all (no such folder, no permission) does not: open_store() then
// says what is wrong with the folder.
std::optional<FileLock> lock_outbox(const config::Outbox& cfg, spdlog::logger& log) {
    if (cfg.path == ":memory:") return std::nullopt;
    try {
        std::filesystem::create_directories(std::filesystem::path(cfg.path).parent_path());
        return std::make_optional<FileLock>(cfg.path + ".lock");
    } catch (const FileLock::Held& e) {
        throw std::runtime_error(fmt::format(
            "outbox {}: another kitchen-gateway runs on it ({}); two gateways on one outbox would send each "
            "other's messages and end each other's alerts: stop the other one, or give this one its own "
            "outbox.path",
            cfg.path, e.what()));
    } catch (const std::exception& e) {
        log.warn("outbox {}: not locked against a second gateway: {}", cfg.path, e.what());
        return std::nullopt;
    }
}

std::unique_ptr<evidence::EvidenceStore> open_training_frames(const config::TrainingFrames& cfg) {
    std::error_code ec;
    if (!cfg.enabled && !std::filesystem::is_directory(cfg.path, ec)) return nullptr;
    return std::make_unique<evidence::EvidenceStore>(cfg.path, cfg.max_bytes, cfg.max_age,
                                                     evidence::is_training_frame, cfg.min_free);
}

// Whether `topic` is the state topic of one of `cfg`'s cameras or sensors (under its prefix and site).
bool has_state_topic(const config::Gateway& cfg, const std::string& topic) {
    const publish::Topics topics(cfg.mqtt.topic_prefix, cfg.site.id);
    return std::any_of(cfg.cameras.begin(), cfg.cameras.end(),
                       [&](const auto& c) { return topics.camera_state(c.id) == topic; }) ||
           std::any_of(cfg.sensors.begin(), cfg.sensors.end(),
                       [&](const auto& s) { return topics.sensor_state(s.id) == topic; });
}

// The state topics a run of `cfg` publishes: its enabled cameras' and its sensors'.
std::set<std::string> own_state_topics(const config::Gateway& cfg, const publish::Topics& topics) {
    std::set<std::string> out;
    for (const auto& c : cfg.cameras)
        if (c.enabled) out.insert(topics.camera_state(c.id));
    for (const auto& s : cfg.sensors) out.insert(topics.sensor_state(s.id));
    return out;
}

// The level of `topic`, which matches `filter`, where `filter` has its one '+' (the prefix and site
// id before it hold no wildcard: the configuration's checks).
std::string wildcard_level(const std::string& filter, const std::string& topic) {
    const auto at = filter.find('+');
    return topic.substr(at, topic.size() + 1 - filter.size());
}

}  // namespace

Gateway::Gateway(config::Gateway cfg, const Logging& logging, ingest::LoginGate* logins)
    : cfg_(std::move(cfg)),
      log_(logging.get("gateway")),
      tick_parts_(log_),
      topics_(cfg_.mqtt.topic_prefix, cfg_.site.id),
      calendar_(cfg_.site.timezone, cfg_.site.holidays),
      schedules_(make_schedules(cfg_.schedules)),
      outbox_lock_(lock_outbox(cfg_.outbox, *log_)),
      link_(cfg_.mqtt, topics_.availability(), logging.get("mqtt")),
      store_(open_store(cfg_.outbox, *log_, corrupt_outboxes_, outbox_memory_only_)),
      outbox_(*store_, link_, topics_, cfg_.site.id, logging.get("outbox")),
      replay_desk_(outbox_, cfg_.site.id, logging.get("replay")),
      event_log_(outbox_, cfg_.site.id),
      evidence_(std::make_unique<evidence::EvidenceStore>(
          cfg_.evidence.path, cfg_.evidence.max_bytes, cfg_.evidence.max_age, evidence::is_event_evidence,
          cfg_.evidence.min_free, evidence::EvidenceStore::disk_free,
          /*prune_folders=*/true)),
      training_frames_(open_training_frames(cfg_.training_frames)),
      own_logins_(logins != nullptr ? nullptr : std::make_unique<ingest::LoginGate>()),
      site_{cfg_,
            calendar_,
            schedules_,
            evidence_.get(),
            cfg_.training_frames.enabled ? training_frames_.get() : nullptr,
            event_log_,
            ids_,
            logging,
            logins != nullptr ? logins : own_logins_.get()},
      pool_(analysis_threads(cfg_.analysis_threads)),
      own_states_(own_state_topics(cfg_, topics_)) {
    for (const auto& camera : cfg_.cameras) {
        if (!camera.enabled) continue;
        cameras_.push_back(std::make_unique<CameraPipeline>(camera, pool_, site_));
    }
    last_online_.assign(cameras_.size(), false);
    viewers_ = std::make_unique<web::ViewerCounter>(
        web::ViewerLimits{cfg_.public_side.max_viewers_per_camera, cfg_.public_side.max_viewers_per_address},
        // An HLS player polls the playlist every segment or so: a viewer unseen for three segments
        // has left. At least 30 s: a segment is at least a GOP, and a camera's GOP may be 10 s
        // (H.264+ "smart" codecs) whatever the configured segment; with 10 s, a parent still
        // watching lost the place to a newcomer between two polls (review).
        std::max(std::chrono::seconds(30),
                 3 * std::chrono::duration_cast<std::chrono::seconds>(cfg_.public_side.segment)));
    if (!cfg_.sensors.empty()) sensors_ = std::make_unique<SensorHub>(site_, outbox_, link_, topics_);
    link_.subscribe(topics_.replay(),
                    [this](const publish::MqttLink::Message& m) { replay_desk_.submit(m.payload); });
    // A camera or sensor removed while the gateway was stopped, or disabled, kept its last state
    // retained for good, shown by every dashboard: the broker hands it to these subscriptions.
    // Optional: the clears across reloads (cleared_states_) do without them. Held only while the
    // broker hands over what it stored (MqttLink::Need).
    for (auto [filter, kind] :
         {std::pair{topics_.camera_state("+"), "camera"}, std::pair{topics_.sensor_state("+"), "sensor"}}) {
        link_.subscribe(
            filter,
            // Init-captures: clang-tidy 14's parser cannot capture structured bindings (C++20).
            [this, filter = filter, kind = kind](const publish::MqttLink::Message& m) {
                note_state(m, filter, kind);
            },
            publish::MqttLink::Need::optional);
    }
    link_.on_connected([this] {
        // First: taken once the hooks ran (Gateway::tick), so a gateway message that throws still
        // leaves the states to be republished.
        republish_ = true;  // the next tick republishes every camera's retained state
        publish_gateway(Clock::now());
        for (const auto& topic : cleared_states_) link_.publish(topic, std::string(), 1, true);
    });
}

Gateway::~Gateway() { stop(); }

void Gateway::check_evidence_folder() {
    auto why = unwritable_folder(cfg_.evidence.path);
    if (why == evidence_unwritable_) return;
    if (!why.empty()) {
        log_->error("evidence: {} cannot be written ({}): no snapshot or clip is kept until it can",
                    cfg_.evidence.path, why);
    } else {
        log_->info("evidence: {} can be written again", cfg_.evidence.path);
    }
    evidence_unwritable_ = std::move(why);
}

void Gateway::start(CarryOver carried) {
    started_at_ = Clock::now();
    // Read before this run's first tick writes its own.
    std::optional<TimePoint> alive_before;
    try {
        if (const auto ms = store_->alive_at()) alive_before = TimePoint(std::chrono::milliseconds(*ms));
    } catch (const std::exception& e) {
        log_->warn("the last run's heartbeat cannot be read from the outbox: {}", e.what());
    }
    log_->info("site {} ({}): {} cameras, {} sensors, {} analysis threads; evidence in {} ({} files, {} MiB)",
               cfg_.site.id, cfg_.site.name, cameras_.size(), cfg_.sensors.size(), pool_.size(),
               cfg_.evidence.path, evidence_->files(), evidence_->bytes() >> 20);
    // Now, not at the first event's snapshot, which may be days away (the installer review).
    check_evidence_folder();
    if (training_frames_) {
        const auto& t = cfg_.training_frames;
        const auto hours = std::chrono::duration_cast<std::chrono::hours>(t.max_age).count();
        const auto kept_for = hours % 24 == 0 ? fmt::format("{} d", hours / 24) : fmt::format("{} h", hours);
        // A folder that cannot be written shows now, not at the first frame due.
        const auto why = unwritable_folder(t.path);
        if (!t.enabled) {
            log_->info("training frames: saving is off; the {} frames ({} MiB) in {} are deleted after {}",
                       training_frames_->files(), training_frames_->bytes() >> 20, t.path, kept_for);
        } else if (!why.empty()) {
            log_->error("training frames: {} is not a writable folder ({}): no frame will be kept", t.path,
                        why);
        } else {
            log_->info("training frames in {}: {} kept ({} MiB of {} MiB), each for {}", t.path,
                       training_frames_->files(), training_frames_->bytes() >> 20, t.max_bytes >> 20,
                       kept_for);
        }
    }
    apply_public_hours(started_at_);
    config_warnings_ = config::doubts(cfg_);
    // "auto" without the project's models (a binary outside its package's layout, a package built
    // without them) ran the cascades with one line naming them: said, with where they were looked for,
    // to the room too, since the accuracy is far from the models'.
    for (const auto& [check, configured, key, spec] :
         {std::tuple{"mask", cfg_.mask_detector, "detectors.mask", "auto:mask"},
          std::tuple{"head_covering", cfg_.head_detector, "detectors.head_covering", "auto:head"}}) {
        const bool used = std::any_of(cfg_.cameras.begin(), cfg_.cameras.end(), [&](const config::Camera& c) {
            return c.enabled && std::find(c.checks.begin(), c.checks.end(), check) != c.checks.end();
        });
        if (!used || configured != "auto") continue;
        const auto why = vision::auto_fallback_reason(spec);
        if (!why.empty())
            config_warnings_.push_back(
                fmt::format("{} is auto but the project's model was not found ({}): the {} check runs the "
                            "classic back-end, "
                            "far less accurate",
                            key, why, check));
    }
    for (const auto& doubt : config_warnings_) log_->warn("configuration: {}", doubt);
    {
        // Also with the public side off: a crashed run's segments would stay on tmpfs till a reboot.
        std::vector<std::string> public_cameras;
        for (const auto& c : cfg_.cameras)
            if (c.enabled && c.is_public && !cfg_.public_side.listen.empty()) public_cameras.push_back(c.id);
        stream::remove_stale_hls_folders(cfg_.public_side.hls_dir + "/" + cfg_.site.id, public_cameras,
                                         *log_);
    }
    // What the runs before published: the local API's list, and at a fresh start today's figures
    // (a reload hands its own day over, with the raises its stop ended marked).
    const auto history = outbox_.latest_numbered(topics_.events(), EventLog::kKeep);
    event_log_.adopt_history(history, !carried.from_a_run);
    if (!carried.from_a_run) carry_missed_cycles(history, alive_before, carried);
    event_log_.adopt_day(std::move(carried.event_day));
    event_log_.adopt_open(std::move(carried.open_events));
    // Not those of this run's own cameras and sensors (a reload that failed fell back to the
    // configuration that has them).
    std::erase_if(carried.cleared_states,
                  [this](const std::string& topic) { return has_state_topic(cfg_, topic); });
    cleared_states_ = std::move(carried.cleared_states);
    // The previous run died without ending its events (SIGKILL, a crash, a power cut): the room
    // would show them open for ever. Ended first, behind whatever that run left queued (their starts
    // among it), and before any camera or sensor here can open an event.
    // Not those the reload hands over (adopt() takes them over, or ends them as the stop would have).
    std::set<std::string> handed_over;
    for (const auto& [id, c] : carried.sensors)
        for (const auto& h : c.open) handed_over.insert(h.id());
    for (const auto& [id, c] : carried.camera_offline) handed_over.insert(c.open.id());
    for (const auto& [id, c] : carried.camera_events)
        for (const auto& e : c.open) handed_over.insert(e.open.id());
    for (const auto& [id, c] : carried.camera_stream)
        for (const auto* h : {&c.open.unstable, &c.open.damaged})
            if (*h) handed_over.insert((*h)->id());
    for (const auto& end : outbox_.left_open(
             started_at_, carried.hand_over_lost ? events::kEndStopped : events::kEndRestarted, handed_over))
        event_log_.submit(end);
    // Their starts named clips that run never cut: the room gets the clip report it waits for, and
    // a file the crash left at the named path is deleted unless it is a whole clip.
    for (auto& clip : outbox_.clips_left_pending(events::kClipRestarted)) {
        event_log_.submit_clip(evidence::settle_left_clip(*evidence_, std::move(clip), *log_));
    }
    adopt(std::move(carried));
    // Set before the first thread starts: if a later start throws, stop() (from the destructor)
    // stops what did start, in order, instead of members being destroyed under running threads.
    if (cfg_.evidence.mqtt_snapshots) {
        // A replayed start brings its snapshot again, from the evidence folder while it is there.
        outbox_.set_snapshot_reader([store = evidence_.get()](const std::string& relative) {
            return read_snapshot(store->absolute(relative));
        });
    }
    running_ = true;
    replay_desk_.start();
    link_.start();
    outbox_.start();
    pool_.start();
    if (sensors_) sensors_->start();
    for (auto& camera : cameras_) camera->start();
    // Listed before the first tick: the HTTP sides listen from now on, and a parents' page that
    // asked in the half second before it found no camera, took every card and player off, and
    // asked again 10 s later (at every reload: the reload review). Offline until supervised.
    const auto listed_at = Clock::now();
    states_.clear();
    for (auto& camera : cameras_) states_.push_back(camera->final_state(listed_at));
    clip_cutter_.start([this] {
        // A quarter of a second late at most: a clip's post-roll is seconds.
        while (clip_cutter_.wait_for(std::chrono::milliseconds(250))) {
            try {
                for (auto& camera : cameras_) camera->cut_due_clips(std::chrono::steady_clock::now());
                clip_failures_.succeeded();
            } catch (const std::exception& e) {
                // A clip that cannot be cut is reported by its camera with the reason; this is
                // what escaped that, said and tried again on the next round.
                if (const auto v = clip_failures_.failed(e.what()); v.log)
                    log_->error("cutting clips failed: {}{}", e.what(), clip_failures_.note(v));
            }
        }
    });
}

void Gateway::tick() {
    if (!running_) return;
    const auto now = Clock::now();
    // Intervals on the steady clock: a wall clock set back an hour stopped every state (and the
    // room saw the site go silent), one set ahead republished everything at once.
    const auto steady = std::chrono::steady_clock::now();
    // A republish asked for by a new connection waits until its gateway message is out
    // (MqttLink::publish holds the states until then).
    const bool due = (link_.announced() && republish_.exchange(false)) ||
                     steady - last_state_publish_ >= cfg_.mqtt.state_interval;
    if (due) last_state_publish_ = steady;
    // Each on its own: one that throws (every tick, it may be) must not stop those after it, the
    // sensor rules among them.
    run_part("camera states", steady, [&] { publish_states(now, due); });
    // The room learns of a loss at the tail of the stream (the last message before a quiet hour)
    // from this number: republished when it changed, at most once a state_interval.
    run_part("gateway message", steady, [&] {
        if (due && outbox_.acknowledged() != published_acknowledged_.load()) publish_gateway(now);
    });
    run_part("clearing foreign states", steady, [&] { clear_foreign_states(); });
    run_part("public hours", steady, [&] { apply_public_hours(now); });
    if (sensors_) run_part("sensor rules", steady, [&] { sensors_->tick(now, steady, due); });
    if (steady - last_alive_note_ >= kAliveInterval) {
        last_alive_note_ = steady;
        run_part("heartbeat", steady, [&] { note_alive(now); });
    }
    if (steady - last_expiry_ >= kExpiryInterval) {
        last_expiry_ = steady;
        run_part("evidence expiry", steady, [&] {
            evidence_->expire(now);
            check_evidence_folder();
        });
        if (training_frames_)
            run_part("training frames expiry", steady, [&] { training_frames_->expire(now); });
    }
}

void Gateway::run_part(std::string_view name, SteadyPoint now, const std::function<void()>& part) {
    tick_parts_.run(
        name,
        [&] {
            if (before_part_) before_part_(name);
            part();
        },
        now);
}

void Gateway::note_state(const publish::MqttLink::Message& m, const std::string& filter, const char* kind) {
    // Not retained: this run's own states coming back (MQTT 3.1.1 has no no-local). Empty: cleared.
    if (!m.retained || m.payload.empty() || own_states_.contains(m.topic)) return;
    const auto id = wildcard_level(filter, m.topic);
    if (!config::valid_id(id)) {
        // No configuration has it, so no run of this gateway published it, and its payload is
        // someone else's: cleared, it would only reach the room as a message it refuses.
        log_->debug("retained state on {} left: '{}' is not a camera or sensor id", m.topic, id);
        return;
    }
    const bool disabled = std::string_view(kind) == "camera" && config::has_camera(cfg_, id);
    auto whose = fmt::format("{} '{}' cleared: {}", kind, id,
                             disabled ? "disabled in this configuration" : "not in this configuration");
    std::lock_guard lock(foreign_mutex_);
    foreign_states_.emplace(m.topic, std::move(whose));
}

void Gateway::clear_foreign_states() {
    if (!link_.announced()) return;  // publish() would refuse them: kept for a tick that can send
    std::map<std::string, std::string> due;
    {
        std::lock_guard lock(foreign_mutex_);
        due.swap(foreign_states_);
    }
    for (auto& [topic, whose] : due) {
        if (link_.publish(topic, std::string(), 1, true)) {
            log_->info("retained state of {}", whose);
        } else {
            // The connection went meanwhile, or Paho refused it (logged by the link): the next tick that can.
            std::lock_guard lock(foreign_mutex_);
            foreign_states_.emplace(topic, std::move(whose));
        }
    }
}

void Gateway::apply_public_hours(TimePoint now) {
    const auto& hours = cfg_.public_side.hours;
    const bool open = hours.empty() || calendar_.active(schedules_.at(hours), now);
    if (open != public_open_) log_->info("public hours: the public feeds are {}", open ? "open" : "closed");
    // Worked out again at each opening or closing, when the change it found is due, when the clock
    // was set back, and hourly while none is within its horizon (a week of holidays ahead).
    const auto& at = public_change_worked_at_;
    if (hours.empty()) {
        public_change_.reset();
    } else if (open != public_open_ || !at || now < *at ||
               (public_change_ ? now >= *public_change_ : now - *at >= std::chrono::hours(1))) {
        public_change_ = calendar_.next_change(schedules_.at(hours), now);
        public_change_worked_at_ = now;
    }
    public_open_ = open;
    for (auto& camera : cameras_) camera->set_public_open(open);
}

void Gateway::publish_gateway(TimePoint now) {
    const auto acknowledged = outbox_.acknowledged();
    if (link_.publish(topics_.gateway(),
                      publish::gateway_payload(cfg_, process_started_.value_or(started_at_),
                                               reloaded_ ? std::optional(started_at_) : std::nullopt, now,
                                               outbox_.stream(), outbox_.stream_started(), acknowledged,
                                               config_warnings_),
                      1, true))
        published_acknowledged_ = acknowledged;
}

void Gateway::publish_states(TimePoint now, bool due) {
    states_.resize(cameras_.size());
    supervised_ = true;
    for (std::size_t i = 0; i < cameras_.size(); ++i) {
        const auto& state = states_[i] = cameras_[i]->supervise(now);
        // A change of online state is reported at once, not at the next interval.
        if (!due && state.online == last_online_[i]) continue;
        last_online_[i] = state.online;
        link_.publish(topics_.camera_state(state.camera->id),
                      publish::camera_state_payload(state, cfg_.site.id, now), 1, true);
    }
}

void Gateway::note_alive(TimePoint now) {
    // Read only to judge a missed disinfection cycle after a crash: a site without a cabinet would
    // write its outbox once a minute for nothing (wear on an SD card).
    const bool needed = std::any_of(cfg_.sensors.begin(), cfg_.sensors.end(),
                                    [](const config::Sensor& s) { return s.disinfection.has_value(); });
    if (!needed) return;
    store_->note_alive(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count());
}

void Gateway::carry_missed_cycles(const std::vector<std::string>& history, std::optional<TimePoint> alive_at,
                                  CarryOver& carried) {
    // Read from every missed_cycle message the outbox keeps, not only the last events: a busy
    // site's 500 could all come after a lunch raise.
    const auto left = missed_cycles_left(outbox_.latest_numbered(topics_.events(), 1000, "\"missed_cycle\""));
    std::optional<std::optional<TimePoint>> events_seen;  // parsed only after a crash, once
    for (const auto& [id, missed] : left) {
        const auto it = std::find_if(cfg_.sensors.begin(), cfg_.sensors.end(),
                                     [&id = id](const config::Sensor& s) { return s.id == id; });
        if (it == cfg_.sensors.end() || !it->disinfection) continue;
        // Only if no complete cycle can have run while nobody watched: the gateway down for less
        // than the cycle's min_time. When it was last alive: its stop, or after a crash its last
        // heartbeat or its last event, whichever is newer (a quiet site's newest event may be the
        // raise itself, hours before the crash).
        auto alive = missed.stopped;
        if (!alive) {
            if (!events_seen) events_seen = newest_time(history);
            alive = *events_seen;
            if (alive_at && (!alive || *alive_at > *alive)) alive = alive_at;
        }
        if (!alive || started_at_ - *alive > it->disinfection->min_time) {
            log_->info(
                "sensor {}: the missed disinfection cycle raised at {} is not raised again: the gateway "
                "was down {}, long enough for a cycle nobody saw",
                id, iso8601_utc(missed.raised),
                alive ? fmt::format(
                            "for {} s",
                            std::chrono::duration_cast<std::chrono::seconds>(started_at_ - *alive).count())
                      : std::string("for a time not known"));
            continue;
        }
        log_->info(
            "sensor {}: the missed disinfection cycle raised at {} was ended when the previous run "
            "stopped, and no cycle has been seen since: raised again",
            id, iso8601_utc(missed.raised));
        auto& c = carried.sensors[id];
        c.config = *it;
        c.cycles.missed_since = missed.raised;
    }
}

CameraPipeline* Gateway::camera_pipeline(const std::string& id) const {
    const auto it = std::find_if(cameras_.begin(), cameras_.end(),
                                 [&](const auto& camera) { return camera->camera().id == id; });
    return it == cameras_.end() ? nullptr : it->get();
}

void Gateway::adopt(CarryOver&& carried) {
    for (auto& [id, c] : carried.camera_offline) {
        auto* camera = camera_pipeline(id);
        if (camera != nullptr && camera->take_over_offline(c.open, c.config, c.cause_told)) {
            log_->info("camera {}: its offline alert ({}) goes on after the reload", id, c.open.id());
        } else {
            log_->info("camera {}: its offline alert ({}) ends with the reload: the camera changed", id,
                       c.open.id());
            event_log_.submit(c.open.end);
        }
    }
    carried.camera_offline.clear();
    for (const auto& [id, c] : carried.camera_seen) {
        if (auto* camera = camera_pipeline(id))
            camera->take_over_seen(c.config, c.last_frame, c.last_frame_steady);
    }
    carried.camera_seen.clear();
    for (auto& [id, input] : carried.camera_inputs) {
        auto* camera = camera_pipeline(id);
        if (camera == nullptr || !camera->take_over_input(input)) continue;
        log_->info("camera {}: its stream goes on across the reload (not opened again){}", id,
                   camera->public_feed() != nullptr ? ", and so do the parents' streams" : "");
        // Before the events: those of the checks that learn over time go on where these took over
        // what the previous run's had learned.
        if (auto it = carried.camera_analysis.find(id);
            it != carried.camera_analysis.end() && it->second.analysis) {
            const auto& taken = camera->take_over_analysis(*it->second.analysis, it->second.config);
            if (!taken.empty())
                log_->info("camera {}: what its checks learned from the stream goes on too ({})", id,
                           fmt::join(taken, ", "));
        }
    }
    // Those not taken (the run that handed them over fell back to this one, which has the camera
    // otherwise) stop here: this run's own open the camera again.
    carried.camera_inputs.clear();
    carried.camera_analysis.clear();
    for (auto& [id, c] : carried.camera_events) {
        auto* camera = camera_pipeline(id);
        if (camera == nullptr) {
            for (const auto& e : c.open) event_log_.submit(e.open.end);
            continue;
        }
        for (const auto& event : camera->take_over_events(std::move(c.open), c.config))
            log_->info("camera {}: its alert {} goes on after the reload", id, event);
        camera->take_over_pending(c.pending, c.config);
    }
    carried.camera_events.clear();
    for (auto& [id, c] : carried.camera_stream) {
        auto* camera = camera_pipeline(id);
        std::vector<events::Event> ends;
        if (camera != nullptr) {
            ends = camera->take_over_stream_events(std::move(c.open), c.config);
        } else {
            for (const auto* h : {&c.open.unstable, &c.open.damaged})
                if (*h) ends.push_back((*h)->end);
        }
        for (const auto& end : ends) event_log_.submit(end);
    }
    carried.camera_stream.clear();
    if (sensors_) {
        sensors_->adopt(std::move(carried));
        return;
    }
    // No sensors in this run: the minutes the last run had begun go out as they are, and the events
    // it handed over end as its stop would have ended them.
    end_handed_over(event_log_, carried);
    for (auto& [id, c] : carried.sensors) {
        if (auto partial = c.roller.take())
            publish_rollup(outbox_, topics_, cfg_.site.id, c.config, *partial, true);
    }
}

void Gateway::stop(CarryOver* carry, const config::Gateway* next) {
    if (!running_) return;
    running_ = false;
    log_->info("stopping");
    // The inputs the next run has alike go on (CarryOver::camera_inputs), detached from this run.
    std::set<std::string> inputs_kept;
    for (auto& camera : cameras_) {
        const auto& id = camera->camera().id;
        const auto* after = carry != nullptr && next != nullptr ? config::find_camera(*next, id) : nullptr;
        const bool keep =
            after != nullptr && after->enabled && camera->input_spec() == CameraInput::spec_of(*after, *next);
        camera->stop(keep);
        if (keep) inputs_kept.insert(id);
    }
    clip_cutter_.stop();                        // what it had not cut yet, flush_clips() cuts below
    if (sensors_) sensors_->stop(carry, next);  // ends its open events
    pool_.stop();
    // Committed before the link closes: the room sees every open event end, and the next start
    // opens a new one if the condition is still there, instead of a second alert beside this one.
    const auto now = Clock::now();
    const bool continues = carry != nullptr && next != nullptr && continues_events(cfg_, *next);
    // The room is told of a stop, not of a reload that goes on as the same gateway.
    const bool presence = continues && continues_presence(cfg_, *next);
    for (auto& camera : cameras_) {
        const auto& id = camera->camera().id;
        if (const auto* after = continues ? config::find_camera(*next, id) : nullptr) {
            if (auto h = camera->hand_over_offline(now, events::kEndStopped))
                carry->camera_offline[id] = {camera->camera(), std::move(*h), camera->cause_told()};
            const bool kept = inputs_kept.count(id) != 0;
            auto handed = camera->hand_over_events(now, events::kEndStopped, *after, kept);
            auto pending = camera->hand_over_pending(*after, kept);
            if (!handed.empty() || !pending.empty())
                carry->camera_events[id] = {camera->camera(), std::move(handed), std::move(pending)};
            if (kept) {
                if (auto s = camera->hand_over_stream_events(now, events::kEndStopped);
                    s.unstable || s.damaged)
                    carry->camera_stream[id] = {camera->camera(), std::move(s)};
            }
        }
        camera->close_events(now, events::kEndStopped);
    }
    // The retained states must not keep showing the conditions whose events just ended, nor a camera
    // as watched that nobody watches now: a reload may have removed it, and its last state would
    // stay on the broker, and in the room, for good (as the sensors' do, SensorHub::stop).
    // One online that the next run watches as this one did is left as it is (CarryOver::camera_seen):
    // that run publishes its state as it connects, online, with the conditions it took over.
    for (auto& camera : cameras_) {
        auto state = camera->final_state(now);
        const auto* after = next != nullptr ? config::find_camera(*next, state.camera->id) : nullptr;
        if (state.online && presence && after != nullptr && watched_alike(camera->camera(), *after) &&
            state.stats.last_frame && state.stats.last_frame_steady) {
            carry->camera_seen[state.camera->id] = {camera->camera(), *state.stats.last_frame,
                                                    *state.stats.last_frame_steady};
            continue;
        }
        state.online = false;
        const bool kept = next == nullptr || has_camera(*next, state.camera->id);
        const auto topic = topics_.camera_state(state.camera->id);
        link_.publish(topic, kept ? publish::camera_state_payload(state, cfg_.site.id, now) : std::string(),
                      1, true);
        if (!kept && carry != nullptr) carry->cleared_states.push_back(topic);
    }
    // Those an earlier reload removed stay cleared, unless this one brings them back.
    // Copied, not moved: the link's thread may be reading them for a connection meanwhile. Compared
    // with the next run's topics (its prefix and site id may differ).
    if (carry != nullptr && next != nullptr) {
        for (const auto& topic : cleared_states_)
            if (!has_state_topic(*next, topic)) carry->cleared_states.push_back(topic);
    }
    // The starts named their clips: those still waiting for clip_post are cut from what the rings
    // hold, and their reports committed, before the outbox closes.
    const auto clips_by = std::chrono::steady_clock::now() + kClipFlushTime;
    for (auto& camera : cameras_) camera->flush_clips(clips_by);
    // No more answers to queue: what was asked meanwhile the room asks again.
    replay_desk_.stop();
    outbox_.stop(kShutdownDrain);
    link_.stop(!presence);
    try {
        note_alive(Clock::now());
    } catch (const std::exception& e) {
        log_->warn("the heartbeat cannot be written to the outbox: {}", e.what());
    }
    for (auto& camera : cameras_) {
        const auto& id = camera->camera().id;
        if (inputs_kept.count(id) == 0) continue;
        carry->camera_inputs[id] = camera->release_input();
        carry->camera_analysis[id] = {camera->camera(), camera->release_analysis()};
    }
    if (carry != nullptr) {
        carry->event_day = event_log_.take_day();
        carry->open_events = event_log_.take_open();
        carry->from_a_run = true;
    }
    log_->info("stopped");
}

nlohmann::json Gateway::cameras() const {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& s : states_) {
        out.push_back(nlohmann::json::parse(publish::camera_state_payload(s, cfg_.site.id, Clock::now())));
    }
    return out;
}

nlohmann::json Gateway::sensors() const {
    return sensors_ ? sensors_->states(Clock::now()) : nlohmann::json::array();
}

nlohmann::json Gateway::recent_events(std::size_t limit) const { return event_log_.recent(limit); }

std::optional<nlohmann::json> Gateway::event(const std::string& event_id) const {
    auto messages = event_log_.messages_of(event_id);  // newest first
    const bool has_start = std::any_of(messages.begin(), messages.end(), [](const nlohmann::json& m) {
        return m.value("state", "") == "start";
    });
    if (!has_start) {
        // Older than the log keeps (its last messages of all events), or of an earlier run: the
        // outbox keeps what was sent for outbox.keep_sent, and the room links to it that long (the
        // evidence review: a 404 "no such event" while its files were served). Also when the log
        // holds only its latest messages: the start names its snapshot and clip.
        std::vector<nlohmann::json> kept;
        const auto payloads = outbox_.numbered_of_event(topics_.events(), event_id, 64);
        for (auto it = payloads.rbegin(); it != payloads.rend(); ++it) {
            auto j = nlohmann::json::parse(*it, nullptr, false);
            if (!j.is_discarded() && j.is_object() && j.value("id", "") == event_id)
                kept.push_back(std::move(j));
        }
        if (!kept.empty()) messages = std::move(kept);
    }
    if (messages.empty()) return std::nullopt;
    nlohmann::json out = messages.front();
    // The latest message names only what it added (an `end` its best frame, not the start's
    // snapshot or clip): the event's evidence is what all of them named.
    const auto evidence_of = [](const nlohmann::json& m) {
        const auto it = m.find("evidence");
        return it != m.end() && it->is_object() ? *it : nlohmann::json::object();
    };
    auto evidence = nlohmann::json::object();
    auto errors = nlohmann::json::array();
    for (auto it = messages.rbegin(); it != messages.rend(); ++it) {  // oldest first: the latest wins
        const auto named = evidence_of(*it);
        for (const char* key : {"snapshot", "snapshot_end", "clip"})
            if (named.value(key, nlohmann::json()).is_string()) evidence[key] = named[key];
        for (const auto& e : named.value("errors", nlohmann::json::array()))
            if (std::find(errors.begin(), errors.end(), e) == errors.end()) errors.push_back(e);
    }
    for (const char* key : {"snapshot", "snapshot_end", "clip"})
        if (!evidence.contains(key)) evidence[key] = nullptr;
    evidence["errors"] = std::move(errors);
    out["evidence"] = std::move(evidence);
    // What GET .../snapshot.jpg, best.jpg, clip.mp4 would serve now: the budget deletes files.
    const auto on_disk = [&](const char* kind) {
        const auto file = evidence_file(event_id, kind);
        std::error_code ec;
        return file && std::filesystem::is_regular_file(*file, ec);
    };
    out["has_snapshot"] = on_disk("snapshot");
    out["has_best"] = on_disk("snapshot_end");
    out["has_clip"] = on_disk("clip");
    out["clip_pending"] = event_log_.clip_pending(event_id);
    return out;
}

std::optional<std::string> Gateway::evidence_file(const std::string& event_id,
                                                  const std::string& kind) const {
    auto relative = event_log_.evidence(event_id, kind);
    if (!relative) {
        // An event of an earlier run (before a restart or a reload), or older than the log keeps:
        // its files are still on disk under the names EventEvidence gives them, until the evidence
        // budget deletes them, and the room still links to them.
        const char* suffix = kind == "clip" ? ".mp4" : kind == "snapshot_end" ? "-best.jpg" : "-start.jpg";
        relative = evidence_->find_named(event_id + suffix);
    }
    if (!relative) return std::nullopt;
    return evidence_->absolute(*relative).string();
}

nlohmann::json Gateway::dead_messages(std::size_t limit) const {
    static constexpr const char* kPriority[] = {"alert", "evidence", "telemetry", "replay"};
    nlohmann::json out = nlohmann::json::array();
    for (const auto& d : outbox_.dead_messages(limit)) {
        out.push_back({{"seq", d.seq},
                       {"queued_seq", d.queued_seq},
                       {"topic", d.topic},
                       {"bytes", d.bytes},
                       {"priority", kPriority[std::clamp(static_cast<int>(d.priority), 0, 3)]},
                       {"reason", d.reason},
                       {"moved_at", iso8601_utc(TimePoint(std::chrono::seconds(d.moved_at)))}});
    }
    return out;
}

nlohmann::json Gateway::public_status() const {
    nlohmann::json cams = nlohmann::json::array();
    for (const auto& s : states_) {
        if (!s.camera->is_public) continue;
        const auto* feed = public_feed(s.camera->id);
        cams.push_back(
            {{"id", s.camera->id},
             {"name", s.camera->name},
             {"online", s.online},
             {"live", feed != nullptr && feed->open() && feed->hls_live()},
             // Not for a camera whose codec FLV cannot carry (H.265): apps choose HLS.
             {"flv", cfg_.public_side.flv && (feed == nullptr || feed->flv().refused_codec().empty())}});
    }
    // Counts only, by check: no staff images and no event details leave through the public side.
    nlohmann::json checks = nlohmann::json::object();
    const auto now = Clock::now();
    for (const auto& [check, n] :
         event_log_.day_summary([this](TimePoint t) { return calendar_.local_date(t); }, now)) {
        checks[check] = {{"open", n.open}, {"raised_today", n.raised}, {"resolved_today", n.resolved}};
    }
    nlohmann::json temps = nlohmann::json::array();
    for (const auto& s : sensors()) {
        if (s["kind"] == "temperature") {
            // Offline as the sensor rules say (silent for Sensor::silence_limit()), not merely without a
            // reading since a start or reload. A value only while fresh: an offline probe's last value
            // would read to a parent as the fridge's temperature now, and so would a broken probe's
            // (one reading impossible values keeps its last good one, however old).
            const auto& conditions = s["conditions"];
            const auto has = [&conditions](const char* c) {
                return std::find(conditions.begin(), conditions.end(), c) != conditions.end();
            };
            const bool offline = has("offline");
            // Fresh: its last valid reading is younger than the silence that makes a probe offline.
            // Not "while `invalid` is open": that condition ends only after two intervals of valid
            // readings, so a probe that glitches to -127 every few minutes showed parents nothing.
            const auto cfg = std::find_if(cfg_.sensors.begin(), cfg_.sensors.end(),
                                          [&](const auto& c) { return c.id == s["sensor"]; });
            const bool fresh =
                s["online"].get<bool>() && s["age_s"].is_number() && cfg != cfg_.sensors.end() &&
                s["age_s"].get<double>() < std::chrono::duration<double>(cfg->silence_limit()).count();
            temps.push_back({{"name", s["name"]},
                             {"location", s["location"]},
                             {"online", !offline},
                             {"value", fresh ? s["value"] : nlohmann::json(nullptr)},
                             {"unit", s["unit"]}});
        }
    }
    // The site's wall clock, to the minute, as `date` is its day: what the page says to parents.
    const auto change = public_change_ ? nlohmann::json(calendar_.local_text(*public_change_).substr(0, 16))
                                       : nlohmann::json(nullptr);
    return {{"site", cfg_.site.name},
            {"open", public_open_},
            {"hours", cfg_.public_side.hours},
            {"opens_at", public_open_ ? nlohmann::json(nullptr) : change},
            {"closes_at", public_open_ ? change : nlohmann::json(nullptr)},
            {"token_required", !cfg_.public_side.token_secret.empty()},
            {"cameras", cams},
            {"date", calendar_.local_date(now)},
            {"checks", checks},
            {"sensors", temps}};
}

stream::PublicFeed* Gateway::public_feed(const std::string& camera) const {
    const auto* c = camera_pipeline(camera);
    return c != nullptr && c->camera().is_public ? c->public_feed() : nullptr;
}

bool Gateway::ready(std::string& why_not) const {
    std::vector<std::string> problems;
    if (const auto reach = link_.reach_problem(); !reach.empty()) {
        problems.push_back(reach);
    } else if (!link_.connected()) {
        problems.push_back("broker not connected");
    }
    if (auto outbox = outbox_.store_problem()) problems.push_back(*outbox);
    // Events still flow, but a restart or a reload loses what is queued and starts a new stream the
    // room counts the old one's gaps of as lost: not a state to leave a box in unnoticed.
    if (!outbox_memory_only_.empty())
        problems.push_back("outbox in memory only, lost on a restart (" + outbox_memory_only_ + ")");
    // Alerts flow without their proof: the room sees events whose snapshots never come.
    if (!evidence_unwritable_.empty() && !cameras_.empty())  // a sensors-only site keeps no pictures
        problems.push_back("evidence folder " + cfg_.evidence.path + " cannot be written (" +
                           evidence_unwritable_ + ")");
    for (const auto& s : states_) {
        if (!s.online) problems.push_back("camera " + s.camera->id + " offline");
    }
    if (!supervised_) problems.push_back("starting");
    for (const auto& [side, note] : listeners_) {
        if (!note.second.empty()) problems.push_back(note.first + " not listening: " + note.second);
    }
    // A part of the supervision that throws on every tick (the sensor rules, the states) leaves
    // the box up and its work undone: said here as well as in the log.
    for (auto& part : tick_parts_.failing(std::chrono::steady_clock::now()))
        problems.push_back("supervision: " + std::move(part));
    for (const auto& p : problems) why_not += (why_not.empty() ? "" : "; ") + p;
    return problems.empty();
}

namespace {

// Prometheus label values escape backslash, quote and newline.
std::string label(const std::string& v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        out += c == '\n' ? 'n' : c;
    }
    return out;
}

struct ProcessStats {
    double cpu_seconds = 0;
    double rss_bytes = 0;
};

ProcessStats process_stats() {
    ProcessStats p;
    std::ifstream stat("/proc/self/stat");
    std::string field;
    for (int i = 1; i <= 15 && stat >> field; ++i) {
        if (i == 14 || i == 15) p.cpu_seconds += std::stod(field) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
    std::ifstream statm("/proc/self/statm");
    double pages = 0;
    statm >> pages >> pages;  // size, then resident
    p.rss_bytes = pages * static_cast<double>(sysconf(_SC_PAGESIZE));
    return p;
}

}  // namespace

std::string Gateway::metrics() const {
    std::string m;
    auto family = [&m](const char* name, const char* type, const char* help) {
        m += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    };
    // One family per camera figure: a line per camera with its value.
    auto per_camera = [&](const char* name, const char* type, const char* help, auto value) {
        family(name, type, help);
        for (const auto& s : states_)
            m += fmt::format("{}{{camera=\"{}\"}} {}\n", name, label(s.camera->id), value(s));
    };
    using State = publish::CameraState;
    per_camera("kg_camera_online", "gauge",
               "1 if the camera delivered a frame within health.offline_after and is not offline (back "
               "from an outage once frames kept coming for health.clear)",
               [](const State& s) { return s.online ? 1 : 0; });
    per_camera("kg_camera_fps_in", "gauge", "decoded frames per second, last 10 s",
               [](const State& s) { return fmt::format("{:.2f}", s.fps_in); });
    per_camera("kg_camera_fps_analysed", "gauge", "analysed frames per second, last 10 s",
               [](const State& s) { return fmt::format("{:.2f}", s.fps_analysed); });
    per_camera("kg_camera_check_seconds", "gauge", "mean time of one frame through the checks, last 10 s",
               [](const State& s) { return fmt::format("{:.6f}", s.check_seconds); });
    per_camera("kg_camera_frames_dropped_total", "counter",
               "sampled frames replaced before analysis took them",
               [](const State& s) { return s.stats.frames_dropped; });
    per_camera("kg_camera_decode_errors_total", "counter", "packets the decoder rejected",
               [](const State& s) { return s.stats.decode_errors; });
    per_camera("kg_camera_packets_lost_total", "counter", "RTP packets that never came (RTP over UDP)",
               [](const State& s) { return s.stats.packets_lost; });
    per_camera("kg_camera_check_errors_total", "counter", "frames on which a check failed",
               [](const State& s) { return s.stats.check_errors; });
    per_camera("kg_camera_timestamp_jumps_total", "counter",
               "jumps and steps back of the camera's clock without a reconnect, absorbed at ingest",
               [](const State& s) { return s.stats.timestamp_jumps; });
    per_camera("kg_camera_reconnects_1h", "gauge", "connection attempts after a failure in the last hour",
               [](const State& s) { return s.stats.reconnects_1h; });
    per_camera("kg_camera_stalls_1h", "gauge", "reads interrupted by input.timeout in the last hour",
               [](const State& s) { return s.stats.stalls_1h; });
    family("kg_events_total", "counter", "event messages produced, by check and state");
    for (const auto& [key, n] : event_log_.counts()) {
        m +=
            fmt::format("kg_events_total{{check=\"{}\",state=\"{}\"}} {}\n", label(key.first), key.second, n);
    }
    if (!listeners_.empty()) {
        family("kg_http_listening", "gauge",
               "1 while an HTTP side (api, public) listens; 0 while its address is refused");
        for (const auto& [side, note] : listeners_)
            m += fmt::format("kg_http_listening{{side=\"{}\"}} {}\n", side, note.second.empty() ? 1 : 0);
    }
    if (!cfg_.public_side.listen.empty()) {
        family("kg_public_viewers", "gauge", "viewers of a public camera, by protocol");
        const auto now = std::chrono::steady_clock::now();
        for (const auto& c : cameras_) {
            if (c->public_feed() == nullptr) continue;
            const auto count = viewers_->viewers(c->camera().id, now);
            const auto id = label(c->camera().id);
            m += fmt::format("kg_public_viewers{{camera=\"{}\",protocol=\"hls\"}} {}\n", id, count.hls);
            m += fmt::format("kg_public_viewers{{camera=\"{}\",protocol=\"flv\"}} {}\n", id, count.flv);
        }
        family("kg_public_open", "gauge", "1 within public hours");
        m += fmt::format("kg_public_open {}\n", public_open_ ? 1 : 0);
        family("kg_public_rtmp_connected", "gauge", "1 while the RTMP push of a public camera is connected");
        for (const auto& c : cameras_) {
            const auto* feed = c->public_feed();
            if (feed == nullptr || feed->rtmp() == nullptr) continue;
            m += fmt::format("kg_public_rtmp_connected{{camera=\"{}\"}} {}\n", label(c->camera().id),
                             feed->rtmp()->connected() ? 1 : 0);
        }
    }
    family("kg_outbox_depth", "gauge", "messages waiting for the broker's acknowledgement");
    m += fmt::format("kg_outbox_depth {}\n", outbox_.depth());
    family("kg_outbox_in_memory", "gauge",
           "messages kept in memory because the outbox store failed (counted in kg_outbox_depth)");
    m += fmt::format("kg_outbox_in_memory {}\n", outbox_.in_memory());
    family("kg_outbox_store_errors_total", "counter",
           "failed operations of the outbox store (disk full, file unwritable, database locked)");
    m += fmt::format("kg_outbox_store_errors_total {}\n", outbox_.store_errors());
    family("kg_outbox_dropped_total", "counter", "messages dropped because the outbox was full");
    m += fmt::format("kg_outbox_dropped_total {}\n", outbox_.dropped());
    family("kg_outbox_refused_total", "counter",
           "messages refused because only more important messages could have made room for them");
    m += fmt::format("kg_outbox_refused_total {}\n", outbox_.refused());
    family("kg_outbox_corrupt_files_total", "counter",
           "damaged outbox files moved aside (outbox.db.corrupt-<time>) at this start");
    m += fmt::format("kg_outbox_corrupt_files_total {}\n", corrupt_outboxes_);
    family("kg_outbox_durable", "gauge",
           "1 when the outbox is a file; 0 when it could not be opened and messages are kept in memory only");
    m += fmt::format("kg_outbox_durable {}\n",
                     outbox_memory_only_.empty() && cfg_.outbox.path != ":memory:" ? 1 : 0);
    family("kg_outbox_dead_total", "counter",
           "messages moved aside to the outbox's dead table because the broker kept refusing them");
    m += fmt::format("kg_outbox_dead_total {}\n", outbox_.dead());
    family("kg_outbox_delivered_total", "counter", "messages acknowledged by the broker since start");
    m += fmt::format("kg_outbox_delivered_total {}\n", outbox_.delivered());
    family("kg_supervision_failures_total", "counter",
           "runs of a part of the supervision tick (camera states, sensor rules, expiry, ...) that threw; "
           "a part is listed once it first failed");
    for (const auto& [part, n] : tick_parts_.failures_total())
        m += fmt::format("kg_supervision_failures_total{{part=\"{}\"}} {}\n", label(part), n);
    family("kg_mqtt_connected", "gauge", "1 while connected to the broker");
    m += fmt::format("kg_mqtt_connected {}\n", link_.connected() ? 1 : 0);
    family("kg_mqtt_delivery_confirmed", "gauge",
           "1 when the broker delivered this gateway's own online back to it on its latest connection: it "
           "takes what the gateway publishes (an acknowledgement alone does not tell a publish its ACL "
           "refused)");
    m += fmt::format("kg_mqtt_delivery_confirmed {}\n",
                     link_.reach() == publish::MqttLink::Reach::confirmed ? 1 : 0);
    // Said once in the log at start, where months of an unattended run bury it: here a site's
    // Prometheus can keep showing it.
    family("kg_config_warnings", "gauge",
           "warnings about the running configuration (each in the log at start and in --check-config)");
    m += fmt::format("kg_config_warnings {}\n", config_warnings_.size());
    family("kg_config_last_reload_successful", "gauge",
           "0 when the last reload (SIGHUP, POST /api/reload) was refused or failed, and the configuration "
           "of before runs instead of the file's; 1 when it was made, or none was asked for");
    m += fmt::format("kg_config_last_reload_successful {}\n", !last_reload_ || last_reload_->made ? 1 : 0);
    family(
        "kg_config_last_reload_timestamp_seconds", "gauge",
        "when the last reload was asked for, refused or made (Unix time); 0: none since the process started");
    m += fmt::format(
        "kg_config_last_reload_timestamp_seconds {}\n",
        last_reload_
            ? std::chrono::duration_cast<std::chrono::seconds>(last_reload_->at.time_since_epoch()).count()
            : 0);
    if (sensors_) {
        family("kg_sensor_age_seconds", "gauge", "seconds since the sensor's last valid reading");
        for (const auto& s : sensors_->states(Clock::now())) {
            if (s["age_s"].is_number()) {
                m += fmt::format("kg_sensor_age_seconds{{sensor=\"{}\"}} {:.1f}\n",
                                 label(s["sensor"].get<std::string>()), s["age_s"].get<double>());
            }
        }
        const auto counts = sensors_->input_counts();
        auto per_sensor = [&](const char* name, const char* help, auto value) {
            family(name, "counter", help);
            for (const auto& [id, c] : counts)
                m += fmt::format("{}{{sensor=\"{}\"}} {}\n", name, label(id), value(c));
        };
        using Counts = sensors::InputCounts;
        per_sensor("kg_sensor_messages_rejected_total",
                   "MQTT payloads on the sensor's topic without a number at its value path",
                   [](const Counts& c) { return c.rejected; });
        per_sensor("kg_sensor_messages_dropped_total",
                   "MQTT messages on the sensor's topic pushed out, unread, by a flood of messages",
                   [](const Counts& c) { return c.dropped; });
        per_sensor("kg_sensor_read_failures_total",
                   "Modbus reads of the sensor that failed or held no number",
                   [](const Counts& c) { return c.read_failures; });
        family("kg_sensor_connect_failures_total", "counter", "failed connects to a Modbus device");
        // A device URL may carry an account (tcp://user:password@host): not its password here.
        for (const auto& [device, n] : sensors_->connect_failures())
            m += fmt::format("kg_sensor_connect_failures_total{{device=\"{}\"}} {}\n",
                             label(without_password(device)), n);
    }
    const auto p = process_stats();
    family("process_cpu_seconds_total", "counter", "user and system CPU time of the gateway");
    m += fmt::format("process_cpu_seconds_total {:.2f}\n", p.cpu_seconds);
    family("process_resident_memory_bytes", "gauge", "resident memory of the gateway");
    m += fmt::format("process_resident_memory_bytes {:.0f}\n", p.rss_bytes);
    return m;
}

}  // namespace kg::app
