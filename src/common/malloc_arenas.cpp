#include "common/malloc_arenas.hpp"

#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <thread>

namespace kg {

int malloc_arena_bound() { return std::max(2, static_cast<int>(std::thread::hardware_concurrency())); }

void bound_malloc_arenas() {
    // glibc reads these itself at start; an empty or non-positive MALLOC_ARENA_MAX it ignores.
    // NOLINTNEXTLINE(cert-err34-c): read as glibc reads it (atoi), to agree on what it ignores
    if (const char* max = std::getenv("MALLOC_ARENA_MAX"); max != nullptr && std::atoi(max) > 0) return;
    if (const char* tunables = std::getenv("GLIBC_TUNABLES");
        tunables != nullptr &&
        std::string_view(tunables).find("glibc.malloc.arena_max") != std::string_view::npos)
        return;
    mallopt(M_ARENA_MAX, malloc_arena_bound());
}

}  // namespace kg
