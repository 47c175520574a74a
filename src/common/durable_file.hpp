#pragma once
// Files that must survive a power cut once the program says they exist: evidence whose path an
// event has already told the monitoring room. The data is flushed before the rename, and the
// folder after it, since the new name lives in the folder (ext4's default ordering often hides a
// missing folder flush; btrfs and XFS do not).

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace kg {

// Writes `data` to `path` (created or truncated, mode 0640) and flushes it to the disk. The reason
// on failure, e.g. "No space left on device".
std::optional<std::string> write_file_durably(const std::filesystem::path& path, std::string_view data);

// fsync() of a file already written and closed; the reason on failure.
std::optional<std::string> sync_file(const std::filesystem::path& path);

// Renames `from` to `to` (replacing it); the reason on failure.
std::optional<std::string> rename_file(const std::filesystem::path& from, const std::filesystem::path& to);

// Flushes the folder that holds `path`, so that a name just created or renamed there survives a power
// cut; the reason on failure (the file itself is whole: only its name may not survive).
std::optional<std::string> sync_parent_folder(const std::filesystem::path& path);

}  // namespace kg
