#include "evidence/training_frames.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <opencv2/imgcodecs.hpp>
#include <regex>

namespace kg::evidence {
namespace fs = std::filesystem;

namespace {

// "cam1_2026-11-24_143005": sorts by time in a file browser and in a labelling tool, says which
// camera it came from once copied out of its folder, and gives split_site_frames.py its day.
std::string stem_for(const std::string& camera, const std::string& local_text) {
    std::string stamp = local_text;  // "2026-11-24 14:30:05"
    std::replace(stamp.begin(), stamp.end(), ' ', '_');
    stamp.erase(std::remove(stamp.begin(), stamp.end(), ':'), stamp.end());
    return camera + "_" + stamp;
}

}  // namespace

bool is_training_frame(const std::string& relative) {
    static const std::regex kName(R"(([^/]+)/images/\1_\d{4}-\d\d-\d\d_\d{6}(-\d+)?\.jpg)");
    return std::regex_match(relative, kName);
}

TrainingFrames::TrainingFrames(TrainingFrameOptions options, EvidenceStore& store,
                               const rules::Calendar& calendar, const rules::Schedule* schedule)
    : options_(std::move(options)), store_(store), calendar_(calendar), schedule_(schedule) {
    last_ = store_.newest(options_.camera + "/images/");
}

fs::path TrainingFrames::images_folder() const { return store_.root() / options_.camera / "images"; }

std::optional<StoreResult> TrainingFrames::offer(const cv::Mat& image, TimePoint time) {
    // Within an interval after the last frame: not due. Before it, the clock was set back: due.
    if (image.empty() || (last_ && time >= *last_ && time - *last_ < options_.every)) return std::nullopt;
    if (schedule_ != nullptr && !calendar_.active(*schedule_, time)) return std::nullopt;
    last_ = time;

    if (!cv::imencode(".jpg", image, jpeg_, {cv::IMWRITE_JPEG_QUALITY, options_.jpeg_quality})) {
        return StoreResult{false, "",
                           fmt::format("{}: the frame could not be encoded as JPEG", options_.camera), ""};
    }
    // A clock set back (NTP after a power cut) can repeat a second: never replace a kept frame,
    // nor give a new one the name of a labelled one.
    const std::string stem = stem_for(options_.camera, calendar_.local_text(time));
    const auto taken = [&](const std::string& name) {
        std::error_code ec;
        return fs::exists(images_folder() / (name + ".jpg"), ec) ||
               fs::exists(store_.root() / options_.camera / "labels" / (name + ".txt"), ec);
    };
    std::string name = stem;
    for (int n = 2; taken(name); ++n) name = fmt::format("{}-{}", stem, n);
    return store_.write(options_.camera + "/images/" + name + ".jpg",
                        {reinterpret_cast<const char*>(jpeg_.data()), jpeg_.size()});
}

}  // namespace kg::evidence
