#include "evidence/event_evidence.hpp"

#include <fmt/format.h>

#include <regex>

#include "evidence/clip_writer.hpp"

namespace kg::evidence {

events::ClipReport settle_left_clip(EvidenceStore& store, events::ClipReport report, spdlog::logger& log) {
    const auto file = store.absolute(report.path);
    std::error_code ec;
    if (std::filesystem::is_regular_file(file, ec)) {
        const auto found = probe_mp4(file.string());
        if (found.ok) {
            log.warn(
                "event {}: clip {} was cut before the previous run died, its report was not sent: sent now",
                report.event_id, report.path);
            report.error.clear();
            report.seconds = found.seconds;
            report.bytes = found.bytes;
            return report;
        }
        log.warn("event {}: clip {} left unfinished by the previous run: {}", report.event_id, report.path,
                 found.error);
    }
    try {
        for (const auto& removed : store.remove(report.path)) {
            log.info("event {}: deleted {}, left unfinished by the previous run", report.event_id, removed);
        }
    } catch (const std::filesystem::filesystem_error& e) {
        log.error("event {}: cannot delete what the previous run left of its clip: {}", report.event_id,
                  e.what());
    }
    log.warn("event {}: clip not kept: {}", report.event_id, report.error);
    report.path.clear();
    return report;
}

EventEvidence::EventEvidence(const config::Camera& camera, const config::Evidence& cfg, EvidenceStore* store,
                             const PacketRing& ring, events::EventSink& sink, const rules::Calendar& calendar,
                             std::shared_ptr<spdlog::logger> log)
    : camera_(camera),
      cfg_(cfg),
      store_(store),
      ring_(ring),
      sink_(sink),
      calendar_(calendar),
      log_(std::move(log)) {}

std::vector<Outline> EventEvidence::outlines(const config::Camera& camera, const std::string& zone) {
    std::vector<Outline> out;
    for (const auto& z : camera.zones) {
        if (!zone.empty() && z.name != zone) continue;
        if (zone.empty()) continue;
        Outline o;
        for (const auto& p : z.polygon) o.emplace_back(p.x, p.y);
        out.push_back(std::move(o));
    }
    return out;
}

bool is_event_evidence(const std::string& relative) {
    // The camera id as configuration allows it, the date as Calendar::local_date writes it, the id
    // as EventIdGenerator makes it.
    static const std::regex kName(
        R"([A-Za-z0-9_-]{1,64}/\d{4}-\d\d-\d\d/[0-9a-f]{11,16}-[0-9a-f]{16}(-start\.jpg|-best\.jpg|\.mp4))");
    return std::regex_match(relative, kName);
}

std::string EventEvidence::path_for(const events::Event& e, const std::string& suffix) const {
    return fmt::format("{}/{}/{}{}", camera_.id, calendar_.local_date(e.start_time), e.id, suffix);
}

std::string EventEvidence::write_snapshot(const events::Event& e, const cv::Mat& image,
                                          const std::string& suffix, std::string* jpeg_out,
                                          std::vector<std::string>& errors, cv::Mat& canvas) {
    // cv::putText draws ASCII only: the camera's id stands in for a name in another script.
    const bool ascii =
        std::all_of(camera_.name.begin(), camera_.name.end(), [](unsigned char c) { return c < 0x80; });
    const SnapshotText text{ascii ? camera_.name : camera_.id, calendar_.local_text(e.time)};
    std::string jpeg = annotated_jpeg(image, e, outlines(camera_, e.zone), text, canvas, cfg_.jpeg_quality);
    auto relative = path_for(e, suffix);  // not const: returned by move
    const auto r = store_->write(relative, jpeg);
    if (jpeg_out != nullptr) *jpeg_out = std::move(jpeg);
    if (!r.ok) {
        errors.push_back("snapshot: " + r.error);
        log_->warn("event {}: snapshot not kept: {}", e.id, r.error);
        return {};
    }
    if (!r.warning.empty()) log_->warn("event {}: snapshot {} kept, but {}", e.id, relative, r.warning);
    return relative;
}

void EventEvidence::submit(events::Event& event, const ingest::Frame& frame) {
    std::optional<PendingClip> clip;
    std::string snapshot = attach(event, frame, clip);
    sink_.submit(event);
    if (!snapshot.empty()) sink_.submit_snapshot(event, std::move(snapshot));
    if (clip) {
        // Only now may poll() cut it: with a short clip_post it could otherwise report the clip
        // before the start is committed, and the start would then record it as pending for ever.
        std::lock_guard lock(pending_mutex_);
        pending_.push_back(std::move(*clip));
    }
}

std::string EventEvidence::attach(events::Event& event, const ingest::Frame& frame,
                                  std::optional<PendingClip>& clip_out) {
    std::string for_mqtt;
    if (store_ == nullptr) return for_mqtt;
    if (event.state == events::EventState::start) {
        std::string jpeg;
        event.evidence.snapshot =
            write_snapshot(event, frame.image, "-start.jpg", &jpeg, event.evidence.errors, canvas_);
        if (cfg_.mqtt_snapshots) for_mqtt = std::move(jpeg);
        best_[event.id] = {frame.image.clone(), event};
        if (cfg_.clip_pre.count() + cfg_.clip_post.count() > 0) {
            event.evidence.clip = path_for(event, ".mp4");
            PendingClip clip;
            clip.report.event_id = event.id;
            clip.report.camera = camera_.id;
            clip.report.path = event.evidence.clip;
            clip.report.start_time = event.start_time;
            clip.from = event.start_time - cfg_.clip_pre;
            clip.to = event.time + cfg_.clip_post;
            // The frame's two clocks place the span on the steady one, once.
            clip.steady_from =
                frame.steady - std::chrono::duration_cast<SteadyPoint::duration>(frame.time - clip.from);
            clip.steady_to =
                frame.steady + std::chrono::duration_cast<SteadyPoint::duration>(clip.to - frame.time);
            clip.steady_start = frame.steady - std::chrono::duration_cast<SteadyPoint::duration>(
                                                   frame.time - event.start_time);
            clip_out = std::move(clip);
        }
    } else if (event.state == events::EventState::end) {
        auto it = best_.find(event.id);
        // Empty: an alert a reload handed over without a frame, none better seen since (keep_best).
        if (it != best_.end() && !it->second.image.empty()) {
            event.evidence.snapshot_end = write_snapshot(it->second.event, it->second.image, "-best.jpg",
                                                         nullptr, event.evidence.errors, canvas_);
        }
        if (it != best_.end()) best_.erase(it);
    }
    return for_mqtt;
}

std::optional<EventEvidence::BestFrame> EventEvidence::take_best(const std::string& event_id) {
    auto node = best_.extract(event_id);
    if (node.empty()) return std::nullopt;
    return std::move(node.mapped());
}

void EventEvidence::submit_end(events::Event& event, std::optional<BestFrame> best) {
    if (store_ != nullptr && best && !best->image.empty()) {
        cv::Mat canvas;  // not canvas_: the analysis thread may be drawing on it
        event.evidence.snapshot_end =
            write_snapshot(best->event, best->image, "-best.jpg", nullptr, event.evidence.errors, canvas);
    }
    sink_.submit(event);
}

void EventEvidence::best_frame(const events::Event& event, const ingest::Frame& frame) {
    auto it = best_.find(event.id);
    if (it == best_.end()) return;
    frame.image.copyTo(it->second.image);
    it->second.event = event;
}

void EventEvidence::poll(SteadyPoint now) {
    std::vector<PendingClip> due;
    {
        std::lock_guard lock(pending_mutex_);
        auto split = std::partition(pending_.begin(), pending_.end(),
                                    [&](const PendingClip& c) { return c.steady_to > now; });
        due.assign(std::make_move_iterator(split), std::make_move_iterator(pending_.end()));
        pending_.erase(split, pending_.end());
    }
    for (auto& clip : due) cut(clip, clip.steady_to);
}

void EventEvidence::flush(SteadyPoint now, SteadyPoint deadline) {
    std::vector<PendingClip> all;
    {
        std::lock_guard lock(pending_mutex_);
        all.swap(pending_);
    }
    for (auto& clip : all) {
        auto& report = clip.report;
        if (std::chrono::steady_clock::now() >= deadline) {
            report.error = "the gateway stopped before the clip could be cut";
            log_->warn("event {}: clip not kept: {}", report.event_id, report.error);
            report.path.clear();
            sink_.submit_clip(report);
            continue;
        }
        const bool short_of_post_roll = clip.steady_to > now;
        cut(clip, std::min(clip.steady_to, now));
        if (short_of_post_roll && report.error.empty()) {
            log_->info("event {}: clip cut short by the stop: {:.1f} s of the {:.1f} s asked",
                       report.event_id, report.seconds, seconds_between(clip.from, clip.to));
        }
    }
}

void EventEvidence::cut(PendingClip& clip, SteadyPoint to) {
    const PacketSpan span = ring_.span(clip.steady_from, to, clip.steady_start);
    std::size_t estimate = 0;
    for (const auto& p : span.packets) estimate += static_cast<std::size_t>(p.packet->size);
    auto& report = clip.report;
    const auto room = store_->reserve(report.path, estimate + 64 * 1024);
    if (!room.ok) {
        report.error = room.error;
    } else {
        const auto written = write_mp4(span, store_->absolute(report.path).string());
        if (written.ok) {
            if (!written.warning.empty())
                log_->warn("event {}: clip {} kept, but {}", report.event_id, report.path, written.warning);
            // Shorter than asked, said where an operator looks: the room has its length only.
            const auto late = span.packets.front().arrival - clip.steady_from;
            const auto early = to - span.packets.back().arrival;
            if (late > std::chrono::seconds(1)) {
                log_->warn(
                    "event {}: clip {} starts {:.1f} s after the time it was asked from: the camera's "
                    "video before then was no longer held",
                    report.event_id, report.path, std::chrono::duration<double>(late).count());
            } else if (early > std::chrono::seconds(2)) {
                log_->info(
                    "event {}: clip {} ends {:.1f} s before the time it was asked to (the camera "
                    "reconnected, or sent nothing since)",
                    report.event_id, report.path, std::chrono::duration<double>(early).count());
            }
            store_->adopt(report.path);
            report.seconds = written.seconds;
            report.bytes = written.bytes;
        } else {
            store_->release(report.path);
            report.error = written.error;
        }
    }
    if (!report.error.empty()) {
        log_->warn("event {}: clip not kept: {}", report.event_id, report.error);
        report.path.clear();
    }
    sink_.submit_clip(report);
}

}  // namespace kg::evidence
