#!/usr/bin/env bash
# Builds the gateway with the compiler's sanitizers and runs tests on that build, to find memory and
# threading errors (use after free, overflows, leaks, undefined behaviour, data races) that the
# ordinary build shows only by chance.
#
#   scripts/sanitize.sh [address|thread] [ctest arguments...]   (KG_SANITIZE_BUILD_DIR to build elsewhere)
#
# address (the default) is AddressSanitizer with UndefinedBehaviorSanitizer and LeakSanitizer, in
# build-asan/; thread is ThreadSanitizer, in build-tsan/. Without ctest arguments it runs the unit
# suite (-L unit); give e.g. `-R 'e2e_(delivery|public)'` for end-to-end tests, which then drive the
# sanitized gateway and monitor. Every report of every process (the tests' own and the daemons they
# start) goes to a file under <build>/sanitizer-reports/; the script fails when any is there, so a
# report from a daemon the test stopped cleanly still counts. Not part of scripts/test.sh: the build
# takes about twice the ordinary one, and the end-to-end tests' real-time limits are set for the
# ordinary build.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
kind=address
if [[ $# -gt 0 && $1 != -* ]]; then
  kind="$1"
  shift
fi
# Its own variable, not KG_BUILD_DIR: an exported KG_BUILD_DIR would otherwise turn the ordinary
# build (build.sh, test.sh) into a sanitized one, its KG_SANITIZE cached.
case "$kind" in
  address) flags="address,undefined"; build="${KG_SANITIZE_BUILD_DIR:-$root/build-asan}" ;;
  thread) flags="thread"; build="${KG_SANITIZE_BUILD_DIR:-$root/build-tsan}" ;;
  *) echo "sanitize.sh: unknown sanitizer '$kind' (address or thread)" >&2; exit 2 ;;
esac
[[ $# -eq 0 ]] && set -- -L unit

KG_BUILD_DIR="$build" KG_BUILD_TYPE=RelWithDebInfo "$root/scripts/build.sh" -DKG_BUILD_TESTS=ON \
  -DKG_SANITIZE="$flags"

reports="$build/sanitizer-reports"
rm -rf "$reports"
mkdir -p "$reports"
touch "$reports/.started"  # the end-to-end tests' logs newer than this are this run's
supp="$root/tests/sanitizer"
# log_path: each process writes its own <prefix>.<pid>; the tests' pass or fail is CTest's, the
# reports are this script's. AddressSanitizer, LeakSanitizer and UBSan share one runtime and one
# log_path (the last of their options to set it wins), so all three get the same.
# fast_unwind_on_malloc=0: FFmpeg's libraries are built without frame pointers, so the fast unwinder
# stops at av_malloc and a leak of an FFmpeg object names neither its caller nor a frame a
# suppression could match (about twice the time: the unit suite 226 s -> ~450 s here).
export ASAN_OPTIONS="log_path=$reports/asan:detect_stack_use_after_return=1:strict_init_order=1:detect_leaks=1:fast_unwind_on_malloc=0"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="log_path=$reports/asan:print_stacktrace=1"
export TSAN_OPTIONS="log_path=$reports/tsan:suppressions=$supp/tsan.supp:second_deadlock_stack=1:history_size=4"

status=0
(cd "$build" && ctest --output-on-failure --timeout 900 -j "${KG_TEST_JOBS:-2}" "$@") || status=$?

shopt -s nullglob
# UndefinedBehaviorSanitizer stops the process at its first report (-fno-sanitize-recover); a
# report printed on stderr instead of log_path (as a check with GCC 12 once did) would be in the
# log an end-to-end test kept of its daemon, so those are searched too.
find "$build/tests/e2e" -type f -name '*.log' -newer "$reports/.started" -print0 2>/dev/null \
  | { xargs -0 -r grep -lsI 'runtime error:' || true; } \
  | while read -r f; do cp "$f" "$reports/ubsan-from-$(basename "$(dirname "$f")")-$(basename "$f")"; done
found=("$reports"/*)
if ((${#found[@]})); then
  echo "sanitize.sh: ${#found[@]} sanitizer report(s) in $reports:" >&2
  for f in "${found[@]}"; do
    echo "== $f" >&2
    grep -m3 -E 'ERROR|WARNING|runtime error|SUMMARY' "$f" >&2 || true
  done
  exit 1
fi
[[ $status -eq 0 ]] && echo "sanitize.sh: $kind: tests passed, no sanitizer reports"
exit "$status"
