#!/usr/bin/env bash
# What the README's two commands share: install the dependencies of one use when run as root (a
# fresh Debian 12 machine), then build. `setup.sh --demo` (scripts/demo.sh) installs the demo's,
# `setup.sh --tests` (scripts/test.sh) the test suite's and builds the tests whatever the build
# folder said before; without an argument, what building and running the gateway needs. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mode="${1:---build}"
case "$mode" in
  --build | --demo) cmake_args=() ;;
  --tests) cmake_args=(-DKG_BUILD_TESTS=ON) ;;
  *) echo "setup: unknown mode '$mode' (--build, --demo or --tests)" >&2; exit 2 ;;
esac
if [ "$(id -u)" -eq 0 ]; then
  "$root/scripts/install-deps.sh" "$mode"
else
  echo "setup: not root, assuming the dependencies are installed (scripts/install-deps.sh $mode)"
fi
"$root/scripts/build.sh" "${cmake_args[@]}"
