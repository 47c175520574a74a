#pragma once
// Where the picture moves: a background model (MOG2) on a small grey copy of the frame, shared by
// the motion-gated detectors and the region checks. Works on infrared (grey) night pictures too.
// A change of the whole picture at once (lights switched, the camera's day/night switch, its
// exposure) is no movement: as Frigate's `lightning_threshold`, when most of the picture changes
// in one frame the background is learned again from that frame and nothing is reported as moving.

#include <opencv2/video/background_segm.hpp>
#include <vector>

#include "rules/zones.hpp"
#include "vision/check.hpp"

namespace kg::vision {

class FramePasses;

class MotionMap {
public:
    // `passes`: the grey picture is read from there (converted once per frame for every reader);
    // none: converted here.
    explicit MotionMap(FramePasses* passes = nullptr);
    // Updates the model with this frame; afterwards foreground() marks what moved.
    void update(const cv::Mat& bgr);
    // At a reload that keeps the camera's stream going: the background the map of the run before
    // learned from it (MOG2 takes its history, 200 frames, to learn one: made afresh, the first
    // minutes after a reload saw movement everywhere the scene had changed since the start).
    // This map's frame passes are kept.
    void take_state_from(MotionMap& earlier);
    const cv::Mat& foreground() const { return foreground_; }  // 0/255 at kWidth x kHeight
    // What changed since the previous frame (0/255): moving now, unlike foreground(), which also
    // marks what arrived recently and stayed.
    const cv::Mat& moving() const { return moving_; }
    const cv::Mat& gray() const { return small_; }
    // The share of the picture that moved in this frame (computed once per frame: every
    // motion-gated detector reads it).
    double moved_fraction() const { return moved_fraction_; }
    // This frame changed as a whole (lighting): foreground() and moving() are empty for it.
    bool lighting_changed() const { return lighting_changed_; }
    // The share of the picture that moved inside `region` (a region_mask(); empty: anywhere).
    double moved_share(const cv::Mat& region) const;
    // Boxes around blobs of `binary` larger than `min_area` (share of the picture) inside `region`
    // (a region_mask(); empty: the whole picture).
    std::vector<Box> blobs(const cv::Mat& binary, const cv::Mat& region, double min_area,
                           const std::string& label) const;
    // A polygon as a 0/255 mask at this map's size, made once per region, not per frame; empty for
    // an empty polygon (the whole picture).
    static cv::Mat region_mask(const rules::Polygon& polygon);

    static constexpr int kWidth = 320, kHeight = 180;
    // The share of the picture that, changed in one frame, is taken for a lighting change. A body
    // seen by a ceiling camera covers far less; Frigate's default is 0.8.
    static constexpr double kLightingShare = 0.7;

private:
    FramePasses* passes_;
    cv::Ptr<cv::BackgroundSubtractorMOG2> model_;
    cv::Mat gray_, small_, previous_, foreground_, moving_, kernel_;
    double moved_fraction_ = 0;
    bool lighting_changed_ = false;
    mutable cv::Mat scratch_;
    mutable std::vector<std::vector<cv::Point>> contours_;
};

}  // namespace kg::vision
