#include "app/camera_pipeline.hpp"

#include <algorithm>

#include "vision/camera_health.hpp"

namespace kg::app {
namespace {

constexpr auto kRateWindow = std::chrono::seconds(10);
constexpr int kHealthSeverity = 2;  // a camera fault must be fixed within a deadline

std::unique_ptr<vision::Check> make_check(const std::string& name, const config::Camera& camera) {
    if (name == vision::CameraHealthCheck::kName)
        return std::make_unique<vision::CameraHealthCheck>(camera.health);
    // The config loader only accepts known checks, so this is a programming error.
    throw std::logic_error("no implementation for check '" + name + "'");
}

}  // namespace

CameraPipeline::CameraPipeline(const config::Camera& camera, AnalysisPool& pool, events::EventSink& sink,
                               events::EventIdGenerator& ids, const Logging& logging)
    : camera_(camera), pool_(pool), sink_(sink), ids_(ids), log_(logging.get("cam:" + camera.id)) {
    for (const auto& name : camera_.checks) checks_.push_back(make_check(name, camera_));
    observations_.reserve(16);
    worker_ = std::make_unique<ingest::CameraWorker>(
        camera_, frames_, stats_, [this] { pool_.notify(*this); }, log_);
    events::TrackerRule offline_rule;
    offline_rule.confirm = Duration(0);  // offline_after already is the confirmation time
    offline_rule.clear = Duration(0);
    offline_rule.severity = kHealthSeverity;
    offline_ = std::make_unique<events::EventTracker>(camera_.id, vision::CameraHealthCheck::kName, "offline",
                                                      "", offline_rule, ids_);
}

CameraPipeline::~CameraPipeline() { stop(); }

void CameraPipeline::start() {
    started_at_ = Clock::now();
    worker_->start();
}

void CameraPipeline::stop() { worker_->stop(); }

events::TrackerRule CameraPipeline::rule_for(const std::string& check) const {
    events::TrackerRule rule;
    if (check == vision::CameraHealthCheck::kName) {
        rule.confirm = camera_.health.confirm;
        rule.clear = camera_.health.clear;
        rule.severity = kHealthSeverity;
    }
    return rule;
}

events::EventTracker& CameraPipeline::tracker_for(const vision::Observation& o) {
    for (auto& t : trackers_) {
        if (t.check == o.check && t.label == o.label && t.zone == o.zone) return t.tracker;
    }
    trackers_.push_back(
        {o.check, o.label, o.zone,
         events::EventTracker(camera_.id, o.check, o.label, o.zone, rule_for(o.check), ids_)});
    return trackers_.back().tracker;
}

void CameraPipeline::run_once() {
    const ingest::Frame* frame = frames_.take();
    if (frame == nullptr) return;
    observations_.clear();
    for (auto& check : checks_) check->analyse(*frame, observations_);

    bool changed = false;
    for (const auto& o : observations_) {
        auto event = tracker_for(o).observe(frame->time, o.score, o.boxes);
        if (!event) continue;
        changed |= event->state != events::EventState::update;
        sink_.submit(*event);
    }
    stats_.frame_analysed();
    if (changed) {
        std::lock_guard lock(conditions_mutex_);
        conditions_.clear();
        for (const auto& t : trackers_) {
            if (t.tracker.active()) conditions_.push_back(t.label);
        }
    }
}

publish::CameraState CameraPipeline::supervise(TimePoint now) {
    publish::CameraState state;
    state.camera = &camera_;
    state.stats = stats_.snapshot(now);
    const TimePoint seen = state.stats.last_frame.value_or(started_at_);
    state.online = state.stats.last_frame.has_value() && now - seen < camera_.health.offline_after;

    const bool offline = now - seen >= camera_.health.offline_after;
    if (auto event = offline_->observe(now, offline ? 1.0f : 0.0f)) {
        if (event->state == events::EventState::start) {
            log_->warn("offline: no frame for {} ms ({})",
                       std::chrono::duration_cast<std::chrono::milliseconds>(now - seen).count(),
                       state.stats.last_error.empty() ? "no error reported" : state.stats.last_error);
        }
        sink_.submit(*event);
    }

    rate_samples_.push_back({now, state.stats.frames_in, state.stats.frames_analysed});
    while (rate_samples_.size() > 2 && now - rate_samples_.front().t > kRateWindow) rate_samples_.pop_front();
    const auto& first = rate_samples_.front();
    const double span = seconds_between(first.t, now);
    if (span > 0.5) {
        state.fps_in = static_cast<double>(state.stats.frames_in - first.in) / span;
        state.fps_analysed = static_cast<double>(state.stats.frames_analysed - first.analysed) / span;
    }
    {
        std::lock_guard lock(conditions_mutex_);
        state.conditions = conditions_;
    }
    if (offline_->active()) state.conditions.insert(state.conditions.begin(), "offline");
    return state;
}

}  // namespace kg::app
