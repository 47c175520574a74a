#!/usr/bin/env bash
# Fetches the pretrained layers blazeface.py reads (and `train_head_detector.py --trunk blazeface`
# of commit 044fd88 started from): Google MediaPipe's BlazeFace (back-camera model; MediaPipe and its
# models are under the Apache License 2.0) as converted to TensorFlow.js in the npm package
# @vladmandic/human 3.3.6 (MIT). Pinned by the package's checksum and the two files' own. Writes
# models/train/pretrained/blazeface/ (not committed; an ONNX file exported from them carries the
# weights it uses). Needs npm (Debian's nodejs/npm). The package's LICENSE (MIT) is kept beside them;
# the weights themselves are MediaPipe's, Apache 2.0
# (https://github.com/google/mediapipe/blob/master/LICENSE), which a model made from them must name.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/pretrained/blazeface"
work="$(mktemp -d "${TMPDIR:-/tmp}/kg-pretrained.XXXXXX")"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent --ignore-scripts @vladmandic/human@3.3.6 >/dev/null)
echo "425e9c51dbbca0c8934362b170cb0d54c2529c11c654b3c03092b16e9d6ad3f7  $work/vladmandic-human-3.3.6.tgz" \
  | sha256sum --check --quiet
tar -xzf "$work/vladmandic-human-3.3.6.tgz" -C "$work" package/LICENSE package/models/blazeface.json \
  package/models/blazeface.bin
(cd "$work/package/models" && sha256sum --check --quiet <<'SUMS'
dc9a97fdc50bc43216554bdd69aa3e7b9361a519ee7bdd996a2f69a98a6f9b72  blazeface.bin
cd7bbfc078270572beb39f9e5ae67aadbd50b5e67cff37e6d4f6b3ea39312e5f  blazeface.json
SUMS
)
mkdir -p "$dest"
cp "$work/package/models/blazeface.json" "$work/package/models/blazeface.bin" "$dest/"
cp "$work/package/LICENSE" "$dest/LICENSE.human"
echo "fetch_pretrained: BlazeFace in $dest"
