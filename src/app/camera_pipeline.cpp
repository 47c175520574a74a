#include "app/camera_pipeline.hpp"

#include <algorithm>
#include <opencv2/imgcodecs.hpp>
#include <stdexcept>
#include <utility>

#include "app/detector_preflight.hpp"
#include "vision/camera_health.hpp"
#include "vision/detector_check.hpp"
#include "vision/detector_factory.hpp"
#include "vision/dnn/manifest.hpp"
#include "vision/region_checks.hpp"

namespace kg::app {
namespace {

// The camera's latest failure to be read, as an event says it; none if it never failed.
std::optional<events::EventCause> last_failure(const ingest::CameraStatsSnapshot& st) {
    if (!st.last_error_cause) return std::nullopt;
    return events::EventCause{ingest::to_string(*st.last_error_cause), st.last_error};
}

constexpr auto kRateWindow = std::chrono::seconds(10);
// Beyond the clip itself the ring keeps a GOP's worth of margin, so a clip starts on a key frame.
constexpr auto kRingMargin = std::chrono::seconds(10);

// A clip spans [start - pre, confirmed + post]; the ring must still hold its first packet when
// it is cut, so it keeps pre + post + the longest confirmation delay + margin.
Duration ring_length(const config::Camera& camera, const config::Evidence& evidence) {
    Duration confirm = camera.health.confirm + camera.health.frozen_after;
    for (const auto& [check, rule] : camera.rules) confirm = std::max(confirm, rule.confirm);
    return evidence.clip_pre + evidence.clip_post + confirm + kRingMargin;
}

bool needs_motion(const std::string& check) { return check != vision::CameraHealthCheck::kName; }

std::vector<rules::Zone> zones_of(const config::Camera& camera) {
    std::vector<rules::Zone> zones;
    for (const auto& z : camera.zones) {
        rules::Zone zone{z.name, {}, z.checks};
        for (const auto& p : z.polygon) zone.polygon.push_back({p.x, p.y});
        zones.push_back(std::move(zone));
    }
    return zones;
}

std::vector<rules::Polygon> masks_of(const config::Camera& camera) {
    std::vector<rules::Polygon> masks;
    for (const auto& m : camera.masks) {
        rules::Polygon poly;
        for (const auto& p : m) poly.push_back({p.x, p.y});
        masks.push_back(std::move(poly));
    }
    return masks;
}

std::unique_ptr<evidence::TrainingFrames> training_frames_for(const config::Camera& camera,
                                                              const SiteContext& site) {
    const auto& cfg = site.config.training_frames;
    if (site.training_frames == nullptr) return nullptr;
    if (!cfg.cameras.empty() &&
        std::find(cfg.cameras.begin(), cfg.cameras.end(), camera.id) == cfg.cameras.end())
        return nullptr;
    // The loader has checked the schedule's name: at() cannot throw on a loaded configuration.
    const rules::Schedule* schedule = cfg.schedule.empty() ? nullptr : &site.schedules.at(cfg.schedule);
    return std::make_unique<evidence::TrainingFrames>(
        evidence::TrainingFrameOptions{camera.id, cfg.every, cfg.jpeg_quality}, *site.training_frames,
        site.calendar, schedule);
}

}  // namespace

CameraPipeline::CameraPipeline(const config::Camera& camera, AnalysisPool& pool, const SiteContext& site,
                               const CheckFactory& make_checks)
    : camera_(camera),
      pool_(pool),
      site_(site),
      log_(site.logging.get("cam:" + camera.id)),
      ring_(ring_length(camera, site.config.evidence), std::chrono::seconds(30),
            evidence::PacketRing::kDefaultMaxBytes, log_),
      evidence_(camera_, site.config.evidence, site.evidence, ring_, site.sink, site.calendar, log_),
      training_(training_frames_for(camera_, site)),
      zones_(zones_of(camera), masks_of(camera)) {
    if (std::any_of(camera_.checks.begin(), camera_.checks.end(), needs_motion)) {
        motion_ = std::make_unique<vision::MotionMap>(passes_.get());
    }
    for (const auto& name : camera_.checks)
        checks_.push_back(make_checks ? make_checks(name) : make_check(name));
    failures_.resize(checks_.size());
    failed_at_.resize(checks_.size());
    if (const auto count = passes_->networks().count(); count > 0) {
        log_->info(
            "{} network pass(es) shared between checks: one run per frame each ({} network "
            "pass(es) per frame in all)",
            passes_->networks().shared(), count);
    }
    if (training_) {
        log_->info("training frames: one every {:g} s{} into {}",
                   static_cast<double>(site.config.training_frames.every.count()) / 1000.0,
                   site.config.training_frames.schedule.empty()
                       ? std::string()
                       : " while schedule '" + site.config.training_frames.schedule + "' is active",
                   training_->images_folder().string());
    }
    raw_.reserve(16);
    observations_.reserve(16);
    input_ = std::make_unique<CameraInput>(camera_, CameraInput::spec_of(camera_, site.config), site.logins,
                                           log_, site.logging.get("public:" + camera_.id));
    events::TrackerRule offline_rule = rule_for(vision::CameraHealthCheck::kName);
    offline_rule.confirm = Duration(0);  // offline_after already is the confirmation time
    offline_rule.clear = Duration(0);
    offline_ = std::make_unique<events::EventTracker>(camera_.id, vision::CameraHealthCheck::kName, "offline",
                                                      "", offline_rule, site_.ids);
    // Judged over an hour and a minute of the stream: no confirmation or clear time on top.
    unstable_ = std::make_unique<events::EventTracker>(camera_.id, vision::CameraHealthCheck::kName,
                                                       "unstable", "", offline_rule, site_.ids);
    damaged_ = std::make_unique<events::EventTracker>(camera_.id, vision::CameraHealthCheck::kName, "damaged",
                                                      "", offline_rule, site_.ids);
}

CameraPipeline::~CameraPipeline() { stop(); }

std::unique_ptr<vision::Check> CameraPipeline::make_check(const std::string& name) {
    const auto& scene = camera_.scene;
    if (name == vision::CameraHealthCheck::kName)
        return std::make_unique<vision::CameraHealthCheck>(camera_.health, passes_.get());
    if (const auto hygiene = hygiene_detector(site_.config, name)) {
        log_->info("{} check: detector {}", name, hygiene->spec);
        std::vector<vision::Violation> violations;
        violations.push_back({hygiene->alarm_label, name, hygiene->event_label, 0});
        return std::make_unique<vision::DetectorCheck>(
            name, vision::make_detector(hygiene->spec, passes_.get()), std::move(violations), motion_.get(),
            scene.detect_refresh);
    }
    if (name.rfind("model:", 0) == 0) {
        // A user's model: every class its manifest maps to a check becomes events of that check
        // (a two-stage model's classes are its classifier's).
        const auto& path = site_.config.models.at(name.substr(6));
        std::vector<vision::Violation> violations;
        // Named: the classes are a reference into the manifest, which a temporary in the range
        // expression would have destroyed before the loop read them.
        const auto manifest = vision::dnn::load_manifest(path);
        for (const auto& c : vision::dnn::detection_classes(manifest)) {
            if (!c.check.empty()) violations.push_back({c.label, c.check, c.label, c.severity});
        }
        return std::make_unique<vision::DetectorCheck>(name, vision::make_detector(path, passes_.get()),
                                                       std::move(violations), motion_.get(),
                                                       scene.detect_refresh);
    }
    if (name == vision::MotionCheck::kName) {
        return std::make_unique<vision::MotionCheck>(vision::regions_for(name, camera_), *motion_,
                                                     scene.min_area);
    }
    if (name == vision::UnattendedCheck::kName) {
        return std::make_unique<vision::UnattendedCheck>(vision::regions_for(name, camera_), *motion_,
                                                         scene.min_area, scene.unattended_after);
    }
    if (name == "cleanliness" || name == "bin_lid") {
        cv::Mat reference;
        if (!scene.reference.empty()) {
            reference = cv::imread(scene.reference, cv::IMREAD_COLOR);
            if (reference.empty()) {
                throw std::runtime_error("camera " + camera_.id + ": cannot read scene.reference " +
                                         scene.reference);
            }
        }
        return std::make_unique<vision::ReferenceChangeCheck>(name, name == "bin_lid" ? "open" : "dirty",
                                                              vision::regions_for(name, camera_), *motion_,
                                                              scene.min_area, reference);
    }
    // The config loader only accepts known checks, so this is a programming error.
    throw std::logic_error("no implementation for check '" + name + "'");
}

void CameraPipeline::start() {
    started_at_ = Clock::now();
    started_steady_ = std::chrono::steady_clock::now();
    input_->set_frame_listener([this] { pool_.notify(*this); });
    if (site_.evidence != nullptr) input_->set_clip_ring(&ring_);
    input_->start();
}

void CameraPipeline::stop(bool keep_input) {
    if (!input_) return;
    if (!keep_input) {
        input_->stop();
        return;
    }
    // Goes on without this run: nothing of it is called from the ingest thread any more.
    input_->set_frame_listener({});
    input_->set_clip_ring(nullptr);
}

std::unique_ptr<CameraInput> CameraPipeline::release_input() { return std::move(input_); }

bool CameraPipeline::take_over_input(std::unique_ptr<CameraInput>& input) {
    if (!input || !(input->spec() == input_->spec())) return false;
    input->set_open(input_->open());
    input->set_log_level(spdlog::level::from_str(site_.config.log.level));
    input_ = std::move(input);
    input_taken_over_ = true;
    return true;
}

CameraPipeline::StreamEvents CameraPipeline::hand_over_stream_events(TimePoint now,
                                                                     const std::string& reason) {
    return {unstable_->hand_over(now, reason), damaged_->hand_over(now, reason)};
}

std::vector<events::Event> CameraPipeline::take_over_stream_events(StreamEvents handed,
                                                                   const config::Camera& before) {
    const auto rule = [](const config::Camera& c) {
        const auto it = c.rules.find(vision::CameraHealthCheck::kName);
        return it == c.rules.end() ? std::optional<config::Rule>() : std::optional<config::Rule>(it->second);
    };
    const bool alike = input_taken_over_ && before.id == camera_.id && rule(before) == rule(camera_);
    const auto now = Clock::now();
    const auto steady = std::chrono::steady_clock::now();
    std::vector<events::Event> ends;
    const auto take = [&](std::optional<events::EventTracker::Handover>& h, events::EventTracker& tracker,
                          bool same) {
        if (!h) return;
        if (!(alike && same && tracker.take_over(*h, now, steady))) ends.push_back(h->end);
    };
    take(handed.unstable, *unstable_, before.health.unstable_after == camera_.health.unstable_after);
    take(handed.damaged, *damaged_, before.health.damaged_share == camera_.health.damaged_share);
    return ends;
}

void CameraPipeline::check_failed(std::size_t i, const std::exception& e) {
    constexpr auto kLogEvery = std::chrono::minutes(1);
    const auto now = std::chrono::steady_clock::now();
    input_->stats().check_failed();
    {
        std::lock_guard lock(conditions_mutex_);
        failed_at_[i] = now;
    }
    auto& f = failures_[i];
    f.failed_now = true;
    ++f.unlogged;
    if (f.logged && now - *f.logged < kLogEvery) return;
    log_->error("{} check failed on {} frame(s) since the last report, their observations lost: {}",
                checks_[i]->name(), f.unlogged, e.what());
    f.unlogged = 0;
    f.logged = now;
}

void CameraPipeline::close_events(TimePoint now, const std::string& reason) {
    std::vector<EndedEvent> ended;
    {
        std::lock_guard trackers(trackers_mutex_);
        for (auto& t : trackers_) {
            auto end = t.tracker.close(now, reason);
            if (!end) continue;
            // With its best frame as the end's snapshot, as every other end has: a stop or a reload
            // sent it without, and dropped the frame kept for it.
            auto best = evidence_.take_best(end->id);
            ended.emplace_back(std::move(*end), std::move(best));
        }
    }
    for (auto& [end, best] : ended) evidence_.submit_end(end, std::move(best));
    if (auto end = offline_->close(now, reason)) {
        end->cause = outage_cause_;
        site_.sink.submit(*end);
    }
    for (auto* tracker : {unstable_.get(), damaged_.get()}) {
        if (auto end = tracker->close(now, reason)) site_.sink.submit(*end);
    }
    std::lock_guard lock(conditions_mutex_);
    conditions_.clear();
}

std::optional<events::EventTracker::Handover> CameraPipeline::hand_over_offline(TimePoint now,
                                                                                const std::string& reason) {
    auto h = offline_->hand_over(now, reason);
    if (h) h->end.cause = outage_cause_;
    return h;
}

bool watched_alike(const config::Camera& before, const config::Camera& after) {
    return before.id == after.id && after.enabled && before.url == after.url &&
           before.health.offline_after == after.health.offline_after;
}

bool learns(const std::string& check) {
    return check == vision::CameraHealthCheck::kName || check == vision::UnattendedCheck::kName ||
           check == vision::MotionCheck::kName || check == "cleanliness" || check == "bin_lid";
}

bool events_alike(const config::Camera& before, const config::Camera& after, const std::string& check,
                  const std::string& label, bool learned_kept) {
    // Judged on each picture afresh: the next run sees the condition within its first pictures, as
    // this one did. Frozen, unattended, a covered lens (against the sharpness learned from earlier
    // pictures) and a floor against its learned reference need time or a reference the next run
    // has only where its check took over what this one's learned (`learned_kept`): taken over
    // without it, they ended as cleared meanwhile (the review of the change that handed the others
    // over: a lens still covered, `cleared` 2 s after the reload). Only the built-in checks'
    // labels: a user model's event has its own rule and severity.
    const bool afresh = (check == "mask" && label == "no_mask") ||
                        (check == "head_covering" && label == "bare_head") ||
                        (check == vision::CameraHealthCheck::kName && (label == "black" || label == "blank"));
    const bool learned = learned_kept && learns(check);
    if (!afresh && !learned) return false;
    // The same stream: with the checks' state handed over, the input went on (its URL unchanged),
    // whatever `offline_after` says; otherwise fetched alike (watched_alike).
    const bool same_stream = learned ? before.id == after.id && after.enabled && before.url == after.url
                                     : watched_alike(before, after);
    if (!same_stream) return false;
    if (std::find(after.checks.begin(), after.checks.end(), check) == after.checks.end()) return false;
    const auto was = before.rules.find(check), is = after.rules.find(check);
    if (was == before.rules.end() || is == after.rules.end() || !(was->second == is->second)) return false;
    // A condition of the whole picture: no zone splits it and it has no boxes a mask could remove.
    // Judged by the picture's thresholds and camera_health's confirm and clear; the stream's own
    // (offline_after, unstable_after, damaged_share) judge other events.
    if (check == vision::CameraHealthCheck::kName) {
        const auto picture = [](config::Health h) {
            h.offline_after = {};
            h.unstable_after = 0;
            h.damaged_share = 0;
            return h;
        };
        return picture(before.health) == picture(after.health);
    }
    // The hygiene checks' events are split by every zone.
    if (!learns(check)) return before.zones == after.zones && before.masks == after.masks;
    // A region check judges the zones that name it (vision::regions_for), and the masks remove its
    // boxes (unattended has none); what it is made of of the scene, not where the reference was
    // written in the file. An edit of another check's zone leaves its alert alone (the review: a
    // floor zone added for `cleanliness` ended an open `unattended`).
    const auto naming = [&](const config::Camera& c) {
        std::vector<config::Zone> zones;
        for (const auto& z : c.zones)
            if (std::find(z.checks.begin(), z.checks.end(), check) != z.checks.end()) zones.push_back(z);
        return zones;
    };
    const auto& a = before.scene;
    const auto& b = after.scene;
    if (naming(before) != naming(after) || a.min_area != b.min_area) return false;
    if (check == vision::UnattendedCheck::kName) return a.unattended_after == b.unattended_after;
    return before.masks == after.masks && (check == vision::MotionCheck::kName || a.reference == b.reference);
}

bool CameraPipeline::own(const Tracked& t) const {
    // Seen by the built-in check of its name alone: one a user model reported too is judged by that
    // model's rule, which the next run's tracker would not have.
    return !t.producers.empty() && std::all_of(t.producers.begin(), t.producers.end(),
                                               [&](std::size_t p) { return checks_[p]->name() == t.check; });
}

CameraPipeline::Tracked* CameraPipeline::tracker_taking_over(const std::string& check,
                                                             const std::string& label,
                                                             const std::string& zone,
                                                             const config::Camera& before) {
    const auto producer =
        std::find_if(checks_.begin(), checks_.end(), [&](const auto& c) { return c->name() == check; });
    const bool learned =
        std::find(learned_taken_.begin(), learned_taken_.end(), check) != learned_taken_.end();
    if (producer == checks_.end() || !events_alike(before, camera_, check, label, learned)) return nullptr;
    const auto index = static_cast<std::size_t>(producer - checks_.begin());
    auto& t = tracker_of(check, label, zone, index, 0);
    // Its check, for end_unseen(): one that fails on every picture ends it as failing.
    if (std::find(t.producers.begin(), t.producers.end(), index) == t.producers.end())
        t.producers.push_back(index);
    return &t;
}

std::vector<CameraPipeline::HandedEvent> CameraPipeline::hand_over_events(TimePoint now,
                                                                          const std::string& reason,
                                                                          const config::Camera& after,
                                                                          bool input_kept) {
    std::vector<HandedEvent> out;
    std::lock_guard trackers(trackers_mutex_);
    for (auto& t : trackers_) {
        if (!t.tracker.active() || !own(t) || !events_alike(camera_, after, t.check, t.label, input_kept))
            continue;
        auto h = t.tracker.hand_over(now, reason);
        if (!h) continue;
        auto best = evidence_.take_best(h->id());
        out.push_back({t.check, t.label, t.zone, std::move(*h), std::move(best)});
    }
    return out;
}

std::vector<std::string> CameraPipeline::take_over_events(std::vector<HandedEvent> handed,
                                                          const config::Camera& before) {
    std::vector<std::string> taken;
    std::vector<HandedEvent> refused;
    const auto now = Clock::now();
    const auto steady = std::chrono::steady_clock::now();
    {
        std::lock_guard trackers(trackers_mutex_);
        for (auto& e : handed) {
            auto* tracked = tracker_taking_over(e.check, e.label, e.zone, before);
            if (tracked == nullptr || !tracked->tracker.take_over(e.open, now, steady)) {
                refused.push_back(std::move(e));
                continue;
            }
            auto& t = *tracked;
            // Seen as of now: not ended as unseen before this run's first pictures could see it.
            t.last_seen = steady;
            t.last_seen_wall = now;
            // An empty frame when none was kept: this run's better ones replace it.
            evidence_.keep_best(e.open.id(), e.best
                                                 ? std::move(*e.best)
                                                 : evidence::EventEvidence::BestFrame{cv::Mat(), e.open.end});
            taken.push_back(e.open.id());
        }
        refresh_conditions();
    }
    // Outside the lock, as close_events() sends its ends (a snapshot is encoded and synced).
    for (auto& e : refused) evidence_.submit_end(e.open.end, std::move(e.best));
    return taken;
}

std::vector<CameraPipeline::PendingCondition> CameraPipeline::hand_over_pending(const config::Camera& after,
                                                                                bool input_kept) {
    std::vector<PendingCondition> out;
    std::lock_guard trackers(trackers_mutex_);
    for (const auto& t : trackers_) {
        const auto since = t.tracker.pending_since();
        if (since && own(t) && events_alike(camera_, after, t.check, t.label, input_kept))
            out.push_back({t.check, t.label, t.zone, *since});
    }
    return out;
}

void CameraPipeline::take_over_pending(const std::vector<PendingCondition>& pending,
                                       const config::Camera& before) {
    const auto now = Clock::now();
    const auto steady = std::chrono::steady_clock::now();
    std::lock_guard trackers(trackers_mutex_);
    for (const auto& p : pending) {
        if (auto* t = tracker_taking_over(p.check, p.label, p.zone, before))
            t->tracker.resume_pending(p.since, now, steady);
    }
}

std::unique_ptr<CameraPipeline::Analysis> CameraPipeline::release_analysis() {
    auto out = std::make_unique<Analysis>();
    // Only the checks that learn over time go: the detectors' networks would otherwise be held beside
    // the next run's own until it took the rest (tens of MB a camera, twice, at each reload).
    std::erase_if(checks_, [](const auto& check) { return !learns(check->name()); });
    passes_->drop_detector_work();
    out->passes = std::move(passes_);
    out->motion = std::move(motion_);
    out->checks = std::move(checks_);
    return out;
}

const std::vector<std::string>& CameraPipeline::take_over_analysis(Analysis& earlier,
                                                                   const config::Camera& before) {
    learned_taken_.clear();
    // Learned from the same pictures as this run will go on with: the same stream, analysed alike.
    // Not watched_alike(): `offline_after` is no part of the stream (the review: editing it made the
    // checks learn afresh, a littered floor taken for the clean reference).
    if (!input_taken_over_ || before.id != camera_.id) return learned_taken_;
    // The checks that read the motion map judge only with its background: without it, none.
    const bool motion = motion_ && earlier.motion;
    if (motion) motion_->take_state_from(*earlier.motion);
    for (auto& check : checks_) {
        const auto& name = check->name();
        if (!learns(name) || (name != vision::CameraHealthCheck::kName && !motion)) continue;
        const auto it = std::find_if(earlier.checks.begin(), earlier.checks.end(),
                                     [&](const auto& c) { return c && c->name() == name; });
        if (it != earlier.checks.end() && check->take_state_from(**it)) learned_taken_.push_back(name);
    }
    return learned_taken_;
}

bool CameraPipeline::take_over_seen(const config::Camera& before, TimePoint last_frame,
                                    SteadyPoint last_frame_steady) {
    if (!watched_alike(before, camera_)) return false;
    seen_before_ = last_frame;
    seen_before_steady_ = last_frame_steady;
    return true;
}

bool CameraPipeline::take_over_offline(const events::EventTracker::Handover& h, const config::Camera& before,
                                       const events::CauseTold& told) {
    if (!watched_alike(before, camera_)) return false;
    const auto steady = std::chrono::steady_clock::now();
    if (!offline_->take_over(h, Clock::now(), steady)) return false;
    // The end carries the latest cause; what the room was told of it comes beside it, so that a
    // cause found within the minute before the reload is still told (the 65th session's review of
    // the sensors' causes, whose hand-over took the latest for told too).
    outage_cause_ = h.end.cause;
    told_kind_ = told.kind;
    cause_sent_at_ = told.at;
    return true;
}

bool CameraPipeline::blinded(const std::string& check) {
    // Not after_hours_motion: a dark store room is "black", and a torch or a rat moving in it is
    // what that check is for (the review of the change: it never fired with the lights off). Nor
    // a user's model (an infrared one may see in the dark), nor camera_health itself.
    return check == "mask" || check == "head_covering" || check == "cleanliness" || check == "bin_lid" ||
           check == "unattended";
}

void CameraPipeline::end_unseen(const ingest::Frame& frame, bool blind, std::vector<EndedEvent>& ended) {
    for (auto& t : trackers_) {
        const bool failing = std::any_of(t.producers.begin(), t.producers.end(),
                                         [this](std::size_t p) { return failures_[p].failed_now; });
        const bool unseen = failing || (blind && blinded(t.check));
        // Unseen for its rule's clear time, as a condition seen gone must be to end.
        if (!unseen || frame.steady - t.last_seen < t.tracker.rule().clear) continue;
        // Seen gone before the picture went: it cleared, when it was first seen gone (a cleaner
        // leaving who switched the lights off on the way out ended "not seen to clear", 4.5 s long).
        // Else as of its last observation, as an outage ends as of the last frame. The cooldown runs
        // from now: a check that recovers, or a picture uncovered, with the condition still there
        // opens no second alert within it. Not open, a condition pending confirmation is forgotten.
        const auto gone = failing ? std::nullopt : t.tracker.clearing_since();
        auto end = gone ? t.tracker.close(*gone, "", frame.steady)
                        : t.tracker.close(t.last_seen_wall,
                                          failing ? events::kEndCheckFailing : events::kEndPictureUnusable,
                                          frame.steady);
        if (!end) continue;
        if (*end->end_time < end->start_time) end->end_time = end->time = end->start_time;
        auto best = evidence_.take_best(end->id);
        ended.emplace_back(std::move(*end), std::move(best));
    }
}

void CameraPipeline::end_for_offline(TimePoint last_frame) {
    std::vector<EndedEvent> ended;
    {
        std::lock_guard trackers(trackers_mutex_);
        // The cooldown runs from now: back within it with the condition still there, the camera
        // opens no second alert for it.
        const auto steady = std::chrono::steady_clock::now();
        outage_ended_at_ = steady;
        for (auto& t : trackers_) {
            auto end = t.tracker.close(last_frame, events::kEndCameraOffline, steady);
            if (!end) continue;
            // A frame's own time may run a little ahead of the decoder's clock that `last_frame` is.
            if (*end->end_time < end->start_time) end->end_time = end->time = end->start_time;
            auto best = evidence_.take_best(end->id);
            ended.emplace_back(std::move(*end), std::move(best));
        }
        std::lock_guard lock(conditions_mutex_);
        conditions_.clear();
    }
    for (auto& [end, best] : ended) {
        log_->info("{}/{} ended: the camera went offline", end.check, end.label);
        evidence_.submit_end(end, std::move(best));
    }
}

void CameraPipeline::cut_due_clips(SteadyPoint now) {
    if (site_.evidence != nullptr) evidence_.poll(now);
}

void CameraPipeline::flush_clips(std::chrono::steady_clock::time_point deadline) {
    if (site_.evidence != nullptr) evidence_.flush(std::chrono::steady_clock::now(), deadline);
}

events::TrackerRule CameraPipeline::rule_for(const std::string& check) const {
    const auto& configured = camera_.rules.at(check);
    events::TrackerRule rule;
    rule.severity = configured.severity;
    rule.confirm = configured.confirm;
    rule.clear = configured.clear;
    rule.cooldown = configured.cooldown;
    rule.threshold = static_cast<float>(configured.threshold);
    rule.median_window = configured.median_window;
    if (check == vision::CameraHealthCheck::kName) {
        // Camera faults are whole-picture states judged by the check itself over time.
        rule.confirm = camera_.health.confirm;
        rule.clear = camera_.health.clear;
        rule.cooldown = Duration(0);
        rule.median_window = 1;
    }
    return rule;
}

CameraPipeline::Tracked& CameraPipeline::tracker_for(const vision::Observation& o, std::size_t producer) {
    return tracker_of(o.check, o.label, o.zone, producer, o.severity);
}

CameraPipeline::Tracked& CameraPipeline::tracker_of(const std::string& check_name, const std::string& label,
                                                    const std::string& zone, std::size_t producer,
                                                    int severity) {
    for (auto& t : trackers_) {
        if (t.check == check_name && t.label == label && t.zone == zone) return t;
    }
    // The rule is the producing check's (a user model's classes share its rule), the severity the
    // model's class mapping's when it sets one.
    const rules::Schedule* schedule = nullptr;
    const std::string& check = checks_[producer]->name();
    const auto& name = camera_.rules.at(check).schedule;
    if (!name.empty()) schedule = &site_.schedules.at(name);
    events::TrackerRule rule = rule_for(check);
    if (severity > 0) rule.severity = severity;
    trackers_.push_back({check_name,
                         label,
                         zone,
                         events::EventTracker(camera_.id, check_name, label, zone, rule, site_.ids),
                         schedule,
                         {},
                         {},
                         {},
                         0,
                         0.0f,
                         {}});
    return trackers_.back();
}

void CameraPipeline::run_once() {
    const ingest::Frame* frame = input_->frames().take();
    if (frame != nullptr) analyse(*frame);
}

void CameraPipeline::analyse(const ingest::Frame& frame) {
    // A check that fails is handled in analyse_frame(). Whatever else throws on one frame (the
    // motion map, zones, evidence) loses that frame, not the pool's thread: out of it, the
    // exception would end the process, and systemd would restart it into the same frame's cause.
    try {
        analyse_frame(frame);
    } catch (const std::exception& e) {
        frame_failed(frame, e.what());
    } catch (...) {
        frame_failed(frame, "an exception that is not a std::exception");
    }
}

void CameraPipeline::frame_failed(const ingest::Frame& frame, const char* what) {
    if (const auto n = frame_failures_.pass())
        log_->error("analysis of a frame failed ({} time(s) since the last report), the frame lost: {}", n,
                    what);
    // Lost to every check, as if each had failed on it: a cause that stays (every frame lost) ends
    // the open events after their clear time, and the state names the checks as failing, instead of
    // events left open for good behind a camera that reads as online and well.
    const auto now = std::chrono::steady_clock::now();
    input_->stats().check_failed();
    {
        std::lock_guard lock(conditions_mutex_);
        for (auto& at : failed_at_) at = now;
    }
    for (auto& f : failures_) f.failed_now = true;
    try {
        std::unique_lock trackers(trackers_mutex_);
        failing_ended_.clear();
        end_unseen(frame, false, failing_ended_);
        if (!failing_ended_.empty()) refresh_conditions();
        trackers.unlock();
        for (auto& [end, best] : failing_ended_) {
            log_->warn("{}/{} ended: not seen for its clear time, the analysis failing on every frame",
                       end.check, end.label);
            evidence_.submit_end(end, std::move(best));
        }
    } catch (const std::exception& e) {
        log_->error("ending the events of a failing analysis failed: {}", e.what());
    }
}

void CameraPipeline::analyse_frame(const ingest::Frame& frame) {
    const auto began = std::chrono::steady_clock::now();
    passes_->begin_frame();  // before the motion map, which reads the frame's grey picture there
    if (motion_) motion_->update(frame.image);
    observations_.clear();
    produced_.clear();
    for (std::size_t i = 0; i < checks_.size(); ++i) {
        auto& check = *checks_[i];
        raw_.clear();
        auto& failures = failures_[i];
        failures.failed_now = false;
        try {
            check.analyse(frame, raw_);
        } catch (const std::exception& e) {
            // A model that answers otherwise than its manifest says, on this frame: the check's
            // open events stay as they are (it saw nothing either way) and every other check,
            // camera and sensor goes on. A check that keeps failing ends them (below).
            raw_.clear();
            check_failed(i, e);
        } catch (...) {
            raw_.clear();
            check_failed(i, std::runtime_error("an exception that is not a std::exception"));
        }
        for (const auto& o : raw_) zones_.apply(o, check.name(), observations_);
        produced_.push_back(observations_.size());
    }

    bool changed = false;
    std::size_t producer = 0;
    std::unique_lock trackers(trackers_mutex_);
    // A frame from before an outage, analysed after the outage ended its events, would reopen one
    // dated before that end.
    if (outage_ended_at_ && frame.steady <= *outage_ended_at_) observations_.clear();
    // One observation per tracker and frame: two checks that report the same condition (a user's
    // model beside a built-in check) and disagree fed it 0.9, 0, 0.9, ..., and with every absent
    // value its confirmation started over, so the alert never started. The frame's score is the
    // highest, its boxes all of theirs.
    ++frame_mark_;
    touched_.clear();
    // A black, blank or covered picture shows no person and no scene: the hygiene and scene checks'
    // "nothing seen" in it is no clearing (covering the lens ended an open bare_head as cleared half
    // a second after the picture went black: the 54th session's review), nor their "seen" a
    // condition (a hand on the lens is no dirt). Their trackers wait for a usable picture, and end
    // unseen after their clear time.
    const bool blind =
        std::any_of(observations_.begin(), observations_.end(), [](const vision::Observation& o) {
            return o.present && o.check == vision::CameraHealthCheck::kName && o.label != "frozen";
        });
    for (std::size_t i = 0; i < observations_.size(); ++i) {
        while (i >= produced_[producer]) ++producer;
        auto& o = observations_[i];
        if (blind && blinded(o.check)) continue;
        Tracked& t = tracker_for(o, producer);
        if (std::find(t.producers.begin(), t.producers.end(), producer) == t.producers.end())
            t.producers.push_back(producer);
        t.last_seen = frame.steady;
        t.last_seen_wall = frame.time;
        if (t.frame_mark != frame_mark_) {
            t.frame_mark = frame_mark_;
            t.frame_score = o.score;
            t.frame_boxes.swap(o.boxes);  // observations_ is made again for each frame
            touched_.push_back(&t);
        } else {
            t.frame_score = std::max(t.frame_score, o.score);
            t.frame_boxes.insert(t.frame_boxes.end(), o.boxes.begin(), o.boxes.end());
        }
    }
    schedule_ended_.clear();
    for (Tracked* t : touched_) {
        if (t->schedule != nullptr && !site_.calendar.active(*t->schedule, frame.time)) {
            // Outside its schedule a rule judges nothing: an open event ends, not as cleared (the
            // condition may well be there still), and none starts.
            t->frame_boxes.clear();
            if (auto end = t->tracker.close(frame.time, events::kEndScheduleEnded)) {
                auto best = evidence_.take_best(end->id);
                schedule_ended_.emplace_back(std::move(*end), std::move(best));
            }
            continue;
        }
        auto event = t->tracker.observe(frame.time, frame.steady, t->frame_score, t->frame_boxes);
        t->frame_boxes.clear();
        if (t->tracker.improved()) evidence_.best_frame(t->tracker.current(frame.time), frame);
        if (!event) continue;
        changed |= event->state != events::EventState::update;
        evidence_.submit(*event, frame);
    }
    failing_ended_.clear();
    end_unseen(frame, blind, failing_ended_);
    trackers.unlock();
    for (auto& [end, best] : schedule_ended_) {
        log_->info("{}/{} ended: its schedule ended", end.check, end.label);
        evidence_.submit_end(end, std::move(best));
        changed = true;
    }
    for (auto& [end, best] : failing_ended_) {
        log_->warn("{}/{} ended: not seen for {} s, {}", end.check, end.label,
                   std::chrono::duration_cast<std::chrono::seconds>(frame.time - *end.end_time).count(),
                   end.end_reason == events::kEndCheckFailing ? "its check failing on every frame"
                   : end.end_reason.empty() ? "seen gone before the picture went black, blank or covered"
                                            : "the picture black, blank or covered (camera_health)");
        evidence_.submit_end(end, std::move(best));
        changed = true;
    }
    input_->stats().frame_analysed(std::chrono::steady_clock::now() - began);
    if (training_) {
        // On the analysis thread, which owns the frame; an encode every few minutes is cheap
        // beside the checks, and a copy for another thread would cost more.
        if (auto saved = training_->offer(frame.image, frame.time)) {
            if (saved->ok) {
                log_->debug("training frame {}", saved->path);
            } else {
                log_->warn("training frame not kept: {}", saved->error);
            }
        }
    }
    if (changed) {
        std::lock_guard held(trackers_mutex_);
        refresh_conditions();
    }
}

void CameraPipeline::refresh_conditions() {
    std::lock_guard lock(conditions_mutex_);
    conditions_.clear();
    // Each label once: two zones each with an open bare_head said ["bare_head", "bare_head"].
    for (const auto& t : trackers_) {
        if (t.tracker.active() &&
            std::find(conditions_.begin(), conditions_.end(), t.label) == conditions_.end())
            conditions_.push_back(t.label);
    }
}

publish::CameraState CameraPipeline::supervise(TimePoint now, SteadyPoint steady) {
    return report(now, steady, true);
}

publish::CameraState CameraPipeline::final_state(TimePoint now) {
    return report(now, std::chrono::steady_clock::now(), false);
}

publish::CameraState CameraPipeline::report(TimePoint now, SteadyPoint steady, bool observe) {
    publish::CameraState state;
    state.camera = &camera_;
    state.stats = input_->stats().snapshot(steady);
    // How long ago on the steady clock; on the wall clock a step back of an hour kept a camera that
    // died online for that hour, and a step ahead raised a false offline that ended its alerts.
    // Silent since this run's last frame; before its first, since the previous run's last one if a
    // reload handed it over (it stands for it in the report), else since the start.
    SteadyPoint since = started_steady_;
    if (state.stats.last_frame_steady) {
        since = std::max(*state.stats.last_frame_steady, started_steady_);
    } else if (seen_before_steady_) {
        state.stats.last_frame = seen_before_;
        state.stats.last_frame_steady = since = *seen_before_steady_;
    }
    const auto silent = steady - since;
    const TimePoint seen =
        now - std::chrono::duration_cast<TimePoint::duration>(silent);  // the wall time of it
    const bool offline = silent >= camera_.health.offline_after;
    // Back only once frames have kept coming for health.clear on one connection: a camera on a bad
    // link, giving 2 s of video a connection, ended its offline alert at each and raised it again
    // 20 s later, about 110 alerts an hour while it was as good as down.
    const auto& st = state.stats;
    const bool back = !offline && st.streaming_since && st.last_frame_steady &&
                      *st.last_frame_steady - *st.streaming_since >= camera_.health.clear;
    // Why the camera cannot be read, as its latest failure since its last frame says: an outage
    // says it (the cameras review: the reason was in the state's last_error alone, which the room
    // did not show; a wrong password and a dead switch looked the same).
    // Judged on the steady clock: a wall clock set back between the two made an old failure new.
    const auto latest = last_failure(st);
    const auto cause = latest && st.last_error_steady &&
                               (!st.last_frame_steady || *st.last_error_steady >= *st.last_frame_steady)
                           ? latest
                           : std::nullopt;
    std::optional<events::Event> event;
    if (observe && offline_->active() && back) {
        // Ended as of the first frame back, as any event ends as of when it was first seen gone:
        // not health.clear later, which the room would count as outage.
        event = offline_->close(
            now - std::chrono::duration_cast<TimePoint::duration>(steady - *st.streaming_since), "");
        if (event) event->cause = std::exchange(outage_cause_, std::nullopt);
        told_kind_.reset();
    } else if (observe) {
        const bool was_active = offline_->active();
        event = offline_->observe(now, steady, offline || was_active ? 1.0f : 0.0f);
        // An outage begins at the last frame, as it ends at the first frame back (and the camera's
        // other events end at it): dated at its finding, `offline_after` later, every outage read
        // that much short in the room (the cameras review: 122 s as 101.7 s).
        if (event && event->state == events::EventState::start) {
            offline_->date_start(seen);
            event->start_time = std::min(event->start_time, seen);
            outage_cause_ = cause;
            told_kind_ = cause ? std::optional<std::string>(cause->kind) : std::nullopt;
            cause_sent_at_ = steady;
            event->cause = cause;
        } else if (was_active && cause) {
            outage_cause_ = cause;  // the latest, which the end says
            // Another cause than the room was told (a camera that stopped answering now refuses
            // its password: reset to its factory settings?): an update says it. At once when the
            // room was told none yet (a read that hung past offline_after); else at most one a
            // minute, for a camera whose failures alternate.
            if (told_kind_ != cause->kind && (!told_kind_ || steady - cause_sent_at_ >= kCauseUpdateEvery)) {
                told_kind_ = cause->kind;
                cause_sent_at_ = steady;
                event = offline_->renew(now);
                if (event) event->cause = cause;
            }
        }
    }
    state.online = st.last_frame_steady.has_value() && !offline && !offline_->active();
    if (event) {
        if (event->state == events::EventState::start) {
            log_->warn("offline: no frame for {} ms ({})",
                       std::chrono::duration_cast<std::chrono::milliseconds>(silent).count(),
                       state.stats.last_error.empty() ? "no error reported" : state.stats.last_error);
        }
        site_.sink.submit(*event);
        // Its open events end with the last frame: left open, a `no_mask` would last as long as
        // the outage in the room's figures. A condition still there when frames return is a new
        // event once confirmed again.
        if (event->state == events::EventState::start) end_for_offline(seen);
    }

    if (observe) judge_stream(now, steady, st, offline, seen);

    rate_samples_.push_back(
        {steady, state.stats.frames_in, state.stats.frames_analysed, state.stats.analysis_ns});
    while (rate_samples_.size() > 2 && steady - rate_samples_.front().t > kRateWindow)
        rate_samples_.pop_front();
    const auto& first = rate_samples_.front();
    const double span = std::chrono::duration<double>(steady - first.t).count();
    if (span > 0.5) {
        state.fps_in = static_cast<double>(state.stats.frames_in - first.in) / span;
        state.fps_analysed = static_cast<double>(state.stats.frames_analysed - first.analysed) / span;
        const auto frames = state.stats.frames_analysed - first.analysed;
        if (frames > 0) {
            state.check_seconds = static_cast<double>(state.stats.analysis_ns - first.analysis_ns) / 1e9 /
                                  static_cast<double>(frames);
        }
    }
    {
        constexpr auto kFailingFor = std::chrono::minutes(1);
        const auto steady = std::chrono::steady_clock::now();
        std::lock_guard lock(conditions_mutex_);
        state.conditions = conditions_;
        for (std::size_t i = 0; i < failed_at_.size(); ++i) {
            if (failed_at_[i] && steady - *failed_at_[i] < kFailingFor)
                state.failing_checks.push_back(checks_[i]->name());
        }
    }
    if (damaged_->active()) state.conditions.insert(state.conditions.begin(), "damaged");
    if (unstable_->active()) state.conditions.insert(state.conditions.begin(), "unstable");
    if (offline_->active()) state.conditions.insert(state.conditions.begin(), "offline");
    return state;
}

void CameraPipeline::judge_stream(TimePoint now, SteadyPoint steady, const ingest::CameraStatsSnapshot& st,
                                  bool offline, TimePoint last_frame) {
    const auto& health = camera_.health;
    // A camera whose stream keeps breaking and coming back stays online between breaks, and its
    // outages are each shorter than offline_after: the cameras review's camera stalling every 40 s
    // lost a quarter of its video, unseen by the room (its stalls_1h in a state nobody reads).
    if (health.unstable_after > 0) {
        const bool breaking = st.breaks_1h >= health.unstable_after;
        if (auto e = unstable_->observe(now, steady, breaking ? 1.0f : 0.0f)) {
            if (e->state != events::EventState::end) e->cause = last_failure(st);
            if (e->state == events::EventState::start)
                log_->warn("unstable: its stream broke {} times in the last hour (the latest: {})",
                           st.breaks_1h, st.last_error.empty() ? "no error reported" : st.last_error);
            site_.sink.submit(*e);
        }
    }
    // A smeared picture, online all along: the checks see less in it, parents and regulators see
    // mush (the review's stream with 2% of its packets damaged: 40% of its pictures).
    damage_samples_.push_back({steady, st.frames_in, st.frames_damaged});
    while (damage_samples_.size() > 2 && steady - damage_samples_.front().t > kDamageWindow)
        damage_samples_.pop_front();
    if (health.damaged_share <= 0) return;
    if (offline) {
        // Without pictures there is nothing to judge, damaged or not.
        if (auto e = damaged_->close(last_frame, events::kEndCameraOffline)) site_.sink.submit(*e);
        return;
    }
    const auto& first = damage_samples_.front();
    const auto decoded = st.frames_in - first.in;
    if (steady - first.t < kDamageWindow * 5 / 6 || decoded < 10) return;  // not a minute of pictures yet
    const double share =
        static_cast<double>(st.frames_damaged - first.damaged) / static_cast<double>(decoded);
    // Over at the share, back under half of it: a share near the line does not open and end alerts
    // minute after minute.
    const bool present = share >= (damaged_->active() ? health.damaged_share / 2 : health.damaged_share);
    if (auto e = damaged_->observe(now, steady, present ? 1.0f : 0.0f)) {
        if (e->state == events::EventState::start)
            log_->warn("damaged: {:.0f}% of its pictures of the last minute were decoded with errors",
                       share * 100);
        site_.sink.submit(*e);
    }
}

}  // namespace kg::app
