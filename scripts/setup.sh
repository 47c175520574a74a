#!/usr/bin/env bash
# What the README's two commands share: install the dependencies when run as root (a fresh Debian 12
# machine), then build. Idempotent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$(id -u)" -eq 0 ]; then
  "$root/scripts/install-deps.sh"
else
  echo "setup: not root, assuming the dependencies are installed (scripts/install-deps.sh)"
fi
"$root/scripts/build.sh"
