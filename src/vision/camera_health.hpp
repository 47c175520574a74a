#pragma once
// The camera-health check: what regulators complain about most besides an offline camera —
// a black picture, a blank (uniform) picture, a covered or blocked lens, and a frozen picture.
// At most one of these is present at a time, in that order of precedence: a black picture is
// also uniform and static, and reporting it three times would triple-count one fault.

#include <opencv2/core/mat.hpp>
#include <optional>

#include "config/config.hpp"
#include "vision/check.hpp"

namespace kg::vision {

class FramePasses;

// Per-frame measurements, exposed for tests and tuning.
struct HealthMeasures {
    double mean = 0;             // luma mean, 0..255
    double stddev = 0;           // luma standard deviation
    double edge = 0;             // mean gradient magnitude of the small image
    double featureless = 0;      // fraction of grid cells with no detail
    std::optional<double> diff;  // mean abs difference to the previous frame
};

class CameraHealthCheck final : public Check {
public:
    static inline const std::string kName = "camera_health";

    // `passes`: the grey picture is read from there (converted once per frame for every reader);
    // none: converted here.
    explicit CameraHealthCheck(const config::Health& cfg, FramePasses* passes = nullptr);
    const std::string& name() const override { return kName; }
    void analyse(const ingest::Frame& frame, std::vector<Observation>& out) override;
    // The previous picture, when it began to stay the same and the lens's usual sharpness, whatever
    // the `health` settings now (whether its open alerts go on is the events' rule).
    bool take_state_from(Check& earlier) override;

    const HealthMeasures& last_measures() const { return measures_; }

private:
    void measure(const cv::Mat& bgr);

    config::Health cfg_;
    FramePasses* passes_;
    // Working images, allocated on the first frame and reused.
    cv::Mat gray_, small_, previous_, gx_, gy_, magnitude_;
    bool have_previous_ = false;
    std::optional<SteadyPoint> same_since_;  // monotonic: a clock step is no frozen picture
    // The detail this camera normally shows, learned from healthy frames: a covered lens is
    // judged against it, so a plain wall is not mistaken for a hand over the lens.
    std::optional<double> baseline_edge_;
    std::optional<SteadyPoint> previous_steady_;  // of the previous frame
    HealthMeasures measures_;
};

}  // namespace kg::vision
