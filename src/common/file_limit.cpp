#include "common/file_limit.hpp"

#include <sys/resource.h>

#include <algorithm>

namespace kg {

std::uint64_t raise_open_files_limit(std::uint64_t wanted) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
    const auto target = std::min<rlim_t>(static_cast<rlim_t>(wanted), limit.rlim_max);
    if (limit.rlim_cur < target) {
        rlimit raised = limit;
        raised.rlim_cur = target;
        if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
    }
    return static_cast<std::uint64_t>(limit.rlim_cur);
}

std::uint64_t lower_open_files_limit(std::uint64_t ceiling) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
    if (limit.rlim_cur > static_cast<rlim_t>(ceiling)) {
        rlimit lowered = limit;
        lowered.rlim_cur = static_cast<rlim_t>(ceiling);
        if (::setrlimit(RLIMIT_NOFILE, &lowered) == 0) limit = lowered;
    }
    return static_cast<std::uint64_t>(limit.rlim_cur);
}

}  // namespace kg
