#!/usr/bin/env bash
# Configures and builds kitchen-gateway into build/ (or $KG_BUILD_DIR). Idempotent and incremental.
# Arguments go to CMake's configure step (scripts/test.sh passes -DKG_BUILD_TESTS=ON).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${KG_BUILD_DIR:-$root/build}"
jobs="${KG_JOBS:-$(nproc)}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE="${KG_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build "$build" -j "$jobs"
