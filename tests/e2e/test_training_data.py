"""The labels this repository adds to the shared photos for training (models/train/helmet_faces.json)
name heads that exist: each photo is in helmet-yolo/train with the label file the labels were made
on (its md5), each line number is a box line with only box lines before it (the training script
numbers boxes, the file numbers lines), each head was big enough to be looked at (16 px), and no
head has two labels. A relabelled or re-exported dataset would otherwise train on the wrong heads
without a word. Skipped when ../shared is absent."""

import hashlib
import json
import os
import pathlib

import pytest

import kg_e2e

SHARED = pathlib.Path(os.environ.get("KG_SHARED_DIR") or kg_e2e.SOURCE_DIR.parent / "shared")
HELMET = SHARED / "datasets" / "helmet-yolo" / "train"
LABELS = kg_e2e.SOURCE_DIR / "models" / "train" / "helmet_faces.json"
GROUPS = {"no_mask", "with_mask", "no_face"}


def test_helmet_faces_file_is_well_formed():
    doc = json.loads(LABELS.read_text())
    assert doc["about"].strip()
    seen = set()
    for photo, groups in doc["labels"].items():
        assert groups, photo
        assert set(groups) <= GROUPS, f"{photo}: {set(groups) - GROUPS}"
        for lines in groups.values():
            for line in lines:
                assert isinstance(line, int) and line >= 0, (photo, line)
                assert (photo, line) not in seen, f"{photo}: line {line} labelled twice"
                seen.add((photo, line))
    counts = {g: sum(len(v.get(g, [])) for v in doc["labels"].values()) for g in GROUPS}
    assert counts == {"no_mask": 244, "with_mask": 1, "no_face": 25}
    assert set(doc["label_md5"]) == set(doc["labels"]), "every labelled photo needs the md5 of its label file"


@pytest.mark.skipif(not HELMET.exists(), reason=f"no helmet photos in {HELMET}")
def test_helmet_faces_name_heads_of_the_shared_photos():
    import cv2

    doc = json.loads(LABELS.read_text())
    for photo, groups in doc["labels"].items():
        image = HELMET / "images" / photo
        assert image.exists(), f"{LABELS.name}: {photo} is not in {HELMET}"
        label_file = HELMET / "labels" / (image.stem + ".txt")
        assert hashlib.md5(label_file.read_bytes()).hexdigest() == doc["label_md5"][photo], (
            f"{label_file} changed since {LABELS.name} was made: its line numbers may name other heads")
        rows = label_file.read_text().split("\n")
        h, w = cv2.imread(str(image)).shape[:2]
        for line in (n for lines in groups.values() for n in lines):
            assert line < len(rows), f"{photo}: line {line} past the end of its label file"
            assert all(len(r.split()) == 5 for r in rows[:line + 1]), (
                f"{photo}: line {line} is not a box, or comes after a line that is not one")
            parts = rows[line].split()
            bw, bh = float(parts[3]) * w, float(parts[4]) * h
            assert min(bw, bh) >= 16, f"{photo}: line {line} is a {bw:.0f}x{bh:.0f} px head, under the 16 px labelled"
