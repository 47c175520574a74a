#pragma once
// The evidence folder (snapshots and clips) under a size and an age budget: before a file is
// written, the oldest files go until it fits, so the budget is never exceeded; files older than
// the age limit go too. The oldest files also go to keep `min_free` bytes free on the disk that holds
// the folder, which the outbox and the system's logs share: a budget larger than the disk, or a disk
// filled by something else, never fills it to the last byte. A disk too full even then, or an
// unwritable folder, is reported to the caller, which records it on the event instead of failing it.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/time.hpp"

namespace kg::evidence {

struct StoreResult {
    bool ok = false;
    std::string path;   // relative to the store's root, when ok
    std::string error;  // when !ok
    // When ok: kept, but its name may not survive a power cut (the folder could not be flushed).
    std::string warning;
};

class EvidenceStore {
public:
    // Which files under the root are the store's (a path relative to the root): only these are
    // counted and ever deleted. Other files, such as a person's labels, are left alone.
    using Manages = std::function<bool(const std::string& relative)>;
    // The bytes free to an unprivileged writer on the disk holding a path, or nothing when unknown.
    using FreeSpace = std::function<std::optional<std::uint64_t>(const std::filesystem::path&)>;
    static std::optional<std::uint64_t> disk_free(const std::filesystem::path& path);  // statvfs

    // Scans `root` for what an earlier run left, so the budget counts it; a write an earlier run
    // did not finish (its ".part" file) is deleted. `min_free` 0: no floor on the disk's free space.
    // `prune_folders`: a folder the deletion of its last file leaves empty goes too, short of the
    // root's own first level (the events' `<camera>/<date>/`: one a camera a day otherwise piled up
    // outside the budget). Not for the training frames, whose `<camera>/images/` a labelling tool
    // expects to stay.
    EvidenceStore(std::filesystem::path root, std::uint64_t max_bytes, Duration max_age, Manages manages = {},
                  std::uint64_t min_free = 0, FreeSpace free_space = disk_free, bool prune_folders = false);

    // Writes `data` at `relative` (e.g. "cam1/2026-11-24/<id>-start.jpg").
    StoreResult write(const std::string& relative, std::string_view data);
    // Makes room for a file of `size` bytes that the caller writes itself at `relative`; then
    // adopt() it (or forget it when writing failed).
    StoreResult reserve(const std::string& relative, std::uint64_t size);
    void adopt(const std::string& relative);
    // A reserved write that failed: its folder may be pruned again.
    void release(const std::string& relative);
    // Deletes the file at `relative` and an unfinished write of it (its ".part"), and stops counting
    // it. Returns what was deleted (nothing when neither existed); throws std::filesystem_error
    // naming the file when one exists and cannot be deleted.
    std::vector<std::string> remove(const std::string& relative);

    // Deletes files past the age limit. A clock seen to step back (a `now` well before an earlier
    // one's) re-dates the files then ahead of it to `now`, on disk too, so that they go max_age
    // later, not when the clock has caught up with them.
    void expire(TimePoint now);

    std::uint64_t bytes() const;
    std::size_t files() const;
    // The time the newest file whose path starts with `prefix` was written, if there is one.
    std::optional<TimePoint> newest(const std::string& prefix) const;
    // The path of the newest file named `name` (its last component) in any folder, if there is one:
    // an event's evidence by its id, also of events an earlier run wrote.
    std::optional<std::string> find_named(const std::string& name) const;
    const std::filesystem::path& root() const { return root_; }
    std::filesystem::path absolute(const std::string& relative) const { return root_ / relative; }

private:
    // Why a file of `size` bytes cannot be written, after deleting the oldest files to make room
    // for it (mutex_ held).
    std::optional<std::string> make_room(std::uint64_t size);
    bool below_floor(std::uint64_t size) const;  // writing `size` bytes would leave < min_free_
    void erase_oldest();                         // mutex_ held
    // After `relative` was deleted (mutex_ held): its emptied folders, with prune_folders_, unless a
    // reserved write is under way in one.
    void prune(const std::string& relative);
    void end_write(const std::string& relative);  // mutex_ held: reserve()'s write is over

    std::filesystem::path root_;
    std::uint64_t max_bytes_;
    Duration max_age_;
    Manages manages_;
    std::uint64_t min_free_;
    FreeSpace free_space_;
    mutable std::mutex mutex_;
    // Oldest first: (order, relative path) -> its size and time written. The order is the time
    // written, but never before the newest already kept, so that a clock set back does not make the
    // newest files the first to go; the age is judged on the time written.
    struct Entry {
        std::uint64_t size = 0;
        TimePoint written;
    };
    std::map<std::pair<TimePoint, std::string>, Entry> files_;
    std::optional<TimePoint> latest_now_;  // the latest clock expire() was given
    std::uint64_t bytes_ = 0;
    bool prune_folders_;
    // Folders (relative) with reserved writes under way, and how many: never pruned meanwhile.
    std::map<std::string, int> writing_;
};

}  // namespace kg::evidence
