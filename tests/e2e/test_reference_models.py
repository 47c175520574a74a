"""The dnn back-end against the public models' own reference decoding, on real photos: for every
image, the gateway's detector (through kitchen-eval --dump) and the reference post-processing give
the same boxes with the same labels. Skipped when ../shared (the models and photos) is absent."""

import json
import os
import pathlib
import subprocess

import cv2
import pytest

import kg_e2e
import reference_decoding as ref

SHARED = pathlib.Path(os.environ.get("KG_SHARED_DIR") or kg_e2e.SOURCE_DIR.parent / "shared")
MODELS, DATA = SHARED / "models", SHARED / "datasets/mask-yolo/valid"
EVAL_BIN = str(pathlib.Path(kg_e2e.GATEWAY_BIN).with_name("kitchen-eval"))

pytestmark = pytest.mark.skipif(not (MODELS / "aizoo-face-mask.caffemodel").exists(),
                                reason=f"no public reference models in {MODELS}")


def ours(manifest, tmp_path, classes=("--classes", "0=no_mask,1=with_mask")):
    dump = tmp_path / "dump.json"
    env = dict(os.environ, KG_SHARED_DIR=str(SHARED))
    subprocess.run([EVAL_BIN, "-d", str(kg_e2e.SOURCE_DIR / "models/reference" / manifest), "--data", str(DATA),
                    *classes, "--dump", str(dump)], check=True, env=env, capture_output=True)
    return json.loads(dump.read_text())


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-9)


def compare(got, expected, labels):
    """Every reference box has one of ours with the same label, IoU >= 0.99 and the same score."""
    total = 0
    for image, boxes in got.items():
        mine = sorted(((b["x"], b["y"], b["x"] + b["w"], b["y"] + b["h"], b["label"], b["score"]) for b in boxes),
                      key=lambda b: -b[5])
        theirs = sorted(((min(max(x1, 0), 1), min(max(y1, 0), 1), min(max(x2, 0), 1), min(max(y2, 0), 1), labels[c], s)
                         for x1, y1, x2, y2, c, s in expected(image)), key=lambda b: -b[5])
        assert len(mine) == len(theirs), f"{image}: {len(mine)} boxes, reference {len(theirs)}"
        for r in theirs:
            match = max(mine, key=lambda m: iou(m, r) if m[4] == r[4] else -1)
            assert match[4] == r[4] and iou(match, r) >= 0.99, (image, match, r)
            assert abs(match[5] - r[5]) < 1e-3, (image, match, r)
        total += len(theirs)
    assert total > 20  # the photos do contain faces
    return total


def test_aizoo_matches_its_reference_decoding(tmp_path):
    got = ours("aizoo-face-mask.yaml", tmp_path)
    proto, weights = str(MODELS / "aizoo-face-mask.prototxt"), str(MODELS / "aizoo-face-mask.caffemodel")
    compare(got, lambda img: ref.aizoo(proto, weights, cv2.imread(img)), {0: "with_mask", 1: "no_mask"})


def test_ultraface_masked_matches_its_reference_decoding(tmp_path):
    got = ours("ultraface-masked-face-rfb-640.yaml", tmp_path)
    model = str(MODELS / "ultraface-masked-face-rfb-640.onnx")
    compare(got, lambda img: ref.ultraface(model, cv2.imread(img), (640, 480), 0.6, 0.3), {0: "no_mask", 1: "with_mask"})


def test_ultraface_320_matches_its_reference_decoding(tmp_path):
    # A face detector: its boxes counted as the one class named (kitchen-eval refuses classes it never gives).
    got = ours("ultraface-rfb-320.yaml", tmp_path, ("--classes", "0=face,1=face", "--any-class"))
    model = str(MODELS / "ultraface-rfb-320.onnx")
    compare(got, lambda img: ref.ultraface(model, cv2.imread(img), (320, 240), 0.7, 0.3), {0: "face"})
