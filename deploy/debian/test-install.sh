#!/usr/bin/env bash
# Builds the Debian package, installs it with apt (dependencies resolved from Debian), checks what
# the package put in place (binaries, unit, service user, config), then starts the gateway the way
# the unit does (as the kitchen-gateway user, with the unit's ExecStartPre and ExecStart) against a
# local Mosquitto and waits for it to come online. Run as root on a Debian 12 machine, preferably a
# fresh one. Without systemd running (a container) the unit itself cannot be started: the script
# then runs the unit's commands directly and says so. Last, Debian's removal policy: `apt-get remove`
# keeps the config, secrets, state and user, `apt-get purge` removes them (both skipped, and said
# so, where kitchen-gateway was installed before the script ran: that config is a site's own).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${KG_BUILD_DIR:-$root/build}"
"$root/scripts/build.sh" >/dev/null
(cd "$build" && cpack -G DEB >/dev/null)
preinstalled=false
if dpkg-query -W -f='${Status}' kitchen-gateway 2>/dev/null | grep -q "ok installed" || [ -e /etc/kitchen-gateway ]; then
  preinstalled=true
fi
deb="$(ls "$build"/kitchen-gateway_*_*.deb | tail -n 1)"
echo "test-install: installing $deb"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null

fail() { echo "test-install: FAILED: $*" >&2; exit 1; }
command -v kitchen-gateway >/dev/null || fail "no kitchen-gateway on PATH"
kitchen-gateway --version
[ -f /usr/lib/systemd/system/kitchen-gateway.service ] || fail "no systemd unit"
getent passwd kitchen-gateway >/dev/null || fail "no kitchen-gateway user"
[ -f /etc/kitchen-gateway/gateway.yaml ] || fail "no /etc/kitchen-gateway/gateway.yaml"
kitchen-gateway --check-config /etc/kitchen-gateway/gateway.yaml
if command -v systemd-analyze >/dev/null; then systemd-analyze verify /usr/lib/systemd/system/kitchen-gateway.service; fi

# A local broker and a camera the service user may read.
work="$(mktemp -d)"
chmod 755 "$work"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=18830
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" &
ffmpeg -loglevel error -f lavfi -i testsrc2=size=320x180:rate=25 -t 4 -c:v libx264 -preset ultrafast "$work/cam.mp4"
chmod 644 "$work/cam.mp4"
cat >"$work/gateway.yaml" <<YAML
site: {id: install-test, name: Install test}
mqtt: {url: "tcp://127.0.0.1:$port", state_interval: 1s}
outbox: {path: /var/lib/kitchen-gateway/outbox.db}
evidence: {path: /var/lib/kitchen-gateway/evidence}
api: {listen: ""}
cameras: [{id: cam, url: $work/cam.mp4, input: {loop: true}}]
YAML
install -d -o kitchen-gateway -g kitchen-gateway /var/lib/kitchen-gateway
exec_start="$(sed -n 's/^ExecStart=//p' /usr/lib/systemd/system/kitchen-gateway.service)"
exec_pre="$(sed -n 's/^ExecStartPre=//p' /usr/lib/systemd/system/kitchen-gateway.service)"
if [ -d /run/systemd/system ]; then
  echo "test-install: systemd runs here: starting the unit with the test config"
  cp "$work/gateway.yaml" /etc/kitchen-gateway/gateway.yaml
  systemctl daemon-reload && systemctl start kitchen-gateway
else
  echo "test-install: no systemd here: running the unit's commands as its user"
  runuser -u kitchen-gateway -- ${exec_pre/\/etc\/kitchen-gateway\/gateway.yaml/$work/gateway.yaml}
  runuser -u kitchen-gateway -- ${exec_start/\/etc\/kitchen-gateway\/gateway.yaml/$work/gateway.yaml} &
  gateway_pid=$!
fi
# -k: mosquitto_sub 2.0 can deadlock in its own SIGTERM handler (eclipse-mosquitto/mosquitto#3175).
state="$(timeout -k 5 20 mosquitto_sub -p "$port" -t kitchen/install-test/cameras/cam/state -C 3 | tail -n 1 || true)"
echo "$state" | grep -q '"online":true' || fail "camera state never online: $state"
echo "test-install: OK: the installed gateway published $state"

if $preinstalled; then
  echo "test-install: kitchen-gateway was installed before: remove and purge not tried on that site's config"
  exit 0
fi
# With systemd the package's prerm stops the unit; without, the gateway started above is stopped here.
if [ -n "${gateway_pid:-}" ]; then kill "$gateway_pid" && wait "$gateway_pid" || true; fi
[ -s /var/lib/kitchen-gateway/outbox.db ] || fail "the gateway made no outbox in /var/lib/kitchen-gateway"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq kitchen-gateway >/dev/null
if [ -e /usr/bin/kitchen-gateway ]; then fail "/usr/bin/kitchen-gateway still there after apt-get remove"; fi
for kept in /etc/kitchen-gateway/gateway.yaml /etc/kitchen-gateway/secrets.env /var/lib/kitchen-gateway/outbox.db; do
  [ -e "$kept" ] || fail "apt-get remove deleted $kept (only purge may)"
done
getent passwd kitchen-gateway >/dev/null || fail "apt-get remove deleted the kitchen-gateway user (only purge may)"
# dpkg remembers a removed package for its purge only while it has a postrm (or conffiles).
status="$(dpkg-query -W -f='${Status}' kitchen-gateway 2>/dev/null || true)"
[ "$status" = "deinstall ok config-files" ] ||
  fail "after apt-get remove dpkg has kitchen-gateway as '$status', not config-files: nothing could purge it"
echo "test-install: OK: apt-get remove kept the config, secrets, state and user"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq kitchen-gateway >/dev/null
for gone in /etc/kitchen-gateway /var/lib/kitchen-gateway; do
  if [ -e "$gone" ]; then fail "apt-get purge left $gone"; fi
done
# The user is locked, not deleted: files it owns may remain (postrm says why).
[ "$(getent shadow kitchen-gateway | cut -d: -f8)" = 1 ] || fail "apt-get purge did not lock the kitchen-gateway user"
echo "test-install: OK: apt-get purge removed the config, secrets and state, and locked the user"
