#include "common/writable_folder.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace kg {

namespace {

// A file is made in a folder only with search permission as well (a `chmod -R 660`).
std::string unwritable_existing(const std::filesystem::path& folder) {
    std::error_code ec;
    if (!std::filesystem::is_directory(folder, ec)) {
        if (ec) return ec.message();
        return std::filesystem::exists(folder, ec) ? "not a folder" : "not there";
    }
    if (::access(folder.c_str(), W_OK | X_OK) != 0) return std::strerror(errno);
    return "";
}

}  // namespace

std::string unwritable_folder(const std::string& folder) {
    std::error_code ec;
    std::filesystem::create_directories(folder, ec);
    return unwritable_existing(folder);
}

std::string unwritable_folder_as_is(const std::string& folder) {
    std::filesystem::path path = std::filesystem::absolute(folder);
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) return unwritable_existing(path);
    // Up to the nearest that is there: it must be a folder this process can make the rest in.
    for (auto above = path.parent_path(); !above.empty(); above = above.parent_path()) {
        if (std::filesystem::exists(above, ec)) {
            const auto why = unwritable_existing(above);
            return why.empty() ? "" : "not there, and " + above.string() + " cannot take it: " + why;
        }
        if (above == above.root_path()) break;
    }
    return "not there, nor any folder above it";
}

std::string unwritable_file_as_is(const std::string& file) {
    const auto folder = std::filesystem::absolute(file).parent_path().string();
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) return unwritable_folder_as_is(folder);
    if (std::filesystem::is_directory(file, ec)) return "a folder, not a file";
    if (::access(file.c_str(), W_OK) != 0) return std::strerror(errno);
    // SQLite writes beside it (its -wal and -shm files, a journal): the folder too.
    return unwritable_folder_as_is(folder);
}

}  // namespace kg
