#pragma once
// Whether this process can make files in a folder, as the kernel will judge it: the user, the
// groups, and a read-only mount (systemd's ProtectSystem=strict outside the state directory).

#include <string>

namespace kg {

// Why `folder` cannot take new files from this process, or "" when it can. Makes it first (as the
// stores do: one deleted meanwhile is made again, not reported gone).
std::string unwritable_folder(const std::string& folder);

// As unwritable_folder(), without making anything: a folder not there yet is judged by the nearest
// folder above it that is, in which the start will make it. For --check-config, which a person may
// run as root: a folder it made would be root's, and the service's user could not write it.
std::string unwritable_folder_as_is(const std::string& folder);

// As unwritable_folder_as_is() for a file: one that is there must be writable itself (a database
// first made by someone else, root running the gateway by hand), one that is not is judged by its
// folder.
std::string unwritable_file_as_is(const std::string& file);

}  // namespace kg
