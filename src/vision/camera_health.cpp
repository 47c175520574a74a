#include "vision/camera_health.hpp"

#include <algorithm>
#include <chrono>
#include <opencv2/imgproc.hpp>
#include <utility>

#include "vision/frame_passes.hpp"

namespace kg::vision {
namespace {

// The statistics are taken on a 160x90 grey image: enough to see a scene, cheap at any input size.
constexpr int kSmallWidth = 160;
constexpr int kSmallHeight = 90;
constexpr int kCell = 10;                     // 16x9 grid of 10x10 cells
constexpr double kCellEdgeFloor = 1.0;        // grey levels per pixel: less is no detail
constexpr double kBlackMaxStddev = 18.0;      // a dark picture with real content is not "black"
constexpr double kCoveredEdgeRatio = 0.35;    // covered: detail fell below this share of the baseline
constexpr double kCoveredEdgeAbsolute = 0.8;  // ... or below this when no baseline is learned yet
// The baseline rises quickly, as a healthy frame with more detail is proof of what the camera shows:
// per frame, ~25 s to adapt at 2 fps. It falls over hours: followed as quickly, a lens fogging over
// (steam) or smeared in a few minutes was learned as the normal picture and never reported. The
// price: a scene that loses detail for good (lights dimmed, the camera turned to a wall) is learned
// in hours, not seconds; if it loses so much that it reads as covered, it is reported until its
// detail comes back, as a sudden change always was (covered frames teach nothing: a lens covered
// on purpose must stay reported). Timed, not per frame, as the analysis rate varies.
constexpr double kBaselineRate = 0.02;
constexpr auto kBaselineFallTime = std::chrono::hours(1);
constexpr auto kBaselineLongestStep = std::chrono::minutes(1);  // after an outage: one frame's worth

Observation make(const std::string& label, bool present) {
    Observation o;
    o.check = CameraHealthCheck::kName;
    o.label = label;
    o.present = present;
    o.score = present ? 1.0f : 0.0f;
    o.placed = true;
    return o;
}

}  // namespace

CameraHealthCheck::CameraHealthCheck(const config::Health& cfg, FramePasses* passes)
    : cfg_(cfg), passes_(passes) {}

void CameraHealthCheck::measure(const cv::Mat& bgr) {
    if (passes_ == nullptr) cv::cvtColor(bgr, gray_, cv::COLOR_BGR2GRAY);
    cv::resize(passes_ != nullptr ? passes_->gray(bgr) : gray_, small_, cv::Size(kSmallWidth, kSmallHeight),
               0, 0, cv::INTER_AREA);

    cv::Scalar mean, stddev;
    cv::meanStdDev(small_, mean, stddev);
    measures_.mean = mean[0];
    measures_.stddev = stddev[0];

    // Scaled by 1/8 so that the magnitude reads in grey levels per pixel.
    cv::Sobel(small_, gx_, CV_32F, 1, 0, 3, 0.125);
    cv::Sobel(small_, gy_, CV_32F, 0, 1, 3, 0.125);
    cv::magnitude(gx_, gy_, magnitude_);
    measures_.edge = cv::mean(magnitude_)[0];
    int featureless = 0, cells = 0;
    for (int y = 0; y + kCell <= kSmallHeight; y += kCell) {
        for (int x = 0; x + kCell <= kSmallWidth; x += kCell) {
            ++cells;
            if (cv::mean(magnitude_(cv::Rect(x, y, kCell, kCell)))[0] < kCellEdgeFloor) ++featureless;
        }
    }
    measures_.featureless = static_cast<double>(featureless) / cells;

    if (have_previous_) {
        measures_.diff = cv::norm(small_, previous_, cv::NORM_L1) / static_cast<double>(small_.total());
    } else {
        measures_.diff.reset();
    }
    small_.copyTo(previous_);
    have_previous_ = true;
}

bool CameraHealthCheck::take_state_from(Check& earlier) {
    // What the stream showed, whatever the thresholds it is judged by now: a lens sharpness learned
    // again after an edit of `confirm` would be learned from a lens covered at that moment.
    auto* e = dynamic_cast<CameraHealthCheck*>(&earlier);
    if (e == nullptr) return false;
    previous_ = std::move(e->previous_);
    have_previous_ = std::exchange(e->have_previous_, false);
    same_since_ = e->same_since_;
    baseline_edge_ = e->baseline_edge_;
    previous_steady_ = e->previous_steady_;
    measures_ = e->measures_;
    return true;
}

void CameraHealthCheck::analyse(const ingest::Frame& frame, std::vector<Observation>& out) {
    measure(frame.image);
    const HealthMeasures& m = measures_;

    const bool black = m.mean <= cfg_.black_luma && m.stddev <= kBlackMaxStddev;
    const bool blank = !black && m.stddev < cfg_.blank_stddev;
    const double edge_floor = baseline_edge_ ? *baseline_edge_ * kCoveredEdgeRatio : kCoveredEdgeAbsolute;
    const bool covered = !black && !blank && m.featureless >= cfg_.covered_fraction && m.edge < edge_floor;

    const bool same = m.diff && *m.diff < cfg_.frozen_diff;
    if (!same || black || blank || covered) {
        same_since_.reset();
    } else if (!same_since_) {
        same_since_ = frame.steady;
    }
    const bool frozen = same_since_ && frame.steady - *same_since_ >= cfg_.frozen_after;

    if (!black && !blank && !covered && !same) {
        if (!baseline_edge_) {
            baseline_edge_ = m.edge;
        } else if (m.edge >= *baseline_edge_) {
            *baseline_edge_ += kBaselineRate * (m.edge - *baseline_edge_);
        } else if (previous_steady_) {
            const auto step =
                std::clamp<SteadyPoint::duration>(frame.steady - *previous_steady_, {}, kBaselineLongestStep);
            *baseline_edge_ +=
                std::chrono::duration<double>(step) / kBaselineFallTime * (m.edge - *baseline_edge_);
        }
    }
    previous_steady_ = frame.steady;

    out.push_back(make("black", black));
    out.push_back(make("blank", blank));
    out.push_back(make("covered", covered));
    out.push_back(make("frozen", frozen));
}

}  // namespace kg::vision
