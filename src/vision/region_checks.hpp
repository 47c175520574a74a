#pragma once
// Checks of configured regions (zones) rather than of people:
// - after_hours_motion: anything moving (a rodent, an intruder) in the region, with it boxed; its
//   rule's schedule limits it to closed hours;
// - unattended: nobody moved at the station for `unattended_after` (e.g. a stove while cooking);
// - cleanliness and bin_lid: the region differs from its reference (clean floor, closed bin) where
//   nothing is moving, i.e. something was left there or the lid is open; the rule's `confirm`
//   decides how long it must persist. The picture is brought to the reference's brightness first.
// Each zone of the camera that names the check is judged on its own (all zones when none names it:
// the whole picture). They share the camera's MotionMap.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "rules/zones.hpp"
#include "vision/check.hpp"
#include "vision/motion.hpp"

namespace kg::vision {

struct Region {
    std::string zone;  // empty: the whole picture
    cv::Mat mask;      // MotionMap::region_mask() of the zone's polygon; empty: the whole picture
};
std::vector<Region> regions_for(const std::string& check, const config::Camera& camera);

class MotionCheck final : public Check {
public:
    MotionCheck(std::vector<Region> regions, const MotionMap& motion, double min_area);
    const std::string& name() const override { return kName; }
    void analyse(const ingest::Frame& frame, std::vector<Observation>& out) override;
    // Nothing of its own: what moves is the camera's MotionMap's, which its pipeline hands over.
    bool take_state_from(Check& earlier) override;
    static inline const std::string kName = "after_hours_motion";

private:
    std::vector<Region> regions_;
    const MotionMap& motion_;
    double min_area_;
};

class UnattendedCheck final : public Check {
public:
    UnattendedCheck(std::vector<Region> regions, const MotionMap& motion, double min_area, Duration after);
    const std::string& name() const override { return kName; }
    void analyse(const ingest::Frame& frame, std::vector<Observation>& out) override;
    // Each station's last movement and the frames' usual gap, for the same stations.
    bool take_state_from(Check& earlier) override;
    static inline const std::string kName = "unattended";

private:
    std::vector<Region> regions_;
    const MotionMap& motion_;
    double min_area_;
    Duration after_;
    std::vector<std::optional<SteadyPoint>> last_activity_;  // monotonic, as event timing
    std::optional<SteadyPoint> last_frame_;
    // A gap between two frames longer than 10 s and than 5 of this camera's usual gaps is time
    // nobody saw (the camera was down, or stalled): it does not count as time without activity.
    // Relative to the usual gap, so a camera analysed every 15 s (a low analysis.fps, key frames
    // only with long GOPs, a loaded box) is still watched; and 3 such gaps in a row are its new
    // usual gap, not an outage (see analyse()).
    static constexpr auto kUnseenGap = std::chrono::seconds(10);
    SteadyPoint::duration usual_gap_{};  // a running mean of the gaps seen
    static constexpr int kLongGapsForNewCadence = 3;
    int long_gaps_ = 0;  // unseen gaps in a row
    SteadyPoint::duration shortest_long_gap_{};
};

class ReferenceChangeCheck final : public Check {
public:
    // reference: a picture of the region as it should be (clean, lid closed); empty: the first
    // frames in a row in which nothing moves in the regions are taken as the reference.
    ReferenceChangeCheck(std::string name, std::string label, std::vector<Region> regions,
                         const MotionMap& motion, double min_area, const cv::Mat& reference);
    const std::string& name() const override { return name_; }
    void analyse(const ingest::Frame& frame, std::vector<Observation>& out) override;
    // A learned reference (or the learning in progress), where neither check was given one, whatever
    // zones judge it now; where both were, taken only for the very same picture (a file replaced
    // under the same name is read again, and judged by).
    bool take_state_from(Check& earlier) override;

private:
    std::string name_, label_;
    std::vector<Region> regions_;
    const MotionMap& motion_;
    double min_area_;
    // The gain that brings the picture (blurred_) to the reference's brightness.
    double gain();
    // Nothing moves in the regions in this frame (for learning the reference).
    bool still();

    cv::Mat reference_;   // grey, MotionMap size, blurred
    bool given_ = false;  // reference_ is the picture the configuration gave
    int learned_ = 0;
    std::optional<SteadyPoint> learning_since_;  // the first frame seen without a reference
    cv::Mat blurred_, diff_, changed_, still_;
    cv::Mat reference_cells_, cells_, moving_cells_;  // for gain()
    std::vector<double> ratios_;
};

}  // namespace kg::vision
