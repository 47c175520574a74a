#pragma once
// glibc gives each thread that allocates at the same time as another an arena of its own, up to
// eight per core, and an arena keeps the memory freed in it for reuse. The gateway's threads come
// and go (each reload builds the cameras, the networks and their threads again; a parents' masked
// feed opens an encoder while watched), so over a day of reloads and viewers each of those arenas
// holds its own high-water mark. Measured by bench/soak.py (15 minutes of reloads, camera drops and
// viewers, 2 cores): the heap in use stayed at 62 MiB while glibc held 228 MiB, RSS 331 MiB at rest;
// with two arenas RSS was 220 MiB, at the same CPU in bench/cameras.py (4 cameras: 57-60 % either
// way). One arena per core (at least two) keeps that on the small boxes the gateway is for, and on
// a large box gives its many camera threads as many locks as it has cores to contend for them.

namespace kg {

// The bound this box gets: its cores, at least 2.
int malloc_arena_bound();

// Sets malloc_arena_bound() as the process's arena limit, unless the operator set one
// (MALLOC_ARENA_MAX as a positive number, or GLIBC_TUNABLES naming glibc.malloc.arena_max), which
// then wins. Called at the start of main, before any thread exists.
void bound_malloc_arenas();

}  // namespace kg
