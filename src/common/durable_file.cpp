#include "common/durable_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "common/fd.hpp"

namespace kg {
namespace {

std::optional<std::string> sync_open(const std::filesystem::path& path, int flags) {
    Fd fd(::open(path.c_str(), flags | O_CLOEXEC));
    if (fd.get() < 0) return std::strerror(errno);
    if (::fsync(fd.get()) != 0) return std::strerror(errno);
    if (!fd.close()) return std::strerror(errno);
    return std::nullopt;
}

}  // namespace

std::optional<std::string> write_file_durably(const std::filesystem::path& path, std::string_view data) {
    Fd file(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
    if (file.get() < 0) return std::strerror(errno);
    for (std::size_t done = 0; done < data.size();) {
        const auto n = ::write(file.get(), data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::strerror(errno);
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(file.get()) != 0) return std::strerror(errno);
    if (!file.close()) return std::strerror(errno);
    return std::nullopt;
}

std::optional<std::string> sync_file(const std::filesystem::path& path) { return sync_open(path, O_RDONLY); }

std::optional<std::string> rename_file(const std::filesystem::path& from, const std::filesystem::path& to) {
    std::error_code ec;
    std::filesystem::rename(from, to, ec);
    if (ec) return ec.message();
    return std::nullopt;
}

std::optional<std::string> sync_parent_folder(const std::filesystem::path& path) {
    const auto folder = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    if (auto why = sync_open(folder, O_RDONLY | O_DIRECTORY))
        return "cannot flush the folder " + folder.string() + ": " + *why;
    return std::nullopt;
}

}  // namespace kg
