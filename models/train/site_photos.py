"""A canteen's own labelled frames, for fine-tuning the shipped models on its kitchen (`--site` of
train_head_detector.py and train_mask_classifier.py; models/README.md, "Your own kitchen's photos").

The public data these models learnt from holds no kitchens: building sites, streets, close-up face
photos. A few hundred of a canteen's own frames, labelled, are what the models lack most. A site
folder is in the format kitchen-eval reads and writes (`kitchen-eval --write-labels` pre-labels
frames with a check's own boxes) and that labelling tools import and export as "YOLO":

    site/images/NAME.jpg   (or .jpeg / .png)
    site/labels/NAME.txt   one line per head: "class cx cy w h", normalised to the frame

Every image needs its label file, an empty one where the frame shows no head: a missing file is
more often a frame nobody labelled than a frame with nothing in it, and training on it as "no head
here" would teach the network to miss the heads it shows. The boxes are head boxes, as the head
network finds them (hair, cap or hat included). The classes depend on the model trained:

    head detector    0 = covered head, 1 = bare head            (as helmet-yolo, and --classes 0=covered,1=bare)
    mask classifier  0 = no_mask, 1 = with_mask, 2 = background (not a head: a false alarm to unlearn)

Reads labels only (no PyTorch, no OpenCV), so that the checks can run where training cannot.
"""

import math
import pathlib

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class SiteDataError(ValueError):
    """A site folder that cannot be trained on, with the file and line at fault."""


def read_folder(folder, n_classes):
    """[(image path, [(class, cx, cy, w, h), ...]), ...] sorted by image name, for every image of
    `folder`/images; raises SiteDataError naming the file (and line) at fault."""
    root = pathlib.Path(folder)
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir():
        raise SiteDataError(f"{root}: no images/ folder (a site folder holds images/ and labels/)")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SiteDataError(f"{images_dir}: no .jpg, .jpeg or .png images")
    stems = {}
    for p in images:
        if p.stem in stems:
            raise SiteDataError(f"{p} and {stems[p.stem]} would share the label file {p.stem}.txt")
        stems[p.stem] = p
    out = []
    for image in images:
        label_file = labels_dir / (image.stem + ".txt")
        if not label_file.is_file():
            raise SiteDataError(f"{label_file}: missing (a frame with no head needs an empty label file)")
        out.append((image, read_labels(label_file, n_classes)))
    return out


def read_labels(path, n_classes):
    """[(class, cx, cy, w, h), ...] of one label file; blank lines are skipped. A segmentation
    export's polygon, 'class x1 y1 x2 y2 x3 y3 ...', is read as its bounding box, clipped to the
    frame, as Ultralytics and kitchen-eval read it."""
    boxes = []
    for n, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{n}"
        polygon = len(fields) >= 7 and len(fields) % 2 == 1
        if len(fields) != 5 and not polygon:
            raise SiteDataError(f"{where}: expected 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...', "
                                f"got {line.strip()!r}")
        try:
            cls = int(fields[0])
        except ValueError:
            raise SiteDataError(f"{where}: class {fields[0]!r} is not a whole number") from None
        if not 0 <= cls < n_classes:
            raise SiteDataError(f"{where}: class {cls} is not one of 0 to {n_classes - 1}")
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError:
            raise SiteDataError(f"{where}: {'the points' if polygon else 'cx cy w h'} must be numbers, "
                                f"got {' '.join(fields[1:])!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise SiteDataError(f"{where}: {'the points' if polygon else 'cx cy w h'} must be finite numbers")
        if polygon:
            xs, ys = values[0::2], values[1::2]
            cx, cy, w, h = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)
        else:
            cx, cy, w, h = values
        if not (0 < w <= 1 and 0 < h <= 1):
            raise SiteDataError(f"{where}: w and h are shares of the frame, over 0 and at most 1 (pixels?)")
        if not (0 <= cx <= 1 and 0 <= cy <= 1):
            raise SiteDataError(f"{where}: cx and cy are shares of the frame, from 0 to 1 (pixels?)")
        if polygon:  # a polygon traced past the frame's edge: the part inside
            x1, x2 = max(0.0, cx - w / 2), min(1.0, cx + w / 2)
            y1, y2 = max(0.0, cy - h / 2), min(1.0, cy + h / 2)
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        boxes.append((cls, cx, cy, w, h))
    return boxes


def read_folders(folders, n_classes):
    """read_folder() of each of `folders`, joined."""
    return [item for f in folders for item in read_folder(f, n_classes)]


def main(argv=None):
    """Checks a site folder before labelling work is trained on: prints what it holds, or the file
    and line at fault (exit status 2)."""
    import argparse
    import collections
    import sys

    ap = argparse.ArgumentParser(description="Checks a canteen's labelled frames (a site folder) for --site.")
    ap.add_argument("folder", help="a site folder: images/ and labels/")
    ap.add_argument("--model", choices=["heads", "masks"], required=True,
                    help="heads: the head detector's classes (0 covered, 1 bare); masks: the mask "
                         "classifier's (0 no_mask, 1 with_mask, 2 background)")
    args = ap.parse_args(argv)
    names = {"heads": ["covered", "bare"], "masks": ["no_mask", "with_mask", "background"]}[args.model]
    try:
        frames = read_folder(args.folder, len(names))
    except SiteDataError as e:
        print(f"site_photos: {e}", file=sys.stderr)
        return 2
    counts = collections.Counter(box[0] for _, boxes in frames for box in boxes)
    empty = sum(1 for _, boxes in frames if not boxes)
    print(f"{args.folder}: {len(frames)} frames ({empty} with no head), "
          + ", ".join(f"{counts[c]} {name}" for c, name in enumerate(names)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
