#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what is needed (as root), builds,
# and runs every unit and end-to-end test with CTest. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${KG_BUILD_DIR:-$root/build}"

"$root/scripts/setup.sh" --tests
cd "$build"
ctest --output-on-failure --timeout 600 -j "${KG_TEST_JOBS:-2}" "$@"
