#pragma once
// The evidence of one camera's events: the annotated snapshot when an event starts (also sent on
// MQTT), the best-scoring frame when it ends, and the clip around the start, cut from the
// camera's packet ring once its post-roll has been recorded. Every failure degrades the
// evidence, never the event: it is recorded in the event's `evidence.errors`.

#include <spdlog/logger.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "events/event.hpp"
#include "evidence/evidence_store.hpp"
#include "evidence/packet_ring.hpp"
#include "evidence/snapshot.hpp"
#include "ingest/frame.hpp"
#include "rules/schedule.hpp"

namespace kg::evidence {

// The report for a clip that a start of the previous run named and that run never reported (it was
// killed, crashed or lost power within clip_post of the start): `report` comes from the outbox's
// record, with the path the start named and an error. A whole MP4 at that path (cut, and the run
// died before its report was committed) is reported as kept. Anything else there (a file a power cut
// left empty, an unfinished write) is deleted, and the error is reported without a path: no file is
// left that a report claims, or that the room could take for the clip. Failures are logged on `log`.
events::ClipReport settle_left_clip(EvidenceStore& store, events::ClipReport report, spdlog::logger& log);

// Whether `relative` (a path under the evidence folder) names a file the events write:
// "<camera>/<date>/<event id>" with "-start.jpg", "-best.jpg" or ".mp4". Only these are counted
// and ever deleted: a folder that holds anything else (the configuration itself, a person's files)
// keeps it. Every file of the folder counted before, and went at max_age.
bool is_event_evidence(const std::string& relative);

class EventEvidence {
public:
    EventEvidence(const config::Camera& camera, const config::Evidence& cfg, EvidenceStore* store,
                  const PacketRing& ring, events::EventSink& sink, const rules::Calendar& calendar,
                  std::shared_ptr<spdlog::logger> log);

    // Analysis thread: fills `event.evidence` for a start or an end, with the frame that caused it,
    // and submits the event to the sink, then the start's snapshot (the room gets the start before
    // its snapshot, docs/mqtt.md), and only then lets its clip be cut: a clip report never goes
    // before the start that names the clip, in which the outbox records the clip as pending.
    void submit(events::Event& event, const ingest::Frame& frame);
    // Analysis thread: an open event's score reached a new high on this frame.
    void best_frame(const events::Event& event, const ingest::Frame& frame);
    // The best frame of an open event and the event as it then stood.
    struct BestFrame {
        cv::Mat image;
        events::Event event;
    };
    // An end with no frame to show (the camera went offline), in two steps. take_best(), under the
    // camera pipeline's lock that keeps it apart from submit() and best_frame(): the best frame kept
    // for the event, released. submit_end(), outside it (an encode and two fsyncs must not hold up
    // the analysis or the supervisor's thread, which also serves HTTP): the end, with that frame as
    // its snapshot.
    std::optional<BestFrame> take_best(const std::string& event_id);
    // Before the analysis starts: the best frame a reload's previous run kept for an open event it
    // handed over (an empty one if none), improved on from here as this run's own.
    void keep_best(const std::string& event_id, BestFrame best) { best_[event_id] = std::move(best); }
    void submit_end(events::Event& event, std::optional<BestFrame> best);

    // Supervisor thread: cuts the clips whose post-roll has passed. Clips are timed on the steady
    // clock, as the ring's packets are: NTP setting the wall clock during a post-roll neither holds
    // a clip back for the size of the step nor cuts other seconds than the event's.
    void poll(SteadyPoint now);
    // Supervisor thread, at a stop or a reload once the camera no longer delivers: the start
    // messages have named clips that must exist, so every clip still waiting for its post-roll is
    // cut now from what the ring holds (shorter than asked; its report gives its length) and
    // reported. Those not begun by `deadline` are reported as not kept, so the stop stays bounded.
    void flush(SteadyPoint now, SteadyPoint deadline);

    static std::vector<Outline> outlines(const config::Camera& camera, const std::string& zone);

private:
    using Best = BestFrame;
    struct PendingClip {
        events::ClipReport report;
        TimePoint from, to;                  // as the event reports them
        SteadyPoint steady_from, steady_to;  // the same span on the steady clock, which cuts it
        SteadyPoint steady_start;            // the event's start on it: the clip's stream holds it
    };
    // Fills `event.evidence`; returns the start snapshot's JPEG for MQTT (empty when none is to be
    // sent) and sets `clip` to the clip a start names.
    std::string attach(events::Event& event, const ingest::Frame& frame, std::optional<PendingClip>& clip);
    std::string path_for(const events::Event& e, const std::string& suffix) const;
    // Writes the clip up to `to` (at most its own end) and submits its report.
    void cut(PendingClip& clip, SteadyPoint to);
    // `canvas`: where the picture is annotated (canvas_ on the analysis side).
    std::string write_snapshot(const events::Event& e, const cv::Mat& image, const std::string& suffix,
                               std::string* jpeg_out, std::vector<std::string>& errors, cv::Mat& canvas);

    const config::Camera& camera_;
    const config::Evidence& cfg_;
    EvidenceStore* store_;  // null: evidence disabled
    const PacketRing& ring_;
    events::EventSink& sink_;
    const rules::Calendar& calendar_;
    std::shared_ptr<spdlog::logger> log_;
    cv::Mat canvas_;

    // By event id: the analysis thread's, and take_best()'s under the pipeline's lock.
    std::map<std::string, Best> best_;
    std::mutex pending_mutex_;
    std::vector<PendingClip> pending_;
};

}  // namespace kg::evidence
