#include "evidence/evidence_store.hpp"

#include <fmt/format.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "common/durable_file.hpp"

namespace kg::evidence {
namespace fs = std::filesystem;

namespace {

TimePoint file_time(const fs::path& p) {
    std::error_code ec;
    const auto ft = fs::last_write_time(p, ec);
    if (ec) return Clock::now();
    return std::chrono::time_point_cast<Clock::duration>(std::chrono::file_clock::to_sys(ft));
}

}  // namespace

std::optional<std::uint64_t> EvidenceStore::disk_free(const fs::path& path) {
    struct statvfs st {};
    if (::statvfs(path.c_str(), &st) != 0) return std::nullopt;
    return std::uint64_t{st.f_bavail} * st.f_frsize;
}

EvidenceStore::EvidenceStore(fs::path root, std::uint64_t max_bytes, Duration max_age, Manages manages,
                             std::uint64_t min_free, FreeSpace free_space, bool prune_folders)
    : root_(std::move(root)),
      max_bytes_(max_bytes),
      max_age_(max_age),
      manages_(std::move(manages)),
      min_free_(min_free),
      free_space_(std::move(free_space)),
      prune_folders_(prune_folders) {
    std::error_code ec;
    fs::create_directories(root_, ec);  // failure shows on the first write, with the reason
    std::vector<fs::path> unfinished;
    for (fs::recursive_directory_iterator it(root_, ec), end; !ec && it != end; it.increment(ec)) {
        if (!it->is_regular_file(ec)) continue;
        std::string relative = fs::relative(it->path(), root_).string();
        constexpr std::string_view kPart = ".part";
        const bool part = relative.size() > kPart.size() && relative.ends_with(kPart);
        if (part) relative.resize(relative.size() - kPart.size());
        if (manages_ && !manages_(relative)) continue;
        if (part) {
            unfinished.push_back(it->path());
            continue;
        }
        const auto size = it->file_size(ec);
        if (ec) continue;
        const auto written = file_time(it->path());
        files_[{written, relative}] = {size, written};
        bytes_ += size;
    }
    for (const auto& p : unfinished) fs::remove(p, ec);
}

void EvidenceStore::erase_oldest() {
    auto it = files_.begin();
    std::error_code ec;
    fs::remove(root_ / it->first.second, ec);
    bytes_ -= it->second.size;
    const std::string relative = it->first.second;
    files_.erase(it);
    prune(relative);
}

void EvidenceStore::prune(const std::string& relative) {
    if (!prune_folders_) return;
    for (fs::path folder = fs::path(relative).parent_path(); folder.has_parent_path();
         folder = folder.parent_path()) {
        if (writing_.count(folder.string()) != 0) return;
        std::error_code ec;
        // Only an empty one: remove() of a folder fails on one that holds anything (a person's file).
        if (!fs::is_empty(root_ / folder, ec) || ec || !fs::remove(root_ / folder, ec) || ec) return;
    }
}

void EvidenceStore::end_write(const std::string& relative) {
    const auto it = writing_.find(fs::path(relative).parent_path().string());
    if (it != writing_.end() && --it->second <= 0) writing_.erase(it);
}

void EvidenceStore::release(const std::string& relative) {
    std::lock_guard lock(mutex_);
    end_write(relative);
}

bool EvidenceStore::below_floor(std::uint64_t size) const {
    if (min_free_ == 0 || !free_space_) return false;
    const auto free = free_space_(root_);
    return free && *free < size + min_free_;  // unknown (no such folder yet): the write says why
}

std::optional<std::string> EvidenceStore::make_room(std::uint64_t size) {
    if (size > max_bytes_) {
        return fmt::format("{} bytes do not fit the budget of {} bytes of {}", size, max_bytes_,
                           root_.string());
    }
    while (!files_.empty() && bytes_ + size > max_bytes_) erase_oldest();
    // Each deletion is seen on the disk at once, so the free space is asked again after each.
    while (!files_.empty() && below_floor(size)) erase_oldest();
    if (below_floor(size)) {
        const auto free = free_space_(root_).value_or(0);
        return fmt::format(
            "the disk holding {} has {} bytes free: {} more would leave less than the {} "
            "bytes kept free (min_free), and no older file of the folder is left to delete",
            root_.string(), free, size, min_free_);
    }
    return std::nullopt;
}

StoreResult EvidenceStore::reserve(const std::string& relative, std::uint64_t size) {
    std::lock_guard lock(mutex_);
    StoreResult r;
    if (auto why = make_room(size)) {
        r.error = std::move(*why);
        return r;
    }
    std::error_code ec;
    const auto folder = (root_ / relative).parent_path();
    if (fs::create_directories(folder, ec)) {
        // A camera's and a day's folder, for the gateway's user and group only (the umask's 0755
        // let every local user list the events' files).
        for (auto f = folder; f.string().size() > root_.string().size(); f = f.parent_path()) {
            std::error_code mode_error;
            fs::permissions(f, fs::perms(0750), fs::perm_options::replace, mode_error);
        }
    }
    if (ec) {
        r.error = fmt::format("cannot create {}: {}", folder.string(), ec.message());
        return r;
    }
    ++writing_[fs::path(relative).parent_path().string()];
    r.ok = true;
    r.path = relative;
    return r;
}

void EvidenceStore::adopt(const std::string& relative) {
    std::lock_guard lock(mutex_);
    end_write(relative);
    std::error_code ec;
    const auto size = fs::file_size(root_ / relative, ec);
    if (ec) return;
    const TimePoint now = Clock::now();
    const TimePoint at = files_.empty() ? now : std::max(now, files_.rbegin()->first.first + Duration(1));
    files_[{at, relative}] = {size, now};
    bytes_ += size;
    // A clip may come out larger than reserved: the budget and the floor still hold afterwards.
    while (bytes_ > max_bytes_ && files_.size() > 1) erase_oldest();
    while (files_.size() > 1 && below_floor(0)) erase_oldest();
}

std::vector<std::string> EvidenceStore::remove(const std::string& relative) {
    std::lock_guard lock(mutex_);
    std::vector<std::string> removed;
    for (const auto& name : {relative, relative + ".part"}) {
        if (fs::remove(root_ / name)) removed.push_back(name);  // throws, naming the file
    }
    for (auto it = files_.begin(); it != files_.end(); ++it) {
        if (it->first.second != relative) continue;
        bytes_ -= std::min(bytes_, it->second.size);
        files_.erase(it);
        break;
    }
    if (!removed.empty()) prune(relative);
    return removed;
}

StoreResult EvidenceStore::write(const std::string& relative, std::string_view data) {
    StoreResult r = reserve(relative, data.size());
    if (!r.ok) return r;
    const fs::path target = root_ / relative;
    const fs::path partial = target.string() + ".part";
    // Flushed before the rename and the folder after it: after a power cut the name an event gave
    // the room must not point at an empty file, or at nothing.
    auto error = write_file_durably(partial, data);
    if (!error) error = rename_file(partial, target);
    if (error) {
        std::error_code ec;
        fs::remove(partial, ec);
        release(relative);
        return {false, "", fmt::format("cannot write {}: {}", target.string(), *error), ""};
    }
    // The file is whole and named: a folder that cannot be flushed (a failing disk) leaves it kept,
    // said, rather than deleted.
    if (auto why = sync_parent_folder(target)) r.warning = *why;
    adopt(relative);
    return r;
}

void EvidenceStore::expire(TimePoint now) {
    std::lock_guard lock(mutex_);
    // By each file's own write time, over all of them: the order (the map's key) puts a file
    // written after one dated ahead of the clock behind it, and stopping at the first one not yet
    // due kept every later staff photo until the clock caught up with that one. Rewriting the
    // dates instead deleted a box's whole evidence when NTP set a clock that had booted behind.
    // Called once a minute; a walk over some thousands of entries.
    //
    // A file ahead of the clock keeps its date (above), except when this run saw the clock step
    // back: then it was written while the clock ran ahead, and kept so it stayed until the clock
    // caught up with it, a year past max_age for a clock a year fast (the review of the 53rd
    // session). It is dated now, and so on disk, which a later run then reads. A clock booted
    // behind only steps forward.
    constexpr auto kSlack = std::chrono::minutes(5);
    if (latest_now_ && now + kSlack < *latest_now_) {
        std::vector<std::pair<TimePoint, std::string>> ahead;
        for (const auto& [key, entry] : files_)
            if (entry.written > now + kSlack) ahead.push_back(key);
        // Re-keyed too: in the order of age (the size budget's), they are older than anything
        // written since the step.
        for (const auto& key : ahead) {
            auto node = files_.extract(key);
            node.key().first = now;
            node.mapped().written = now;
            std::error_code ec;
            fs::last_write_time(root_ / key.second,
                                std::chrono::file_clock::from_sys(
                                    std::chrono::time_point_cast<std::chrono::system_clock::duration>(now)),
                                ec);
            files_.insert(std::move(node));
        }
    }
    latest_now_ = now;
    for (auto it = files_.begin(); it != files_.end();) {
        if (now - it->second.written <= max_age_) {
            ++it;
            continue;
        }
        std::error_code ec;
        fs::remove(root_ / it->first.second, ec);
        bytes_ -= std::min(bytes_, it->second.size);
        const std::string relative = it->first.second;
        it = files_.erase(it);
        prune(relative);
    }
}

std::uint64_t EvidenceStore::bytes() const {
    std::lock_guard lock(mutex_);
    return bytes_;
}

std::optional<TimePoint> EvidenceStore::newest(const std::string& prefix) const {
    std::lock_guard lock(mutex_);
    for (auto it = files_.rbegin(); it != files_.rend(); ++it) {
        if (it->first.second.starts_with(prefix)) return it->first.first;
    }
    return std::nullopt;
}

std::optional<std::string> EvidenceStore::find_named(const std::string& name) const {
    if (name.empty()) return std::nullopt;
    std::lock_guard lock(mutex_);
    // A scan: it answers an operator's request, a few thousand files at most, never a frame.
    for (auto it = files_.rbegin(); it != files_.rend(); ++it) {
        const auto& path = it->first.second;
        if (path.ends_with(name) &&
            (path.size() == name.size() || path[path.size() - name.size() - 1] == '/'))
            return path;
    }
    return std::nullopt;
}

std::size_t EvidenceStore::files() const {
    std::lock_guard lock(mutex_);
    return files_.size();
}

}  // namespace kg::evidence
