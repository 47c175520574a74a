#pragma once
// Frames kept for labelling: one camera's frames, unannotated and at the size the checks see
// them, one every so often. They are what a canteen labels to measure the checks on its own
// kitchen and to fine-tune the models (models/README.md, "Your own kitchen's photos"); event
// snapshots are no substitute, since they show only what the checks already found.
//
// Every camera's frames share one store rooted at training_frames.path, under one size and age
// budget, as <camera>/images/<camera>_<YYYY-MM-DD>_<HHMMSS>.jpg: the layout `kitchen-eval --data
// <path>/<camera>` and the training scripts' `--site` read. The store manages only files named so
// (is_training_frame): a person's labels, wherever a labelling tool puts them, are never counted
// or deleted.

#include <cstdint>
#include <opencv2/core/mat.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/time.hpp"
#include "evidence/evidence_store.hpp"
#include "rules/schedule.hpp"

namespace kg::evidence {

// True for "<camera>/images/<camera>_<YYYY-MM-DD>_<HHMMSS>[-<n>].jpg": the files the gateway
// saved, and so the only ones its budget may delete.
bool is_training_frame(const std::string& relative);

struct TrainingFrameOptions {
    std::string camera;  // camera id: its folder and the start of each file name
    Duration every{std::chrono::minutes(10)};
    int jpeg_quality = 95;
};

class TrainingFrames {
public:
    // `store` is the site's training frame store (managing is_training_frame files); `schedule`
    // (may be null: always) gates saving to the times it is active. The first frame is due an
    // interval after the newest this camera already has, so restarts do not add frames.
    TrainingFrames(TrainingFrameOptions options, EvidenceStore& store, const rules::Calendar& calendar,
                   const rules::Schedule* schedule);

    // Analysis side: saves `image` (BGR) if a frame is due at `time`. Returns nothing when none
    // was due, else the store's result (the file, relative to the store's root, or why it was
    // not kept). A failed save is not retried before the next interval: a full disk would
    // otherwise cost an encode on every frame.
    std::optional<StoreResult> offer(const cv::Mat& image, TimePoint time);

    std::filesystem::path images_folder() const;

private:
    TrainingFrameOptions options_;
    EvidenceStore& store_;
    const rules::Calendar& calendar_;
    const rules::Schedule* schedule_;
    std::optional<TimePoint> last_;   // the last frame saved or tried; none: due at once
    std::vector<std::uint8_t> jpeg_;  // reused between saves
};

}  // namespace kg::evidence
