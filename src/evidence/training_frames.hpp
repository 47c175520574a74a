#pragma once
// Frames kept for labelling: one camera's frames, unannotated and at the size the checks see
// them, one every so often. They are what a canteen labels to measure the checks on its own
// kitchen and to fine-tune the models (models/README.md, "Your own kitchen's photos"); event
// snapshots are no substitute, since they show only what the checks already found.
//
// Each camera's frames go to <folder>/images/, the layout `kitchen-eval --data <folder>` and the
// training scripts' `--site` read, under their own size and age budget. Only images/ is managed:
// labels/ beside it, where a person's work goes, is never touched.

#include <filesystem>
#include <opencv2/core/mat.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/time.hpp"
#include "evidence/evidence_store.hpp"
#include "rules/schedule.hpp"

namespace kg::evidence {

struct TrainingFrameOptions {
    std::filesystem::path folder;  // <training_frames.path>/<camera id>
    std::string camera;            // camera id, the start of each file name
    Duration every{std::chrono::minutes(10)};
    std::uint64_t max_bytes = std::uint64_t{1} << 30;
    Duration max_age{std::chrono::hours(24 * 30)};
    int jpeg_quality = 95;
};

class TrainingFrames {
public:
    // `schedule` (may be null: always) gates saving to the times it is active.
    TrainingFrames(TrainingFrameOptions options, const rules::Calendar& calendar,
                   const rules::Schedule* schedule);

    // Analysis side: saves `image` (BGR) if a frame is due at `time`. Returns nothing when none
    // was due, else the store's result (the file, relative to images/, or why it was not kept).
    // A failed save is not retried before the next interval: a full disk would otherwise cost an
    // encode on every frame.
    std::optional<StoreResult> offer(const cv::Mat& image, TimePoint time);

    // Supervisor side: deletes frames past the age limit.
    void expire(TimePoint now) { store_.expire(now); }

    std::size_t files() const { return store_.files(); }
    std::filesystem::path images_folder() const { return store_.root(); }

private:
    TrainingFrameOptions options_;
    const rules::Calendar& calendar_;
    const rules::Schedule* schedule_;
    EvidenceStore store_;
    TimePoint next_{};                // the epoch: the first frame in schedule is saved at once
    std::vector<std::uint8_t> jpeg_;  // reused between saves
};

}  // namespace kg::evidence
