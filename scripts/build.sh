#!/usr/bin/env bash
# Configures and builds kitchen-gateway into build/ (or $KG_BUILD_DIR). Idempotent and incremental.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${KG_BUILD_DIR:-$root/build}"
jobs="${KG_JOBS:-$(nproc)}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE="${KG_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
cmake --build "$build" -j "$jobs"
