#!/usr/bin/env bash
# Runs kitchen-eval for every back-end and model on the shared labelled photos (valid splits) and
# prints the tables that docs/accuracy.md publishes. Needs ../shared (or KG_SHARED_DIR).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${KG_BUILD_DIR:-$root/build}"
export KG_SHARED_DIR="${KG_SHARED_DIR:-$(cd "$root/.." && pwd)/shared}"
[ -d "$KG_SHARED_DIR/datasets" ] || { echo "eval: no labelled photos in $KG_SHARED_DIR" >&2; exit 1; }
"$root/scripts/build.sh" >/dev/null
eval_bin="$build/gateway/kitchen-eval"
mask=("--data" "$KG_SHARED_DIR/datasets/mask-yolo/valid" "--classes" "0=no_mask,1=with_mask")
helmet=("--data" "$KG_SHARED_DIR/datasets/helmet-yolo/valid" "--classes" "0=covered,1=bare")
faces=("--data" "$KG_SHARED_DIR/datasets/mask-yolo/valid" "--classes" "0=face,1=face")

for d in classic:mask models/reference/aizoo-face-mask.yaml models/reference/ultraface-masked-face-rfb-640.yaml; do
  (cd "$root" && "$eval_bin" -d "$d" "${mask[@]}"); echo
done
(cd "$root" && "$eval_bin" -d classic:head "${helmet[@]}"); echo
(cd "$root" && "$eval_bin" -d models/reference/ultraface-rfb-320.yaml "${faces[@]}")
