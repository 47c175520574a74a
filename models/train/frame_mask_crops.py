#!/usr/bin/python3
"""Finds, in each mask-crops photo, the box the head network would give that face, so that the mask
classifier also learns faces framed as the pipeline frames them.

    /usr/bin/python3 models/train/frame_mask_crops.py      # writes models/train/head_frames.json (~1 min)
    # head_frames_one_pass.json, the framing of the default head network (the classifier's step 4; ~4 min):
    cd models/train && /usr/bin/python3 frame_mask_crops.py --heads ../kitchen-one-pass-heads.onnx --size 512 \
        --out head_frames_one_pass.json

In the pipeline the classifier sees a head box from the head network (kitchen-one-pass-heads in the
default manifests, kitchen-mask-heads in models/two-networks/), made square: hair, ears,
some neck and, in a crowd, part of the next person. mask-crops photos are framed by whoever cut
them, tight on the face for most masked photos and looser for most unmasked ones. Run on the photo
with a replicated margin around it (so that a face filling the photo is seen whole), the head
network's best box over the face is kept when its size fits the face (0.6x to 2.5x its side):

  [x1, y1, x2, y2, score]   in photo pixels (may reach outside the photo: the cut repeats its edges)

Photos that label_face_boxes.py marked "skip" (several faces) and photos where no box fits are left
out; training cuts them as before. train_mask_classifier.py reads the file with --head-frames.
The result is pinned so that training does not depend on re-running the head network:
head_frames.json was made with the kitchen-mask-heads.onnx of commit 85b1705 at 384,
head_frames_one_pass.json with the kitchen-one-pass-heads.onnx of commit be061ea at 512 (3836
photos framed, 76 without a fitting box). Nothing of mask-yolo is used.
"""

import argparse
import json
import pathlib

import cv2

import common
from train_mask_classifier import detector_boxes

MIN_SCORE = 0.1


def head_box(net, img, face, size=None):
    """The best-scoring head box around `face` ([x1, y1, x2, y2] in photo pixels), or None."""
    h, w = img.shape[:2]
    m = max(h, w) // 2
    canvas = cv2.copyMakeBorder(img, m, m, m, m, cv2.BORDER_REPLICATE)
    fx, fy = (face[0] + face[2]) / 2 + m, (face[1] + face[3]) / 2 + m
    side = max(face[2] - face[0], face[3] - face[1])
    best = None
    for b in detector_boxes(net, canvas, MIN_SCORE, size):
        if not (b[0] <= fx <= b[2] and b[1] <= fy <= b[3]):
            continue
        if not 0.6 * side <= max(b[2] - b[0], b[3] - b[1]) <= 2.5 * side:
            continue
        if best is None or b[4] > best[4]:
            best = b
    if best is None:
        return None
    return [round(best[0] - m, 1), round(best[1] - m, 1), round(best[2] - m, 1), round(best[3] - m, 1),
            round(best[4], 3)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = pathlib.Path(__file__).parent
    ap.add_argument("--heads", default=str(common.MODELS / "kitchen-mask-heads.onnx"),
                    help="head network, or several separated by commas (an ensemble: their maps averaged)")
    ap.add_argument("--size", type=int, default=0,
                    help="input size the head network runs at (0: the 384 it was exported at)")
    ap.add_argument("--face-boxes", default=str(here / "face_boxes.json"))
    ap.add_argument("--out", default=str(here / "head_frames.json"))
    args = ap.parse_args()
    common.seed_everything(0, 1)
    root = common.shared_dir() / "datasets" / "mask-crops"
    faces = json.loads(pathlib.Path(args.face_boxes).read_text())["photos"]
    net = common.read_heads(args.heads)
    result, missed = {}, 0
    for folder in ["with_mask", "without_mask"]:
        for p in sorted((root / folder).glob("*.jpg")):
            key = f"{folder}/{p.name}"
            v = faces.get(key, "whole")
            if v == "skip":
                continue
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise SystemExit(f"{p}: cannot read")
            b = head_box(net, img, v if isinstance(v, list) else [0, 0, img.shape[1], img.shape[0]],
                         args.size or None)
            if b is None:
                missed += 1
            else:
                result[key] = b
    labeller = ",".join(pathlib.Path(h).name for h in args.heads.split(",") if h)
    out = {"labeller": labeller, "min_score": MIN_SCORE, "photos": result}
    if args.size:
        out["size"] = args.size
    pathlib.Path(args.out).write_text(json.dumps(out, indent=0, sort_keys=True) + "\n")
    print(f"{len(result)} photos framed, {missed} without a fitting head box; wrote {args.out}")


if __name__ == "__main__":
    main()
