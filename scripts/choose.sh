#!/usr/bin/env bash
# The choosing data's figures, the ones the model cards' "chosen on" tables quote: never the valid
# splits, which are measured once, after a choice (scripts/eval.sh).
#
#   scripts/choose.sh                              # the default manifests
#   scripts/choose.sh MASK.yaml HEAD.yaml          # others, e.g. copies that name a new network
#
# With other manifests it also compares each with the default, at each manifest's own threshold,
# paired on the same photos (kitchen-eval --compare, 2000 draws): a difference whose 95% range holds
# 0 is one these photos cannot tell from luck (docs/accuracy.md, "How sure these figures are").
#
# Head covering: the 10% of helmet-yolo/train that train_head_detector.py holds out (the same
# seeded split, made here), at score_threshold 0.25 / 0.3 / 0.35 / 0.4 / 0.45. Mask: mask-yolo/train
# (its licence allows evaluation and tuning, never training), at the classifier's min_score 0.2 /
# 0.25 / 0.3 / 0.35 / 0.4. For each: the two classes' F1 at IoU 0.3, their sum, and TP / FP / FN.
# The manifests are read with those thresholds lowered, so every row comes from one run.
#
# Then the mask check's classifier alone (kitchen-eval --given-boxes) on the bare faces of
# helmet-yolo's workers that models/train/helmet_faces.json labels, under a hard hat and without:
# what mask-yolo's street photos hardly show, and what the shipped classifier gets most wrong
# (models/kitchen-mask-classifier.md, Limits). On the held-out photos, and on all of them (the 233
# training photos' faces train a classifier made with --helmet-faces: for one, read the held-out row).
# Needs ../shared (or KG_SHARED_DIR) and a build (KG_BUILD_DIR, default build/).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${KG_BUILD_DIR:-$root/build}"
export KG_SHARED_DIR="${KG_SHARED_DIR:-$(cd "$root/.." && pwd)/shared}"
[ -d "$KG_SHARED_DIR/datasets" ] || { echo "choose: no labelled photos in $KG_SHARED_DIR" >&2; exit 1; }
eval_bin="$build/gateway/kitchen-eval"
[ -x "$eval_bin" ] || { echo "choose: no $eval_bin: run scripts/build.sh first" >&2; exit 1; }
mask="${1:-$root/models/kitchen-mask.yaml}"
head="${2:-$root/models/kitchen-head-covering.yaml}"
for m in "$mask" "$head"; do
  [ -f "$m" ] || { echo "choose: no manifest $m" >&2; exit 1; }
done
work="$(mktemp -d "${TMPDIR:-/tmp}/kg-choose.XXXXXX")"
trap 'rm -rf "$work"' EXIT

/usr/bin/python3 - "$KG_SHARED_DIR" "$work" "$mask" "$head" "$root" <<'PY'
import pathlib, sys
import numpy as np
import yaml

shared, work, mask, head = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), *map(pathlib.Path, sys.argv[3:5])

# The held-out photos exactly as models/train/train_head_detector.py:load_helmet() splits them.
src = shared / "datasets" / "helmet-yolo" / "train"
files = sorted((src / "images").glob("*.jpg"))
held = [files[i] for i in np.random.default_rng(0).permutation(len(files))[: len(files) // 10]]
for sub in ("images", "labels"):
    (work / "heldout" / sub).mkdir(parents=True)
for f in held:
    (work / "heldout" / "images" / f.name).symlink_to(f)
    label = src / "labels" / (f.stem + ".txt")
    if label.exists():
        (work / "heldout" / "labels" / label.name).symlink_to(label)


# helmet_faces.json's bare faces as YOLO sets: class 0 under a hard hat, 1 without (helmet-yolo's
# own classes), all photos and the held-out ones.
sys.path.insert(0, str(pathlib.Path(sys.argv[5]) / "models" / "train"))
import helmet_faces  # the labels' own reader and checks; no torch

try:
    labels = helmet_faces.read(shared)
except ValueError as e:
    sys.exit(f"choose: {e}")
held_names = {f.name for f in held}
for name in ("faces-all", "faces-heldout"):
    for sub in ("images", "labels"):
        (work / name / sub).mkdir(parents=True)
for photo, groups in labels.items():
    rows = (src / "labels" / (pathlib.Path(photo).stem + ".txt")).read_text().split("\n")
    bare = "".join(rows[n].strip() + "\n" for n in groups.get("no_mask", []))
    for name in ("faces-all", "faces-heldout") if photo in held_names else ("faces-all",):
        if bare:
            (work / name / "images" / photo).symlink_to(src / "images" / photo)
            (work / name / "labels" / (pathlib.Path(photo).stem + ".txt")).write_text(bare)


def lowered(path, out, key):
    """The manifest with its files made absolute and `key` (the threshold the rows vary) lowered."""
    m = yaml.safe_load(path.read_text())
    here = path.resolve().parent
    # Relative to the manifest; a path from ${VARIABLE} or an absolute one is left to the loader.
    absolute = lambda f: f if f.startswith("$") or f.startswith("/") else str((here / f).resolve())
    m["model"] = absolute(m["model"])
    if "config" in m:
        m["config"] = absolute(m["config"])
    if "ensemble" in m:
        # A file, or {model: FILE, input: ...} for a network at its own input size (a map without
        # `model` is left for the loader to name).
        def entry(e):
            if not isinstance(e, dict):
                return absolute(e)
            return dict(e, model=absolute(e["model"])) if "model" in e else e
        m["ensemble"] = [entry(e) for e in m["ensemble"]]
    if "classifier" in m:
        m["classifier"]["model"] = absolute(m["classifier"]["model"])
    if key == "min_score" and "classifier" in m:
        m["classifier"]["min_score"] = 0.0
    else:  # a one-stage detector: the rows vary its own threshold
        m["output"]["score_threshold"] = 0.1
    (work / out).write_text(yaml.safe_dump(m, sort_keys=False))


lowered(mask, "mask.yaml", "min_score")
if yaml.safe_load(mask.read_text()).get("classifier"):  # a classifier to hand the labelled faces to
    (work / "two-stage").touch()
lowered(head, "head.yaml", "score_threshold")
PY

"$eval_bin" -d "$work/head.yaml" --data "$work/heldout" --classes 0=covered,1=bare --operating-points \
    --json "$work/head.json" --threads 1 >/dev/null
"$eval_bin" -d "$work/mask.yaml" --data "$KG_SHARED_DIR/datasets/mask-yolo/train" --classes 0=no_mask,1=with_mask \
    --operating-points --json "$work/mask.json" --threads 1 >/dev/null

/usr/bin/python3 - "$work" "$head" "$mask" <<'PY'
import json, pathlib, sys

work = pathlib.Path(sys.argv[1])
for name, manifest, data, classes, thresholds in [
    ("head covering", sys.argv[2], "helmet-yolo/train, 10% held out", ("covered", "bare"), (0.25, 0.3, 0.35, 0.4, 0.45)),
    ("mask", sys.argv[3], "mask-yolo/train", ("no_mask", "with_mask"), (0.2, 0.25, 0.3, 0.35, 0.4)),
]:
    r = json.loads((work / ("head.json" if name == "head covering" else "mask.json")).read_text())
    print(f"{name}: {manifest} on {data} (IoU 0.3)")
    print(f"  threshold  {classes[0]:>10} F1 {classes[1]:>10} F1     sum   TP / FP / FN ({classes[0]}; {classes[1]})")
    for t in thresholds:
        f1, counts = [], []
        for c in classes:
            row = next(x for x in r["operating_points"][c] if abs(x["threshold"] - t) < 1e-6)
            tp, fp, fn = row["tp"], row["fp"], row["fn"]
            p, rc = tp / max(1, tp + fp), tp / max(1, tp + fn)
            f1.append(2 * p * rc / max(1e-9, p + rc))
            counts.append(f"{tp} / {fp} / {fn}")
        print(f"  {t:9.2f}  {f1[0]:13.3f} {f1[1]:13.3f}  {sum(f1):6.3f}   {counts[0]}; {counts[1]}")
    print()
PY

# Only a two-stage manifest has a classifier to hand boxes to.
if [ -e "$work/two-stage" ]; then
for set in faces-heldout faces-all; do
  for hat in 0 1; do
    "$eval_bin" -d "$mask" --data "$work/$set" --classes "$hat=no_mask,9=with_mask" --given-boxes --errors \
      --json "$work/$set-$hat.json" --threads 1 >/dev/null
  done
done
/usr/bin/python3 - "$work" "$mask" <<'PY'
import json, pathlib, sys

work = pathlib.Path(sys.argv[1])
print(f"mask classifier of {sys.argv[2]} on the labelled bare faces of helmet-yolo/train (--given-boxes)")
print("  photos        hard hat   called no_mask / with_mask / dropped")
for name, label in (("faces-heldout", "held out"), ("faces-all", "all")):
    for hat, worn in ((0, "yes"), (1, "no")):
        e = json.loads((work / f"{name}-{hat}.json").read_text())["errors"]
        row, missed = e["confusion"]["no_mask"], e["missed"]["no_mask"]
        print(f"  {label:<12}  {worn:<8}   {row['no_mask']:>3} / {row['with_mask']:>3} / {missed['count']:>3} "
              f"of {missed['labelled']}")
print()
PY
fi

# Each candidate against the default it would replace, at the thresholds its manifest sets.
compare() {  # manifest, default, data, classes
  [ "$(readlink -f "$1")" = "$(readlink -f "$2")" ] && return 0
  "$eval_bin" -d "$1" --data "$3" --classes "$4" --compare "$2" --bootstrap 2000 --threads 1 \
    | sed -n '/^F1@0.3 against/,/^time per image/p' | grep -v '^time per image'
  echo
}
compare "$head" "$root/models/kitchen-head-covering.yaml" "$work/heldout" 0=covered,1=bare
compare "$mask" "$root/models/kitchen-mask.yaml" "$KG_SHARED_DIR/datasets/mask-yolo/train" 0=no_mask,1=with_mask
