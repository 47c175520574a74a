#pragma once
// What every check produces for one analysed frame: observations (a label, a score, boxes) that
// the event stage turns into start/update/end events. Checks never publish anything themselves.

#include <string>
#include <vector>

#include "ingest/frame.hpp"

namespace kg::vision {

// A box in normalised coordinates (0..1 of the frame's width and height).
struct Box {
    float x = 0, y = 0, w = 0, h = 0;
    std::string label;
    float score = 0;
};

struct Observation {
    std::string check;  // the check's config name, e.g. "camera_health"
    std::string label;  // what it is about, e.g. "frozen"
    std::string zone;   // empty: the whole frame
    bool present = false;
    float score = 0;  // 0..1, confidence that the label is present
    std::vector<Box> boxes;
    int severity = 0;  // 0: the check's rule decides; 1-3: set by a model's class mapping
    // Placed by its check: a condition of the whole picture (camera health) or of the region the
    // check judged (region checks). Zones never split it, so the tracker that saw it start also
    // sees it end; ignore masks still remove its boxes.
    bool placed = false;
};

class Check {
public:
    virtual ~Check() = default;
    virtual const std::string& name() const = 0;
    // Appends this frame's observations to `out`. Called for one camera's frames in order, from
    // one thread at a time.
    virtual void analyse(const ingest::Frame& frame, std::vector<Observation>& out) = 0;
    // At a reload that keeps the camera's stream going (app::CameraInput), the same check of the
    // run before, `earlier`, which analysed that stream up to the reload: this one takes what it
    // learned from those pictures (when a picture froze, how sharp the lens usually is, a station's
    // last movement, a learned reference). Made afresh, it judged those conditions anew: a lens
    // still covered read as uncovered, a station unattended for 10 minutes as attended, and the
    // room saw each reload end such an alert and raise it again. True when this check took it (of
    // the same kind, judging the same regions): what the stream showed, whatever thresholds judge
    // it now (whether an open alert goes on is the event stage's rule); false (the default: a check
    // that learns nothing over time) leaves it as made. `earlier` is spent after.
    virtual bool take_state_from(Check& earlier) {
        (void)earlier;
        return false;
    }
};

}  // namespace kg::vision
