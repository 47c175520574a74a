#pragma once
// How many files (sockets included) the process may have open. Each viewer of the public side
// holds a socket: the soft limit, often 1024, is raised to the hard one at start (as nginx's
// worker_rlimit_nofile and Go's runtime do), and a configuration asking for more connections
// than that is told so in the log instead of failing on accept.

#include <cstdint>

namespace kg {

// Raises the soft RLIMIT_NOFILE to the hard limit when it is lower; returns the soft limit in force
// afterwards (unchanged if it could not be raised).
std::uint64_t raise_open_files_limit();

}  // namespace kg
