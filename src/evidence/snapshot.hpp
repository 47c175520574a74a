#pragma once
// The annotated JPEG that proves an event: the frame with the event's boxes and labels, the zone
// outline, and the camera's name and the time burned in, as inspectors expect on evidence.

#include <opencv2/core/mat.hpp>
#include <string>
#include <vector>

#include "events/event.hpp"

namespace kg::evidence {

using Outline = std::vector<cv::Point2f>;  // normalised polygon

struct SnapshotText {
    std::string camera_name;
    std::string time_text;  // local time as the canteen reads it
};

// Returns JPEG bytes. `canvas` is reused between calls.
std::string annotated_jpeg(const cv::Mat& frame, const events::Event& event,
                           const std::vector<Outline>& zones, const SnapshotText& text, cv::Mat& canvas,
                           int quality = 85);

}  // namespace kg::evidence
