#!/usr/bin/python3
"""Finds the face in each mask-crops photo, so that the head networks learn face boxes, not photo boxes.

    /usr/bin/python3 models/train/label_face_boxes.py      # writes models/train/face_boxes.json (~1 min)

Most of ../shared/datasets/mask-crops are tight face crops: the photo is the face. Some are wider
shots (a person to the waist, two people): pasted whole as one "face", they teach the head network
that a torso is a face, one cause of the boxes it leaves on non-faces. The labeller here is
UltraFace masked-face RFB-640 from ../shared/models (MIT licence, LICENSE.ultraface there): run on
the photo with a grey margin around it (so a face that fills the photo is seen whole), it sorts each
photo into:

  whole   one confident face covering at least half the photo: the photo is the face
  face    one confident face, smaller: its box [x1, y1, x2, y2] in photo pixels
  skip    two or more confident faces: a paste would hold faces nobody labelled
  none    no confident face. Mostly (in a look at 48 of them) faces cropped so tight that the
          labeller cannot see them whole, a few wider shots with a face too small or too turned:
          training takes them as "whole", as it took every photo before

The result is pinned in models/train/face_boxes.json (file name -> label) so that training does not
depend on the reference model being present; train_head_detector.py reads it with --face-boxes.
The reference model labels training photos only: it is not shipped, and nothing of mask-yolo is used.
"""

import argparse
import json
import pathlib

import cv2
import numpy as np

import common

SCORE = 0.7   # the reference manifest's threshold is 0.6: stricter, a face labelled here must be one
NMS_IOU = 0.3


def detect(net, img):
    """Faces (either class) in `img`, as [x1, y1, x2, y2, score] in img pixels."""
    h, w = img.shape[:2]
    # A 4:3 grey canvas twice the photo's size with the photo in its centre: a tight crop becomes a
    # face with some surroundings, the way the detector was trained to see one.
    cw = max(2 * w, int(2 * h * 4 / 3))
    ch = int(cw * 3 / 4)
    ox, oy = (cw - w) // 2, (ch - h) // 2
    canvas = np.full((ch, cw, 3), 127, np.uint8)
    canvas[oy:oy + h, ox:ox + w] = img
    blob = cv2.dnn.blobFromImage(canvas, 1 / 128.0, (640, 480), (127, 127, 127), swapRB=True)
    net.setInput(blob)
    boxes, scores = net.forward(["boxes", "scores"])
    boxes, scores = boxes[0], scores[0]
    best = scores[:, 1:].max(1)
    keep = best >= SCORE
    rects = [[float(b[0] * cw), float(b[1] * ch), float((b[2] - b[0]) * cw), float((b[3] - b[1]) * ch)]
             for b in boxes[keep]]
    idx = cv2.dnn.NMSBoxes(rects, best[keep].astype(float).tolist(), SCORE, NMS_IOU)
    out = []
    for i in np.array(idx).reshape(-1):
        x, y, bw, bh = rects[i]
        x1, y1 = max(0.0, x - ox), max(0.0, y - oy)
        x2, y2 = min(float(w), x + bw - ox), min(float(h), y + bh - oy)
        if x2 > x1 and y2 > y1:
            out.append([x1, y1, x2, y2, float(best[keep][i])])
    return out


def label(faces, w, h):
    if not faces:
        return "none"
    if len(faces) > 1:
        return "skip"
    x1, y1, x2, y2, _ = faces[0]
    if (x2 - x1) * (y2 - y1) >= 0.5 * w * h:
        return "whole"
    return [round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(pathlib.Path(__file__).parent / "face_boxes.json"))
    args = ap.parse_args()
    shared = common.shared_dir()
    model = shared / "models" / "ultraface-masked-face-rfb-640.onnx"
    net = cv2.dnn.readNet(str(model))
    root = shared / "datasets" / "mask-crops"
    result, counts = {}, {"whole": 0, "face": 0, "skip": 0, "none": 0}
    for folder in ["with_mask", "without_mask"]:
        for p in sorted((root / folder).glob("*.jpg")):
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise SystemExit(f"{p}: cannot read")
            v = label(detect(net, img), img.shape[1], img.shape[0])
            result[f"{folder}/{p.name}"] = v
            counts[v if isinstance(v, str) else "face"] += 1
    pathlib.Path(args.out).write_text(
        json.dumps({"labeller": model.name, "score": SCORE, "photos": result}, indent=0, sort_keys=True) + "\n")
    print(f"{len(result)} photos: {counts['whole']} whole, {counts['face']} with a face inside, "
          f"{counts['skip']} with several faces, {counts['none']} with none found; wrote {args.out}")


if __name__ == "__main__":
    main()
