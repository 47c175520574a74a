#include "common/malloc_arenas.hpp"

#include <malloc.h>

#include <cstdlib>

namespace kg {

void bound_malloc_arenas() {
    if (std::getenv("MALLOC_ARENA_MAX") != nullptr) return;
    mallopt(M_ARENA_MAX, 2);
}

}  // namespace kg
