#pragma once
// How many files (sockets included) the process may have open. Each viewer of the public side
// holds a socket: the soft limit, often 1024, is raised as far as the configuration needs (never
// past the hard limit), and a configuration asking for more than that is told so in the log
// instead of failing on accept. Raised only as far as needed: a library that still uses select()
// (libmodbus) aborts on a descriptor of 1024 or more, which is why the default soft limit is 1024.

#include <cstdint>

namespace kg {

// Raises the soft RLIMIT_NOFILE towards `wanted` (never past the hard limit, never lowering it);
// returns the soft limit in force afterwards, 0 if it cannot be read.
std::uint64_t raise_open_files_limit(std::uint64_t wanted);

// Lowers the soft RLIMIT_NOFILE to `ceiling` when it is above (a unit's LimitNOFILE, a shell's
// ulimit -n): the kernel hands out the lowest free descriptor, so under a soft limit of 1024 no
// descriptor reaches 1024. Returns the soft limit in force afterwards, 0 if it cannot be read.
std::uint64_t lower_open_files_limit(std::uint64_t ceiling);

}  // namespace kg
