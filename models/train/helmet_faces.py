"""models/train/helmet_faces.json, read and checked once for every script that uses it (the mask
classifier's training, probe_hats.py, scripts/choose.sh): which labelled heads of helmet-yolo/train
show a bare face, a masked one or none. No torch: choose.sh runs where the training stack is absent."""

import hashlib
import json
import pathlib

LABELS = pathlib.Path(__file__).resolve().parent / "helmet_faces.json"
GROUPS = ("no_mask", "with_mask", "no_face")


def read(shared, path=LABELS):
    """{photo file name: {group: [label line, ...]}}, refusing labels whose photo's label file is not
    the one they were made on (label_md5: its lines may now name other heads), an unknown group and a
    head labelled twice; ValueError naming the file and the photo."""
    doc = json.loads(pathlib.Path(path).read_text())
    labels_dir = pathlib.Path(shared) / "datasets" / "helmet-yolo" / "train" / "labels"
    for photo, groups in doc["labels"].items():
        label_file = labels_dir / (pathlib.Path(photo).stem + ".txt")
        md5 = hashlib.md5(label_file.read_bytes()).hexdigest() if label_file.exists() else "missing"
        if md5 != doc["label_md5"].get(photo):
            raise ValueError(f"{path}: {photo}: {label_file} is not the label file these labels were made on "
                             f"(md5 {md5}, expected {doc['label_md5'].get(photo)})")
        seen = set()
        for group, lines in groups.items():
            if group not in GROUPS:
                raise ValueError(f"{path}: {photo}: unknown label {group!r} (expected one of {list(GROUPS)})")
            for line in lines:
                if line in seen:
                    raise ValueError(f"{path}: {photo}: line {line} labelled twice")
                seen.add(line)
    return doc["labels"]
