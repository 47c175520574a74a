#!/usr/bin/env bash
# Installs everything kitchen-gateway needs to build, run its demo and run its tests,
# from Debian 12 packages only. Idempotent: apt-get skips what is already there.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: run as root (it calls apt-get)" >&2
  exit 1
fi

packages=(
  # build
  build-essential cmake pkg-config git
  # libraries the gateway links
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev libavdevice-dev
  libopencv-dev opencv-data
  libpaho-mqttpp-dev libpaho-mqtt-dev
  libboost-dev libboost-system-dev
  libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libsqlite3-dev libcli11-dev libmodbus-dev libsystemd-dev libhowardhinnant-date-dev tzdata
  # tests: unit framework, real broker, real RTSP server, stream tools
  libgtest-dev libgmock-dev libbenchmark-dev
  mosquitto mosquitto-clients socat openssl
  ffmpeg
  libgstrtspserver-1.0-dev gstreamer1.0-rtsp gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  # end-to-end test driver (Debian's own Python, /usr/bin/python3)
  python3 python3-pytest python3-paho-mqtt python3-jsonschema python3-yaml python3-numpy python3-opencv
  python3-onnx python3-pyflakes
  # browser tests (parents' page, monitoring dashboard): Debian's Chromium driven by Selenium
  chromium chromium-driver python3-selenium fonts-wqy-microhei
  # signed viewer tokens (HMAC-SHA256)
  libssl-dev
  # a real RTMP media server for the RTMP push test (nginx with its RTMP module)
  nginx-light libnginx-mod-rtmp
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian mosquitto and nginx packages start system services; the demo and tests run their own
# on free ports, so those are left alone.
echo "install-deps: done"
