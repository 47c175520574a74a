#pragma once
// OpenCV's own thread pool (TBB in Debian's build) splits every network pass and resize over all
// the cores. The gateway bounds the checks' CPU by its analysis threads (`analysis_threads`, one
// less than the cores by default, so that decoding and the parents' streams keep a core): with
// OpenCV's pool a single analysis thread took both cores of a 2-core box in bursts, and spent about
// a fifth more CPU for the same frames (its workers' hand-offs and spinning).

namespace kg::vision {

// From here, OpenCV runs its loops on the thread that calls it, for the whole process. Called once
// at start-up, before any analysis thread exists.
void run_opencv_on_callers_threads();

}  // namespace kg::vision
