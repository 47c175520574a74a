#!/usr/bin/env bash
# Runs clang-tidy (the checks in .clang-tidy) over the project's own sources: src/ and gateway/, and
# the headers under src/ they include; tests/, bench/ and third-party headers are left out.
#
#   scripts/tidy.sh [build dir] [file.cpp...] [extra clang-tidy arguments, e.g. -checks=-*,bugprone-use-after-move]
#
# Without files, every .cpp of src/ and gateway/ that git knows (paths relative to the checkout).
#
# It reads the compile commands of a configured build (build/ or $KG_BUILD_DIR by default;
# CMAKE_EXPORT_COMPILE_COMMANDS is on, so scripts/build.sh writes them). Prints each finding once and
# exits 1 when there is any. Runs under nice with two jobs (KG_TIDY_JOBS): a whole pass takes 30 to
# 45 minutes on a 2-core box, so it is deliberately not in scripts/test.sh nor the CI (.ci/run):
# the CI machine has 2 cores too. Run it before a release or after a large change.
# clang-tidy 14's parser lags GCC 12 on C++20 (no structured bindings in lambda captures, no
# make_shared of an aggregate): such code shows here as an error and leaves its file unchecked.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${KG_BUILD_DIR:-$root/build}"
if [[ $# -gt 0 && -d $1 ]]; then
  build="$1"
  shift
fi
jobs="${KG_TIDY_JOBS:-2}"
tidy="$(command -v clang-tidy-14 || command -v clang-tidy || true)"
if [[ -z $tidy ]]; then
  echo "tidy.sh: clang-tidy not found (apt-get install clang-tidy-14)" >&2
  exit 2
fi
if [[ ! -f $build/compile_commands.json ]]; then
  echo "tidy.sh: no $build/compile_commands.json: configure a build first (scripts/build.sh)" >&2
  exit 2
fi
files=()
while [[ $# -gt 0 && $1 != -* ]]; do
  files+=("$1")
  shift
done
# The project's own translation units, as the build compiles them.
[[ ${#files[@]} -gt 0 ]] || mapfile -t files < <(cd "$root" && git ls-files 'src/*.cpp' 'gateway/*.cpp')
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for f in "${files[@]}"; do [[ $f == /* ]] && echo "$f" || echo "$root/$f"; done |
  nice -n 10 xargs -P "$jobs" -n 1 "$tidy" -p "$build" --quiet \
    --header-filter="^$root/src/" "$@" >"$out" 2>/dev/null || true
# A header's finding is reported by every file that includes it: once here. One line each; run
# clang-tidy-14 -p <build> on the file for the full note.
findings="$(grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error):' "$out" | sort -u || true)"
if [[ -n $findings ]]; then
  printf '%s\n' "$findings"
  echo "tidy.sh: $(wc -l <<<"$findings") finding(s)" >&2
  exit 1
fi
echo "tidy.sh: no findings" >&2
