#include "evidence/training_frames.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <opencv2/imgcodecs.hpp>

namespace kg::evidence {
namespace fs = std::filesystem;

namespace {

// "cam1_2026-11-24_143005": sorts by time in a file browser and in a labelling tool, and says
// which camera it came from once copied out of its folder.
std::string stem_for(const std::string& camera, const std::string& local_text) {
    std::string stamp = local_text;  // "2026-11-24 14:30:05"
    std::replace(stamp.begin(), stamp.end(), ' ', '_');
    stamp.erase(std::remove(stamp.begin(), stamp.end(), ':'), stamp.end());
    return camera + "_" + stamp;
}

}  // namespace

TrainingFrames::TrainingFrames(TrainingFrameOptions options, const rules::Calendar& calendar,
                               const rules::Schedule* schedule)
    : options_(std::move(options)),
      calendar_(calendar),
      schedule_(schedule),
      store_(options_.folder / "images", options_.max_bytes, options_.max_age) {}

std::optional<StoreResult> TrainingFrames::offer(const cv::Mat& image, TimePoint time) {
    // A next frame more than an interval away means the clock was set back: due now.
    if ((time < next_ && next_ - time <= options_.every) || image.empty()) return std::nullopt;
    if (schedule_ != nullptr && !calendar_.active(*schedule_, time)) return std::nullopt;
    next_ = time + options_.every;

    if (!cv::imencode(".jpg", image, jpeg_, {cv::IMWRITE_JPEG_QUALITY, options_.jpeg_quality})) {
        return StoreResult{false, "",
                           fmt::format("{}: the frame could not be encoded as JPEG", options_.camera)};
    }
    // A clock set back (NTP after a power cut) can repeat a second: never replace a kept frame.
    const std::string stem = stem_for(options_.camera, calendar_.local_text(time));
    std::string name = stem + ".jpg";
    std::error_code ec;
    for (int n = 2; fs::exists(store_.absolute(name), ec); ++n) name = fmt::format("{}-{}.jpg", stem, n);
    return store_.write(name, {reinterpret_cast<const char*>(jpeg_.data()), jpeg_.size()});
}

}  // namespace kg::evidence
