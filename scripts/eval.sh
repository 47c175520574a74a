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

# The project's own models (models/kitchen-*.yaml) in the same run as the references they are
# measured against.
for d in classic:mask models/reference/aizoo-face-mask.yaml models/reference/ultraface-masked-face-rfb-640.yaml \
         models/kitchen-mask.yaml models/two-networks/kitchen-mask.yaml; do
  (cd "$root" && "$eval_bin" -d "$d" "${mask[@]}"); echo
done
for d in classic:head models/kitchen-head-covering.yaml models/two-networks/kitchen-head-covering.yaml; do
  (cd "$root" && "$eval_bin" -d "$d" "${helmet[@]}"); echo
done
for d in models/reference/ultraface-rfb-320.yaml models/kitchen-mask.yaml models/two-networks/kitchen-mask.yaml; do
  # Faces only (either class): how well each finds the faces, whatever it decides about them.
  (cd "$root" && "$eval_bin" -d "$d" "${faces[@]}" --any-class); echo
done
# How far these photos carry the figures (docs/accuracy.md, "How sure these figures are"): each
# detector's 95% ranges over resampled photos, then the defaults' F1 against each peer, paired on
# the same photos.
ranges() { sed -n '/intervals at IoU/,/^time per image/p' | grep -v '^time per image'; }
paired() { sed -n '/^F1@0.3 against/,/^time per image/p' | grep -v '^time per image'; }
for d in models/reference/aizoo-face-mask.yaml models/reference/ultraface-masked-face-rfb-640.yaml \
         models/kitchen-mask.yaml; do
  echo "$d"; (cd "$root" && "$eval_bin" -d "$d" "${mask[@]}" --bootstrap 2000 | ranges); echo
done
echo models/kitchen-head-covering.yaml
(cd "$root" && "$eval_bin" -d models/kitchen-head-covering.yaml "${helmet[@]}" --bootstrap 2000 | ranges); echo
for other in models/reference/aizoo-face-mask.yaml models/reference/ultraface-masked-face-rfb-640.yaml \
             models/two-networks/kitchen-mask.yaml; do
  (cd "$root" && "$eval_bin" -d models/kitchen-mask.yaml "${mask[@]}" --compare "$other" | paired); echo
done
(cd "$root" && "$eval_bin" -d models/kitchen-head-covering.yaml "${helmet[@]}" \
   --compare models/two-networks/kitchen-head-covering.yaml | paired)
