#pragma once
// A check driven by a detector: the hygiene checks (mask, head covering) and any user model whose
// manifest maps class names to checks. Each violation label becomes an observation with its boxes.
// Motion gating: when nothing moved in the picture, the detector is skipped and the last result
// stands (the same people are still there), refreshed at least every `refresh`.

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
    std::string name_;
    std::unique_ptr<Detector> detector_;
    std::vector<Violation> violations_;
    const MotionMap* motion_;  // null: no gating
    Duration refresh_;
    std::vector<Detection> detections_, scratch_;
    std::optional<SteadyPoint> last_run_;
    std::uint64_t runs_ = 0, skipped_ = 0;
};

// A minimal share of the picture must move for the detectors to run again.
inline constexpr double kMotionGateFraction = 0.002;

}  // namespace kg::vision
