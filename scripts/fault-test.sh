#!/usr/bin/env bash
# The outage fault test: for each scenario (broker down during a burst, gateway SIGKILLed while the
# broker is down, unusable or tiny evidence folder) prints events generated / delivered /
# duplicated / lost. Builds first; needs the test dependencies (scripts/install-deps.sh --tests).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${KG_BUILD_DIR:-$root/build}"
"$root/scripts/build.sh" >/dev/null
export KG_GATEWAY_BIN="$build/gateway/kitchen-gateway"
export KG_TEST_RTSP_SERVER="$build/tests/support/kg-test-rtsp-server"
export KG_SOURCE_DIR="$root"
/usr/bin/python3 -m pytest -q -s -p no:cacheprovider "$root/tests/e2e/test_outage.py" | grep -E "^FAULT|passed|failed"
