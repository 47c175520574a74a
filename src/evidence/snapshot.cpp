#include "evidence/snapshot.hpp"

#include <fmt/format.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

namespace kg::evidence {
namespace {

const cv::Scalar kBoxColour(0, 0, 255);     // red: the violation
const cv::Scalar kZoneColour(0, 200, 255);  // amber: where the rule applies
const cv::Scalar kWhite(255, 255, 255);
const cv::Scalar kBlack(0, 0, 0);

void label(cv::Mat& img, const std::string& text, cv::Point at, double scale, const cv::Scalar& bg) {
    int baseline = 0;
    const auto size = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, scale, 1, &baseline);
    at.y = std::max(at.y, size.height + 4);
    cv::rectangle(img, {at.x, at.y - size.height - 4}, {at.x + size.width + 4, at.y + baseline}, bg,
                  cv::FILLED);
    cv::putText(img, text, {at.x + 2, at.y - 2}, cv::FONT_HERSHEY_SIMPLEX, scale, kWhite, 1, cv::LINE_AA);
}

}  // namespace

std::string annotated_jpeg(const cv::Mat& frame, const events::Event& event,
                           const std::vector<Outline>& zones, const SnapshotText& text, cv::Mat& canvas,
                           int quality) {
    frame.copyTo(canvas);
    const float w = static_cast<float>(canvas.cols), h = static_cast<float>(canvas.rows);
    const double scale = std::max(0.4, canvas.rows / 720.0);
    const int thickness = std::max(1, canvas.rows / 240);

    for (const auto& zone : zones) {
        std::vector<cv::Point> pts;
        pts.reserve(zone.size());
        for (const auto& p : zone) pts.emplace_back(cvRound(p.x * w), cvRound(p.y * h));
        if (pts.size() >= 2) cv::polylines(canvas, pts, true, kZoneColour, thickness, cv::LINE_AA);
    }
    for (const auto& b : event.boxes) {
        const cv::Rect r(cvRound(b.x * w), cvRound(b.y * h), cvRound(b.w * w), cvRound(b.h * h));
        cv::rectangle(canvas, r, kBoxColour, thickness + 1);
        label(canvas, fmt::format("{} {:.0f}%", b.label, b.score * 100), r.tl(), scale * 0.6, kBoxColour);
    }
    // Header: what, where, when; readable on a phone screen.
    const std::string header =
        fmt::format("{} | {}/{} | {}", text.camera_name, event.check, event.label, text.time_text);
    label(canvas, header, {0, 0}, scale * 0.7, kBlack);

    std::vector<std::uint8_t> buffer;
    cv::imencode(".jpg", canvas, buffer, {cv::IMWRITE_JPEG_QUALITY, quality});
    return std::string(buffer.begin(), buffer.end());
}

}  // namespace kg::evidence
