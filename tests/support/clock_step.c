// LD_PRELOAD for the end-to-end tests: the process's wall clock (CLOCK_REALTIME) is stepped by
// KG_CLOCK_STEP_S seconds (negative: back) once KG_CLOCK_STEP_AFTER_S seconds have passed since its
// first reading, as NTP or an installer setting the date would step a running box's clock. The
// steady clock (CLOCK_MONOTONIC) is left as it is, as a real step leaves it.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

static _Atomic long long first_mono_ns = 0;

int clock_gettime(clockid_t clock, struct timespec* ts) {
    static int (*real)(clockid_t, struct timespec*) = NULL;
    if (real == NULL) *(void**)(&real) = dlsym(RTLD_NEXT, "clock_gettime");  // POSIX's way past -Wpedantic
    const int result = real(clock, ts);
    if (result != 0 || (clock != CLOCK_REALTIME && clock != CLOCK_REALTIME_COARSE)) return result;
    const char* after = getenv("KG_CLOCK_STEP_AFTER_S");
    const char* step = getenv("KG_CLOCK_STEP_S");
    if (after == NULL || step == NULL) return result;
    struct timespec mono;
    real(CLOCK_MONOTONIC, &mono);
    const long long now_ns = mono.tv_sec * 1000000000LL + mono.tv_nsec;
    long long expected = 0;
    atomic_compare_exchange_strong(&first_mono_ns, &expected, now_ns);
    if (now_ns - atomic_load(&first_mono_ns) >= atoll(after) * 1000000000LL) ts->tv_sec += atoll(step);
    return result;
}
