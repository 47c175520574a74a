#include "eval/label_folder.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <random>
#include <stdexcept>

#include "eval/dataset.hpp"

namespace kg::eval {
namespace fs = std::filesystem;

std::string LabelFolder::file_name(const std::string& image) {
    return fs::path(image).stem().string() + ".txt";
}

namespace {

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// The folder as one absolute path without "." or "..": "a/b/." is "a/b", so that its parents are
// the folders above it.
fs::path absolute_folder(const fs::path& dir) {
    auto path = fs::absolute(dir).lexically_normal();
    return path.has_filename() ? path : path.parent_path();
}

}  // namespace

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
    // By the name folded to lower case: on a stick's exFAT or FAT, A.txt and a.txt are one file.
    std::map<std::string, std::string> by_file;
    for (const auto& image : images) {
        const auto [it, added] = by_file.emplace(lower(file_name(image)), image);
        if (!added) {
            throw std::runtime_error(
                fmt::format("--write-labels: {} and {} would both write {} (one file where case is not told "
                            "apart, as on FAT or exFAT): rename one of them",
                            it->second, image, file_name(image)));
        }
    }
    if (fs::exists(dir_)) {
        if (!fs::is_directory(dir_))
            throw std::runtime_error(fmt::format("--write-labels: {} is not a folder", dir_.string()));
        for (const auto& [file, image] : by_file) {
            const auto path = dir_ / file_name(image);
            if (fs::exists(path)) {
                throw std::runtime_error(fmt::format(
                    "--write-labels: {} exists (it may hold labels a person made): give an empty folder",
                    path.string()));
            }
        }
    }
    std::error_code ec;
    if (!fs::exists(dir_)) {
        // The highest folder made, so that a failed run takes away every one it made.
        made_ = absolute_folder(dir_);
        while (made_.has_parent_path() && made_.parent_path() != made_ && !fs::exists(made_.parent_path()))
            made_ = made_.parent_path();
        fs::create_directories(dir_, ec);
        if (ec) {
            made_.clear();
            throw std::runtime_error(
                fmt::format("--write-labels: cannot make the folder {}: {}", dir_.string(), ec.message()));
        }
    }
    // Inside the folder itself: on its file system whatever it is (a symlink, a mount point, a
    // stick), so that commit() is renames within one folder, and the folder keeps its owner and mode.
    // Not by the pid alone: two containers' kitchen-evals, each pid 1, may write into one volume.
    std::random_device random;
    staging_ = dir_ / fmt::format(".kitchen-eval-{}-{:08x}", ::getpid(), random());
    if (!fs::create_directory(staging_, ec) || ec) {
        const auto why = ec ? ec.message() : std::string("it exists");
        discard();
        throw std::runtime_error(fmt::format("--write-labels: cannot write in {}: {}", dir_.string(), why));
    }
}

LabelFolder::~LabelFolder() {
    if (!committed_) discard();
}

void LabelFolder::discard() {
    std::error_code ec;
    fs::remove_all(staging_, ec);
    // The folders this run made, left empty: as they were, absent.
    if (made_.empty()) return;
    for (auto dir = absolute_folder(dir_);; dir = dir.parent_path()) {
        if (!fs::is_empty(dir, ec) || ec || !fs::remove(dir, ec)) break;
        if (dir == made_ || !dir.has_parent_path() || dir.parent_path() == dir) break;
    }
}

void LabelFolder::write(const std::string& image, const std::vector<vision::Detection>& found) {
    const auto path = staging_ / file_name(image);
    std::ofstream file(path);
    file << yolo_label_lines(found, ids_);
    if (!file.flush()) throw std::runtime_error(fmt::format("cannot write {}", path.string()));
}

void LabelFolder::commit() {
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
