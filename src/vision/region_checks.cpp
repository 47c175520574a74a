#include "vision/region_checks.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <opencv2/imgproc.hpp>
#include <utility>

namespace kg::vision {
namespace {

// Without a reference picture, the reference is the average of the first frames in a row in which
// nothing moves in the regions (6: 3 s at the default 2 fps).
constexpr int kLearnFrames = 6;
constexpr auto kLearnPatience = std::chrono::minutes(2);  // then frames are learned, moving or not
constexpr double kChangeLevel = 30.0;                     // grey levels of difference that count as changed
// The picture is brought to the reference's brightness before they are compared, so that lights
// dimmed or the camera's exposure are not taken for dirt; within these bounds, beyond which (lights
// off) noise would be amplified into change.
constexpr double kMinGain = 0.4, kMaxGain = 2.5;
// The gain is judged on a grid of cells: the median, over the still cells, of the reference's
// brightness over the picture's. A change of the lighting changes every cell; a cook in a white
// coat, a window gone dark or something left behind changes some. Within the dead band it is 1.
constexpr int kGainColumns = 16, kGainRows = 9;
constexpr double kGainDeadBand = 0.08;
constexpr double kDarkestCell = 8.0;  // grey levels: a ratio to a black cell says nothing

Observation observation(const std::string& check, const std::string& label, const Region& r) {
    Observation o;
    o.check = check;
    o.label = label;
    o.zone = r.zone;
    o.placed = true;
    return o;
}

// The same regions, in the same order: each one's state is of the region at its place.
bool same_regions(const std::vector<Region>& a, const std::vector<Region>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (a[i].zone != b[i].zone || a[i].mask.size() != b[i].mask.size()) return false;
        if (!a[i].mask.empty() && cv::norm(a[i].mask, b[i].mask, cv::NORM_L1) != 0) return false;
    }
    return true;
}

}  // namespace

std::vector<Region> regions_for(const std::string& check, const config::Camera& camera) {
    std::vector<Region> out;
    for (const auto& z : camera.zones) {
        if (std::find(z.checks.begin(), z.checks.end(), check) == z.checks.end()) continue;
        rules::Polygon polygon;
        for (const auto& p : z.polygon) polygon.push_back({p.x, p.y});
        out.push_back({z.name, MotionMap::region_mask(polygon)});
    }
    if (out.empty()) out.push_back({"", {}});  // the whole picture
    return out;
}

MotionCheck::MotionCheck(std::vector<Region> regions, const MotionMap& motion, double min_area)
    : regions_(std::move(regions)), motion_(motion), min_area_(min_area) {}

void MotionCheck::analyse(const ingest::Frame&, std::vector<Observation>& out) {
    for (const auto& r : regions_) {
        Observation o = observation(kName, "motion", r);
        o.boxes = motion_.blobs(motion_.foreground(), r.mask, min_area_, "motion");
        for (const auto& b : o.boxes) o.score = std::max(o.score, b.score);
        o.present = !o.boxes.empty();
        out.push_back(std::move(o));
    }
}

bool MotionCheck::take_state_from(Check& earlier) {
    return dynamic_cast<const MotionCheck*>(&earlier) != nullptr;
}

UnattendedCheck::UnattendedCheck(std::vector<Region> regions, const MotionMap& motion, double min_area,
                                 Duration after)
    : regions_(std::move(regions)),
      motion_(motion),
      min_area_(min_area),
      after_(after),
      last_activity_(regions_.size()) {}

void UnattendedCheck::analyse(const ingest::Frame& frame, std::vector<Observation>& out) {
    // After an outage longer than `after` the first frame back raised `unattended` at once, though
    // nothing could be seen meanwhile: the unseen time moves the last activity on.
    if (last_frame_) {
        const auto gap = frame.steady - *last_frame_;
        const auto unseen = [](SteadyPoint::duration gap, SteadyPoint::duration usual) {
            return gap > std::max<SteadyPoint::duration>(kUnseenGap, 5 * usual);
        };
        if (usual_gap_ == SteadyPoint::duration::zero()) {
            usual_gap_ = gap;  // the first: nothing to compare it with
        } else {
            if (unseen(gap, usual_gap_)) {
                // An outage is one long gap, followed by usual ones. Long gaps in a row are the
                // camera's new cadence (analysed less often for good, or a burst at connect measured
                // as the usual gap): without this, every later gap was unseen and the station never
                // judged. The shortest of them, so that an outage among them is still one.
                shortest_long_gap_ = long_gaps_ == 0 ? gap : std::min(shortest_long_gap_, gap);
                if (++long_gaps_ >= kLongGapsForNewCadence) usual_gap_ = shortest_long_gap_;
            }
            if (unseen(gap, usual_gap_)) {
                for (auto& a : last_activity_)
                    if (a) *a += gap;
            } else {
                long_gaps_ = 0;
                usual_gap_ = (7 * usual_gap_ + gap) / 8;
            }
        }
    }
    last_frame_ = frame.steady;
    for (std::size_t i = 0; i < regions_.size(); ++i) {
        const auto& r = regions_[i];
        // Someone working at a station moves; a station where nothing moved is unattended. The
        // movement is measured as a share of the picture, as min_area is everywhere: a share of a
        // small stove zone would let steam or a flame's flicker pass for a cook.
        if (!last_activity_[i] || motion_.moved_share(r.mask) >= min_area_) last_activity_[i] = frame.steady;
        Observation o = observation(kName, "unattended", r);
        o.present = frame.steady - *last_activity_[i] >= after_;
        o.score = o.present ? 1.0f : 0.0f;
        out.push_back(std::move(o));
    }
}

bool UnattendedCheck::take_state_from(Check& earlier) {
    auto* e = dynamic_cast<UnattendedCheck*>(&earlier);
    // Each station's, whatever `unattended_after` or `min_area` say now: how long it has been still
    // is what the stream showed.
    if (e == nullptr || !same_regions(e->regions_, regions_)) return false;
    last_activity_ = e->last_activity_;
    last_frame_ = e->last_frame_;
    usual_gap_ = e->usual_gap_;
    long_gaps_ = e->long_gaps_;
    shortest_long_gap_ = e->shortest_long_gap_;
    return true;
}

ReferenceChangeCheck::ReferenceChangeCheck(std::string name, std::string label, std::vector<Region> regions,
                                           const MotionMap& motion, double min_area, const cv::Mat& reference)
    : name_(std::move(name)),
      label_(std::move(label)),
      regions_(std::move(regions)),
      motion_(motion),
      min_area_(min_area) {
    if (!reference.empty()) {
        cv::Mat gray, small;
        if (reference.channels() == 3) {
            cv::cvtColor(reference, gray, cv::COLOR_BGR2GRAY);
        } else {
            gray = reference;
        }
        cv::resize(gray, small, {MotionMap::kWidth, MotionMap::kHeight}, 0, 0, cv::INTER_AREA);
        cv::GaussianBlur(small, reference_, {5, 5}, 0);
        reference_.convertTo(reference_, CV_32F);
        learned_ = kLearnFrames;
        given_ = true;
    }
}

bool ReferenceChangeCheck::take_state_from(Check& earlier) {
    auto* e = dynamic_cast<ReferenceChangeCheck*>(&earlier);
    // The learned reference is of the whole picture: the zones and `min_area` it is judged by now do
    // not change it.
    if (e == nullptr || e->name_ != name_ || e->given_ != given_) return false;
    if (given_) return cv::norm(e->reference_, reference_, cv::NORM_L1) == 0;
    std::swap(reference_, e->reference_);
    std::swap(reference_cells_, e->reference_cells_);
    learned_ = e->learned_;
    learning_since_ = e->learning_since_;
    return true;
}

double ReferenceChangeCheck::gain() {
    if (reference_cells_.empty())
        cv::resize(reference_, reference_cells_, {kGainColumns, kGainRows}, 0, 0, cv::INTER_AREA);
    cv::resize(blurred_, cells_, {kGainColumns, kGainRows}, 0, 0, cv::INTER_AREA);
    cv::resize(motion_.moving(), moving_cells_, {kGainColumns, kGainRows}, 0, 0, cv::INTER_AREA);
    ratios_.clear();
    for (int y = 0; y < kGainRows; ++y) {
        for (int x = 0; x < kGainColumns; ++x) {
            const double now = cells_.at<std::uint8_t>(y, x);
            if (moving_cells_.at<std::uint8_t>(y, x) != 0 || now < kDarkestCell) continue;
            ratios_.push_back(reference_cells_.at<float>(y, x) / now);
        }
    }
    // Too few still cells to say (the picture is mostly moving or black): as it is.
    if (ratios_.size() < static_cast<std::size_t>(kGainColumns * kGainRows / 4)) return 1.0;
    const auto middle = ratios_.begin() + static_cast<std::ptrdiff_t>(ratios_.size() / 2);
    std::nth_element(ratios_.begin(), middle, ratios_.end());
    if (std::abs(*middle - 1.0) < kGainDeadBand) return 1.0;
    return std::clamp(*middle, kMinGain, kMaxGain);
}

bool ReferenceChangeCheck::still() {
    // A change of the lighting is no movement, but the frames averaged must be lit alike.
    if (motion_.lighting_changed()) return false;
    const double total = static_cast<double>(MotionMap::kWidth) * MotionMap::kHeight;
    for (const auto& r : regions_) {
        // What moves now, and what arrived or left lately (a place someone stood at start-up).
        if (motion_.moved_share(r.mask) >= min_area_) return false;
        if (r.mask.empty()) {
            motion_.moving().copyTo(still_);
        } else {
            cv::bitwise_and(motion_.moving(), r.mask, still_);
        }
        if (cv::countNonZero(still_) / total >= min_area_) return false;
    }
    return true;
}

void ReferenceChangeCheck::analyse(const ingest::Frame& frame, std::vector<Observation>& out) {
    cv::GaussianBlur(motion_.gray(), blurred_, {5, 5}, 0);
    if (learned_ < kLearnFrames) {
        // No reference picture given: the scene at start-up is taken as clean (or closed), once
        // nothing moves in it. The first frames were taken whatever was in them: a cook walking
        // across the floor then was `dirty` once gone, until the next restart.
        reference_cells_.release();
        // A zone where something always moves (a hood fan, steam, a busy service after a reload)
        // has no still frames in a row: after a while the frames are taken as they come, as they
        // always were, rather than leave the check off with nothing said. What moves is masked
        // out when the picture is judged anyway.
        if (!learning_since_) learning_since_ = frame.steady;
        if (frame.steady - *learning_since_ < kLearnPatience && !still()) {
            learned_ = 0;
            for (const auto& r : regions_) out.push_back(observation(name_, label_, r));
            return;
        }
        if (learned_ == 0) {
            blurred_.convertTo(reference_, CV_32F);
        } else {
            cv::accumulateWeighted(blurred_, reference_, 1.0 / (learned_ + 1));
        }
        ++learned_;
        for (const auto& r : regions_) out.push_back(observation(name_, label_, r));
        return;
    }
    if (const double g = gain(); g != 1.0) blurred_.convertTo(blurred_, CV_8U, g);
    reference_.convertTo(diff_, CV_8U);
    cv::absdiff(blurred_, diff_, diff_);
    cv::threshold(diff_, changed_, kChangeLevel, 255, cv::THRESH_BINARY);
    // What moves is a person passing, not something left behind.
    cv::bitwise_not(motion_.moving(), still_);
    cv::bitwise_and(changed_, still_, changed_);
    for (const auto& r : regions_) {
        Observation o = observation(name_, label_, r);
        o.boxes = motion_.blobs(changed_, r.mask, min_area_, label_);
        for (const auto& b : o.boxes) o.score = std::max(o.score, b.score);
        o.present = !o.boxes.empty();
        out.push_back(std::move(o));
    }
}

}  // namespace kg::vision
