#pragma once
// The folder kitchen-eval --write-labels fills: one YOLO label file per image (eval/dataset.hpp's
// yolo_label_lines). A person corrects these files by hand afterwards, so a run writes either all of
// them or none: everything that can be known before the detector runs is checked first, the files
// are written into a hidden folder inside it, and only commit() puts them in place.

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "vision/detection.hpp"

namespace kg::eval {

class LabelFolder {
public:
    // Throws std::runtime_error, before anything is written, when: two of `images` would write one
    // label file (a.jpg and a.png, or A.jpg and a.png on a file system blind to case, naming both); a
    // label file of one of them is already in `dir`; one of `labels` (what the detector can give)
    // has no class id in `ids`; or `dir` cannot be written in. Makes `dir` when it is absent.
    LabelFolder(std::filesystem::path dir, const std::vector<std::string>& images,
                const std::vector<std::string>& labels, std::map<std::string, int> ids);
    // Without commit(): removes what was written; `dir` is as it was (removed if this made it).
    ~LabelFolder();
    LabelFolder(const LabelFolder&) = delete;
    LabelFolder& operator=(const LabelFolder&) = delete;

    // `image` must be one of the constructor's.
    void write(const std::string& image, const std::vector<vision::Detection>& found);
    // Puts the files written into `dir`, taken back out if one cannot be moved.
    void commit();

    static std::string file_name(const std::string& image);  // "x/a.jpg" -> "a.txt"

private:
    std::filesystem::path dir_, staging_;
    std::map<std::string, int> ids_;
    bool committed_ = false;
    std::filesystem::path made_;  // the highest folder this made (`dir` or a parent), or empty
    void discard();
};

}  // namespace kg::eval
