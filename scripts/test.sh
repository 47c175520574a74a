#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what is needed (as root), builds,
# and runs every unit and end-to-end test with CTest. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${KG_BUILD_DIR:-$root/build}"

if [ "$(id -u)" -eq 0 ]; then
  "$root/scripts/install-deps.sh"
else
  echo "test: not root, assuming the dependencies are installed (scripts/install-deps.sh)"
fi
"$root/scripts/build.sh"
cd "$build"
ctest --output-on-failure --timeout 600 -j "${KG_TEST_JOBS:-2}" "$@"
