#include "vision/classic/classic_detectors.hpp"

#include <opencv2/imgproc.hpp>

namespace kg::vision::classic {
namespace {

cv::Rect clip(const cv::Rect& r, const cv::Mat& m) { return r & cv::Rect(0, 0, m.cols, m.rows); }

Detection normalised(const cv::Rect& r, const cv::Mat& m, int cls, const std::string& label, float score) {
    Detection d;
    d.x = static_cast<float>(r.x) / m.cols;
    d.y = static_cast<float>(r.y) / m.rows;
    d.w = static_cast<float>(r.width) / m.cols;
    d.h = static_cast<float>(r.height) / m.rows;
    d.class_id = cls;
    d.label = label;
    d.score = score;
    return d;
}

}  // namespace

double skin_fraction(const cv::Mat& ycrcb, const cv::Rect& region) {
    const cv::Rect r = clip(region, ycrcb);
    if (r.area() == 0) return 0.0;
    int skin = 0;
    for (int y = r.y; y < r.y + r.height; ++y) {
        const auto* p = ycrcb.ptr<cv::Vec3b>(y);
        for (int x = r.x; x < r.x + r.width; ++x) {
            const int cr = p[x][1], cb = p[x][2];
            if (cr >= 133 && cr <= 173 && cb >= 77 && cb <= 127) ++skin;
        }
    }
    return static_cast<double>(skin) / r.area();
}

MaskDetector::MaskDetector(const std::string& dir, std::shared_ptr<FrontalFaces> faces)
    : faces_(faces ? std::move(faces) : std::make_shared<FrontalFaces>(dir)) {}

void MaskDetector::detect(const cv::Mat& bgr, std::vector<Detection>& out) {
    out.clear();
    const auto& found = faces_->find(bgr);
    if (found.empty()) return;
    cv::cvtColor(bgr, ycrcb_, cv::COLOR_BGR2YCrCb);
    for (const auto& f : found) {
        // Forehead and eyes versus nose and mouth, in the face box's own proportions.
        const cv::Rect upper(f.x + f.width / 5, f.y + f.height * 3 / 20, f.width * 3 / 5, f.height * 3 / 10);
        const cv::Rect lower(f.x + f.width / 4, f.y + f.height * 3 / 5, f.width / 2, f.height * 3 / 10);
        const double top = skin_fraction(ycrcb_, upper), bottom = skin_fraction(ycrcb_, lower);
        // A bare mouth is about as skin-like as the forehead; a mask is not skin at all.
        const double ratio = std::clamp(bottom / std::max(top, 0.15), 0.0, 1.0);
        const bool bare = ratio > 0.55;
        const float score = static_cast<float>(bare ? ratio : 1.0 - ratio);
        out.push_back(
            normalised(f, bgr, bare ? 1 : 0, bare ? "no_mask" : "with_mask", std::max(0.5f, score)));
    }
}

HeadCoveringDetector::HeadCoveringDetector(const std::string& dir, std::shared_ptr<FrontalFaces> faces)
    : frontal_(faces ? std::move(faces) : std::make_shared<FrontalFaces>(dir)) {
    load_cascade(profile_, dir, "haarcascade_profileface.xml");
}

void HeadCoveringDetector::detect(const cv::Mat& bgr, std::vector<Detection>& out) {
    out.clear();
    const auto& frontal = frontal_->find(bgr);
    found_.assign(frontal.begin(), frontal.end());
    // The profile cascade searches the grey picture the frontal search made.
    profile_.detectMultiScale(frontal_->gray(), profiles_, kScaleStep, 3, 0, FrontalFaces::min_face(bgr));
    found_.insert(found_.end(), profiles_.begin(), profiles_.end());
    if (found_.empty()) return;
    cv::cvtColor(bgr, hsv_, cv::COLOR_BGR2HSV);
    cv::cvtColor(bgr, ycrcb_, cv::COLOR_BGR2YCrCb);
    for (const auto& f : found_) {
        // The crown: a band above the face as wide as the face.
        const cv::Rect crown =
            clip(cv::Rect(f.x, f.y - f.height * 2 / 5, f.width, f.height * 2 / 5 + f.height / 10), bgr);
        if (crown.area() == 0) continue;
        int dark = 0;
        for (int y = crown.y; y < crown.y + crown.height; ++y) {
            const auto* p = hsv_.ptr<cv::Vec3b>(y);
            for (int x = crown.x; x < crown.x + crown.width; ++x) {
                if (p[x][2] < 80) ++dark;  // hair is dark whatever its hue
            }
        }
        const double hair = static_cast<double>(dark) / crown.area();
        const double skin = skin_fraction(ycrcb_, crown);
        const double bare_score = std::clamp(std::max(hair * 1.6, skin * 1.2), 0.0, 1.0);
        const bool bare = bare_score > 0.5;
        // Report the head: the face box grown upwards to the crown.
        const cv::Rect head = clip(
            cv::Rect(f.x - f.width / 10, f.y - f.height * 2 / 5, f.width * 6 / 5, f.height * 7 / 5), bgr);
        out.push_back(normalised(head, bgr, bare ? 1 : 0, bare ? "bare" : "covered",
                                 static_cast<float>(bare ? bare_score : 1.0 - bare_score)));
    }
    non_max_suppression(out, 0.4f, true);
}

}  // namespace kg::vision::classic
