#!/usr/bin/python3
"""Does a hat make the mask classifier see a mask? The bare faces of helmet-yolo/train that
helmet_faces.json labels `no_mask` and that wear no hard hat (helmet-yolo class 1), cut as the
training script cuts a head (the labelled box made square, 64x64), classified as they are and with a
cap drawn over the top of the head: a white one (a chef's hat, a paper cap) and coloured ones (hard
hats, coloured caps and hair nets). A classifier that reads the face changes its mind for none of
them; one that takes a coloured patch for a mask calls the capped faces masked.

    /usr/bin/python3 models/train/probe_hats.py [CLASSIFIER.onnx ...]   # default: the shipped one

A drawn cap is not a kitchen photo: this measures what the classifier responds to, not how often a
kitchen camera would see it (models/kitchen-mask-classifier.md, Limits). Needs ../shared (or
KG_SHARED_DIR); cv2 and numpy only.
"""

import json
import os
import pathlib
import sys

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent
MODELS = ROOT.parent
CAPS = {"white cap": (235, 235, 235), "yellow cap": (30, 200, 240), "red cap": (40, 40, 210),
        "blue cap": (200, 120, 40)}  # BGR


def shared_dir():
    d = pathlib.Path(os.environ.get("KG_SHARED_DIR") or MODELS.parent.parent / "shared")
    if not (d / "datasets" / "helmet-yolo").is_dir():
        sys.exit(f"probe_hats: no helmet photos in {d} (set KG_SHARED_DIR)")
    return d


def square_crop(img, box, size=64):
    """The box made square about its centre, edge pixels repeated outside the photo, as
    train_mask_classifier.cut() with no context."""
    x1, y1, x2, y2 = box
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(2.0, x2 - x1, y2 - y1)
    s = 96 / side
    m = np.array([[s, 0, -(cx - side / 2) * s], [0, s, -(cy - side / 2) * s]], np.float32)
    out = cv2.warpAffine(img, m, (96, 96), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)


def with_cap(crop, bgr, height=0.38):
    """A dome with a band over the top `height` of the crop, shaded from left to right."""
    out = crop.copy()
    h = int(crop.shape[0] * height)
    mask = np.zeros(crop.shape[:2], np.uint8)
    cv2.ellipse(mask, (32, h), (27, h), 0, 180, 360, 255, -1)
    cv2.rectangle(mask, (5, h - 4), (59, h + 3), 255, -1)
    shade = np.linspace(1.0, 0.8, crop.shape[1], dtype=np.float32)[None, :, None]
    layer = np.clip(np.array(bgr, np.float32)[None, None, :] * shade, 0, 255).astype(np.uint8)
    layer = np.broadcast_to(layer, crop.shape)
    out[mask > 0] = layer[mask > 0]
    return out


def bare_faces_without_hard_hat(shared):
    src = shared / "datasets" / "helmet-yolo" / "train"
    doc = json.loads((ROOT / "helmet_faces.json").read_text())
    crops = []
    for photo, groups in sorted(doc["labels"].items()):
        rows = (src / "labels" / (pathlib.Path(photo).stem + ".txt")).read_text().split("\n")
        img = None
        for line in groups.get("no_mask", []):
            c, cx, cy, bw, bh = map(float, rows[line].split())
            if int(c) != 1:  # under a hard hat already
                continue
            if img is None:
                img = cv2.imread(str(src / "images" / photo))
            h, w = img.shape[:2]
            crops.append(square_crop(img, ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)))
    return crops


def main():
    crops = bare_faces_without_hard_hat(shared_dir())
    for path in sys.argv[1:] or [str(MODELS / "kitchen-mask-classifier.onnx")]:
        net = cv2.dnn.readNet(path)
        print(f"{path}: {len(crops)} bare faces without a hard hat, called no_mask / with_mask / background")
        for name, draw in [("as they are", lambda c: c)] + [(k, lambda c, v=v: with_cap(c, v)) for k, v in CAPS.items()]:
            calls = []
            for c in crops:
                net.setInput(cv2.dnn.blobFromImage(draw(c), 1 / 127.5, (64, 64), (127.5,) * 3, swapRB=True))
                calls.append(int(net.forward().argmax()))
            calls = np.array(calls)
            print(f"  {name:<12} {(calls == 0).sum():>4} / {(calls == 1).sum():>4} / {(calls == 2).sum():>4}")


if __name__ == "__main__":
    main()
