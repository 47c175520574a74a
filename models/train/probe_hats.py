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
KG_SHARED_DIR) and the training scripts' modules (the crop is theirs).
"""

import pathlib
import sys

import cv2
import numpy as np

import common
import helmet_faces
from train_mask_classifier import cut

CAPS = {"white cap": (235, 235, 235), "yellow cap": (30, 200, 240), "red cap": (40, 40, 210),
        "blue cap": (200, 120, 40)}  # BGR


def paint_cap(face, colour, h, half_w, cx, shade):
    """In place: a dome of height `h` and half-width `half_w` about column `cx` over the top of the
    photo, with a band at its rim, in BGR `colour` times `shade` (one factor per column): the cap of
    train_mask_classifier.py --caps up to commit 044fd88."""
    side = face.shape[0]
    mask = np.zeros(face.shape[:2], np.uint8)
    cv2.ellipse(mask, (cx, h), (half_w, h), 0, 180, 360, 255, -1)
    cv2.rectangle(mask, (cx - half_w - 2, h - max(2, side // 24)), (cx + half_w + 2, h + max(2, side // 20)), 255, -1)
    layer = np.clip(np.asarray(colour, np.float32)[None, None, :] * shade[None, :, None], 0, 255).astype(np.uint8)
    layer = np.broadcast_to(layer, face.shape)
    face[mask > 0] = layer[mask > 0]
    return face


def with_cap(crop, bgr):
    """paint_cap()'s dome over the top 38% of a 64x64 crop, centred, shaded 1.0 to 0.8 from left to
    right."""
    side = crop.shape[0]
    return paint_cap(crop.copy(), bgr, int(side * 0.38), int(side * 0.42), side // 2,
                     np.linspace(1.0, 0.8, side, dtype=np.float32))


def bare_faces_without_hard_hat(shared):
    """The labelled boxes made square, cut as the training script cuts a head with no context."""
    src = shared / "datasets" / "helmet-yolo" / "train"
    crops = []
    for photo, groups in sorted(helmet_faces.read(shared).items()):
        rows = (src / "labels" / (pathlib.Path(photo).stem + ".txt")).read_text().split("\n")
        img = None
        for line in groups.get("no_mask", []):
            c, cx, cy, bw, bh = map(float, rows[line].split())
            if int(c) != 1:  # under a hard hat already
                continue
            if img is None:
                img = cv2.imread(str(src / "images" / photo))
            h, w = img.shape[:2]
            box = ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)
            crops.append(cv2.resize(cut(img, box, expand=0.0), (64, 64), interpolation=cv2.INTER_AREA))
    return crops


def main():
    crops = bare_faces_without_hard_hat(common.shared_dir())
    for path in sys.argv[1:] or [str(common.MODELS / "kitchen-mask-classifier.onnx")]:
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
