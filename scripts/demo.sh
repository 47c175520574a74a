#!/usr/bin/env bash
# The built-in demo on a fresh Debian 12 machine: installs what is needed (as root), builds, makes a
# demo kitchen clip, starts a local Mosquitto (unless one already listens on 127.0.0.1:1883), runs
# the gateway on config/demo.yaml and prints everything it publishes. Ctrl-C stops it all.
# KG_DEMO_SECONDS=N stops by itself after N seconds. Idempotent.
set -euo pipefail
# No job control, even in `bash -i`: a background job would lead a process group of its own, and
# `setsid` (below) would then fork, leaving $! a parent that has already gone.
set +m
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${KG_BUILD_DIR:-$root/build}"
if [ -n "${KG_DEMO_SECONDS:-}" ] && ! [[ "$KG_DEMO_SECONDS" =~ ^[0-9]+$ ]]; then
  echo "demo: KG_DEMO_SECONDS must be a whole number of seconds (e.g. 60, not 1m or 1.5), not '$KG_DEMO_SECONDS'" >&2
  exit 2
fi

"$root/scripts/setup.sh" --demo

# The demo camera: a kitchen-like test picture that goes black, then freezes, then recovers (80 s, looped).
clip="$root/config/demo/kitchen.mp4"
if [ ! -s "$clip" ]; then
  mkdir -p "$(dirname "$clip")"
  echo "demo: generating $clip"
  normal() { echo "testsrc2=size=640x360:rate=25:duration=$1,noise=alls=8:allf=t"; }
  ffmpeg -loglevel error -y \
    -f lavfi -i "$(normal 20)" \
    -f lavfi -i "color=c=0x050505:size=640x360:rate=25:duration=15,noise=alls=2:allf=t" \
    -f lavfi -i "$(normal 15)" \
    -f lavfi -i "testsrc2=size=640x360:rate=25:duration=1,trim=end_frame=1,loop=loop=-1:size=1,trim=duration=20,setpts=N/25/TB" \
    -f lavfi -i "$(normal 10)" \
    -filter_complex "[0:v][1:v][2:v][3:v][4:v]concat=n=5:v=1:a=0,format=yuv420p[v]" -map "[v]" \
    -c:v libx264 -preset veryfast -g 50 -keyint_min 50 -sc_threshold 0 -b:v 800k "$clip"
fi

broker="" conf="" gateway="" timer=""
subscribers=()
cleanup() {
  local stopped=0
  [ -z "$timer" ] || kill "$timer" 2>/dev/null || true
  # The gateway first, and waited for: what it publishes as it stops (the camera offline, its events
  # ended) is still carried and printed.
  if [ -n "$gateway" ]; then
    kill "$gateway" 2>/dev/null || true
    wait "$gateway" 2>/dev/null || stopped=$?
  fi
  if [ "${#subscribers[@]}" -gt 0 ]; then
    sleep 0.3  # the broker's last deliveries to them
    # mosquitto_sub 2.0 disconnects from inside its signal handler (SIGTERM, SIGINT, and the alarm
    # of its own -W timeout), which can deadlock on the library's mutexes
    # (eclipse-mosquitto/mosquitto#3175); only SIGKILL ends one then. They only print, and print
    # each message as it comes, so nothing is lost. Waited for, so that bash says nothing of it.
    for pid in "${subscribers[@]}"; do { kill -KILL "$pid" && wait "$pid"; } 2>/dev/null || true; done
  fi
  [ -z "$broker" ] || kill "$broker" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -z "$conf" ] || rm -f "$conf"
  if [ "$stopped" -ne 0 ]; then
    echo "demo: the gateway failed as it stopped (exit status $stopped); its log is above" >&2
    exit 1
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  echo "demo: starting mosquitto on 127.0.0.1:1883"
  conf="$(mktemp)"
  printf 'listener 1883 127.0.0.1\nallow_anonymous true\npersistence false\n' >"$conf"
  # In a session of its own, as the subscribers: Ctrl-C in the terminal reaches the gateway, which
  # stops and says so, and not the broker that has to carry what it says. Killed with this shell if
  # it is killed outright (SIGKILL runs no trap), so that no demo broker keeps the port. Run as root,
  # it is started as its own user: mosquitto would switch to it by itself, and that switch clears
  # the parent-death signal.
  as_broker=()
  if [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1; then
    as_broker=(--reuid=mosquitto --regid=mosquitto --init-groups)
    chmod 644 "$conf"
  fi
  setsid setpriv "${as_broker[@]}" --pdeathsig KILL mosquitto -c "$conf" >/dev/null 2>&1 &
  broker=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break; sleep 0.1; done
fi

"$build/gateway/kitchen-gateway" --check-config "$root/config/demo.yaml"
# Stopped (SIGTERM: its clean stop) with this shell if it is killed outright, as are the others.
setpriv --pdeathsig TERM "$build/gateway/kitchen-gateway" --config "$root/config/demo.yaml" &
gateway=$!

echo "demo: the parents' page plays the demo camera at http://127.0.0.1:8081/ (local API: http://127.0.0.1:8080/metrics)"
echo "demo: the gateway runs; what it publishes on kitchen/# follows (black at ~20 s, frozen at ~50 s)"
# Snapshots are JPEG bytes: printed as their size, not as bytes that garble the terminal.
snapshots='kitchen/+/events/+/snapshot'
setsid setpriv --pdeathsig KILL mosquitto_sub -h 127.0.0.1 -p 1883 -t "$snapshots" \
  -F '%t <JPEG snapshot, %l bytes>' &
subscribers+=($!)
setsid setpriv --pdeathsig KILL mosquitto_sub -h 127.0.0.1 -p 1883 -v -t 'kitchen/#' -T "$snapshots" &
subscribers+=($!)

# Until Ctrl-C, the gateway's end, or KG_DEMO_SECONDS. The shell waits in `wait`, which a signal
# interrupts at once (a command in the foreground would hold the trap back until it ended).
status=0 ended="$gateway"
if [ -n "${KG_DEMO_SECONDS:-}" ]; then
  sleep "$KG_DEMO_SECONDS" &
  timer=$!
  ended=""
  wait -n -p ended "$gateway" "$timer" || status=$?
fi
if [ "$ended" = "$timer" ]; then
  timer=""  # reaped: its pid is no longer this demo's to signal
else
  wait "$gateway" || status=$?
  # Ctrl-C reaches the gateway too, which stops cleanly (0); bash then takes the signal as handled by
  # it and runs no trap of its own.
  gateway=""
  [ "$status" -eq 0 ] && exit 0
  echo "demo: the gateway stopped (exit status $status); its log is above" >&2
  exit 1
fi
