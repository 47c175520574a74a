#pragma once
// A check driven by a detector: the hygiene checks (mask, head covering) and any user model whose
// manifest maps class names to checks. Each violation label becomes an observation with its boxes.
// Motion gating: when nothing moves in the picture and it is still the one the detector last
// looked at, the detector is skipped and the last result stands (the same people are still there),
// refreshed at least every `refresh`.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vision/check.hpp"
#include "vision/detection.hpp"
#include "vision/motion.hpp"

namespace kg::vision {

struct Violation {
    std::string detector_label;  // what the detector calls it, e.g. "no_mask"
    std::string check;           // the check events carry, e.g. "mask"
    std::string label;           // the label events carry, e.g. "no_mask"
    int severity = 0;            // 0: the rule's
};

class DetectorCheck final : public Check {
public:
    DetectorCheck(std::string name, std::unique_ptr<Detector> detector, std::vector<Violation> violations,
                  const MotionMap* motion, Duration refresh);
    const std::string& name() const override { return name_; }
    void analyse(const ingest::Frame& frame, std::vector<Observation>& out) override;

    std::uint64_t runs() const { return runs_; }
    std::uint64_t skipped() const { return skipped_; }

private:
    // Whether the picture differs from the one the detector last ran on (the motion map's small grey
    // copy of each): a picture back to a look the background model knows is no motion for it.
    bool changed_since_run();

    std::string name_;
    std::unique_ptr<Detector> detector_;
    std::vector<Violation> violations_;
    const MotionMap* motion_;  // null: no gating
    Duration refresh_;
    std::vector<Detection> detections_, scratch_;
    std::optional<SteadyPoint> last_run_;
    cv::Mat seen_, difference_;  // the last run's small grey picture; a scratch
    std::uint64_t runs_ = 0, skipped_ = 0;
};

// A minimal share of the picture must move, or differ from the one last looked at, for the
// detectors to run again.
inline constexpr double kMotionGateFraction = 0.002;
// A grey level a pixel must change by to count as different (the motion map's own for moving()):
// above the sensor's and the encoder's noise on the small copy.
inline constexpr int kChangedLevel = 15;

}  // namespace kg::vision
