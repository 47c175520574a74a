#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what is needed (as root), builds,
# and runs every unit and end-to-end test with CTest. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${KG_BUILD_DIR:-$root/build}"

# The labelled photos and reference models beside the checkout, as .ci/run, eval.sh and choose.sh
# find them: the tests that need them skip where they are absent.
export KG_SHARED_DIR="${KG_SHARED_DIR:-$(cd "$root/.." && pwd)/shared}"
"$root/scripts/setup.sh" --tests
cd "$build"
ctest --output-on-failure --timeout 600 -j "${KG_TEST_JOBS:-3}" "$@"
