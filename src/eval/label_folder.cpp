#include "eval/label_folder.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>

#include "eval/dataset.hpp"

namespace kg::eval {
namespace fs = std::filesystem;

std::string LabelFolder::file_name(const std::string& image) {
    return fs::path(image).stem().string() + ".txt";
}

LabelFolder::LabelFolder(fs::path dir, const std::vector<std::string>& images,
                         const std::vector<std::string>& labels, std::map<std::string, int> ids)
    : ids_(std::move(ids)) {
    if (!dir.has_filename()) dir = dir.parent_path();  // "labels/"
    dir_ = dir;
    for (const auto& label : labels) {
        if (ids_.count(label) == 0) {
            throw std::runtime_error(fmt::format(
                "--write-labels: the detector gives class '{}', which --classes does not name: its "
                "boxes would have no class id (name it, or give --any-class)",
                label));
        }
    }
    std::map<std::string, std::string> by_file;
    for (const auto& image : images) {
        const auto [it, added] = by_file.emplace(file_name(image), image);
        if (!added) {
            throw std::runtime_error(
                fmt::format("--write-labels: {} and {} would both write {}: rename one of them", it->second,
                            image, it->first));
        }
    }
    if (fs::exists(dir_)) {
        if (!fs::is_directory(dir_))
            throw std::runtime_error(fmt::format("--write-labels: {} is not a folder", dir_.string()));
        for (const auto& [file, image] : by_file) {
            if (fs::exists(dir_ / file)) {
                throw std::runtime_error(fmt::format(
                    "--write-labels: {} exists (it may hold labels a person made): give an empty folder",
                    (dir_ / file).string()));
            }
        }
    }
    // A sibling: on the same file system, so that commit() is a rename.
    staging_ = fs::absolute(dir_).parent_path() /
               fmt::format(".{}.kitchen-eval-{}", dir_.filename().string(), ::getpid());
    fs::remove_all(staging_);
    fs::create_directories(staging_);
}

LabelFolder::~LabelFolder() {
    if (committed_) return;
    std::error_code ec;
    fs::remove_all(staging_, ec);
}

void LabelFolder::write(const std::string& image, const std::vector<vision::Detection>& found) {
    const auto path = staging_ / file_name(image);
    std::ofstream file(path);
    file << yolo_label_lines(found, ids_);
    if (!file.flush()) throw std::runtime_error(fmt::format("cannot write {}", path.string()));
}

void LabelFolder::commit() {
    if (!fs::exists(dir_) || (fs::is_directory(dir_) && fs::is_empty(dir_))) {
        fs::rename(staging_, dir_);  // replaces an empty folder
        committed_ = true;
        return;
    }
    // A folder with other files (a labelling tool's classes.txt, other images' labels) stays.
    std::vector<fs::path> files, moved;
    for (const auto& entry : fs::directory_iterator(staging_)) files.push_back(entry.path());
    try {
        for (const auto& from : files) {
            const auto to = dir_ / from.filename();
            if (fs::exists(to))
                throw std::runtime_error(fmt::format("--write-labels: {} appeared meanwhile", to.string()));
            fs::rename(from, to);
            moved.push_back(to);
        }
    } catch (...) {
        std::error_code ec;
        for (const auto& to : moved) fs::rename(to, staging_ / to.filename(), ec);
        throw;
    }
    committed_ = true;
    std::error_code ec;
    fs::remove_all(staging_, ec);
}

}  // namespace kg::eval
