#!/usr/bin/env bash
# Installs what kitchen-gateway needs from Debian 12 packages only, for one use of the machine:
#
#   install-deps.sh [--build]   build and run the gateway and kitchen-monitor (the default: a canteen's box)
#   install-deps.sh --runtime   run programs built elsewhere (the container's runtime stage)
#   install-deps.sh --demo      --build, plus what scripts/demo.sh runs: Mosquitto, its clients, FFmpeg
#   install-deps.sh --tests     --demo, plus the test suite's tools and peers (scripts/test.sh, .ci/run)
#   install-deps.sh MODE --print   the mode's package names, one a line; installs nothing
#
# Each mode brings what the one before it does. Only --tests brings the test peers (GStreamer's RTSP server,
# nginx with its RTMP module, Chromium and Selenium, pytest): a box that runs the gateway must not
# carry them, nor a web server Debian would start on port 80. Idempotent: what is already there is
# skipped.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

mode=build
print=false
for arg in "$@"; do
  case "$arg" in
    --runtime) mode=runtime ;;
    --build) mode=build ;;
    --demo) mode=demo ;;
    --tests) mode=tests ;;
    --print) print=true ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install-deps: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

# The shared libraries the built programs link (the .deb's dpkg-shlibdeps list) and their data.
runtime=(
  libavformat59 libavcodec59 libavutil57 libswscale6 libavdevice59
  libopencv-core406 libopencv-imgproc406 libopencv-imgcodecs406 libopencv-objdetect406
  libopencv-video406 libopencv-dnn406 opencv-data
  libpaho-mqttpp3-1 libpaho-mqtt1.3 libyaml-cpp0.7 libspdlog1.10-fmt9 libfmt9 libsqlite3-0
  libmodbus5 libdate-tz3 libssl3 libsystemd0
  tzdata ca-certificates
)
# The compilers and headers (each -dev package brings its runtime library).
build=(
  build-essential cmake pkg-config
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev libavdevice-dev
  libopencv-dev opencv-data
  libpaho-mqttpp-dev libpaho-mqtt-dev
  libboost-dev libboost-system-dev
  libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libsqlite3-dev libcli11-dev libmodbus-dev libsystemd-dev libhowardhinnant-date-dev tzdata
  libssl-dev ca-certificates
  # `cpack -G DEB` (the package for a box): dpkg-shlibdeps, and the `file` CPackDeb calls, which a
  # minimal Debian (a container, a netinst without standard utilities) lacks
  dpkg-dev file
)
# scripts/demo.sh: a local broker and its clients, and FFmpeg to make the demo clip.
demo=(mosquitto mosquitto-clients ffmpeg)
tests=(
  git
  # unit framework and the benchmarks (bench/)
  libgtest-dev libgmock-dev libbenchmark-dev
  # real peers and stream tools
  socat openssl
  libgstrtspserver-1.0-dev gstreamer1.0-rtsp gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  # end-to-end test driver (Debian's own Python, /usr/bin/python3)
  python3 python3-pytest python3-paho-mqtt python3-jsonschema python3-yaml python3-numpy python3-opencv
  python3-onnx python3-pyflakes
  # browser tests (parents' page, monitoring dashboard): Debian's Chromium driven by Selenium
  chromium chromium-driver python3-selenium fonts-wqy-microhei
  # a real RTMP media server for the RTMP push test (nginx with its RTMP module; its service is
  # kept stopped and disabled below)
  nginx-light libnginx-mod-rtmp
)

case "$mode" in
  runtime) packages=("${runtime[@]}") ;;
  build) packages=("${build[@]}") ;;
  demo) packages=("${build[@]}" "${demo[@]}") ;;
  tests) packages=("${build[@]}" "${demo[@]}" "${tests[@]}") ;;
esac
# Once each, in order.
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | awk '!seen[$0]++')

if $print; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (it calls apt-get)" >&2
  exit 1
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps ($mode): all ${#packages[@]} packages already installed"
  exit 0
fi

# Whether an nginx service was there before this run: that one is the administrator's (see below).
nginx_service() { [ -e /lib/systemd/system/nginx.service ] || [ -e /etc/init.d/nginx ]; }
had_nginx=false
nginx_service && had_nginx=true

echo "install-deps ($mode): installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

# Debian's nginx package starts nginx on port 80 and enables it at boot. The tests run their own
# nginx on a free port, so the one this script brought in is stopped and disabled (an nginx that was
# there before is the administrator's and left alone). Debian's Mosquitto service listens on
# 127.0.0.1 only and is left running: scripts/demo.sh uses it when it is there.
if ! $had_nginx && nginx_service; then
  if [ -d /run/systemd/system ]; then
    systemctl disable --now --quiet nginx.service || true
  else
    invoke-rc.d nginx stop >/dev/null 2>&1 || true
    command -v systemctl >/dev/null && systemctl disable --quiet nginx.service 2>/dev/null || true
  fi
  update-rc.d nginx disable >/dev/null 2>&1 || true
  echo "install-deps: nginx (a test peer) is installed but stopped and disabled: nothing listens on port 80"
fi
echo "install-deps ($mode): done"
