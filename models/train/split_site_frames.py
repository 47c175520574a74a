#!/usr/bin/python3
"""Splits the frames the gateway saved for labelling (its `training_frames` folders,
<path>/<camera>/images/<camera>_<YYYY-MM-DD>_<HHMMSS>.jpg) into a folder to train on and a folder
to measure on, whole days at a time (models/README.md, "Your own kitchen's photos").

A fixed camera shows near-identical frames all through a shift. Split frame by frame, the frames
measured on would have near-twins among those trained on, and the measurement would credit the
fine-tuned model with memory, not skill. So a day goes wholly to one side: every Nth day in date
order is held out, N = round(1 / --heldout-share), which also cycles the held-out days through the
weekdays (the menu, the staff on duty). Every camera's frames of a held-out day are held out.

    /usr/bin/python3 models/train/split_site_frames.py /var/lib/kitchen-gateway/training-frames/cooking \\
        /var/lib/kitchen-gateway/training-frames/prep --out site --heldout-share 0.25

writes site/train/images/ and site/heldout/images/ (copies; the gateway's folder is a rolling
buffer). Label files under a camera's labels/ are copied beside their frames. It never
overwrites: an existing --out folder is refused. Deterministic: the same frames give the same split.
"""

import argparse
import collections
import pathlib
import re
import shutil
import sys

import site_photos

NAME = re.compile(r"^(?P<camera>.+)_(?P<day>\d{4}-\d\d-\d\d)_(?P<time>\d{6})(-\d+)?$")


class SplitError(ValueError):
    """Frames that cannot be split as asked, with what is wrong."""


def frames_by_day(folders):
    """{day: [(image path, camera folder), ...]} of every frame in the camera folders' images/."""
    days = collections.defaultdict(list)
    for folder in map(pathlib.Path, folders):
        images = folder / "images"
        if not images.is_dir():
            raise SplitError(f"{folder}: no images/ folder (give a camera's folder: <training_frames.path>/<camera>)")
        for p in sorted(images.iterdir()):
            if p.suffix.lower() not in site_photos.IMAGE_SUFFIXES:
                continue
            m = NAME.match(p.stem)
            if not m:
                raise SplitError(f"{p}: not named <camera>_<YYYY-MM-DD>_<HHMMSS> as the gateway names frames, "
                                 "so its day is unknown")
            days[m["day"]].append((p, folder))
    return days


def split(folders, out, heldout_share):
    """Copies the frames into out/train and out/heldout; returns {side: (days, frames, labelled)}.
    Everything is checked before the first copy, so a refused split leaves nothing behind."""
    if not 0 < heldout_share < 1:
        raise SplitError(f"--heldout-share {heldout_share}: give a share between 0 and 1, e.g. 0.25")
    out = pathlib.Path(out)
    if out.exists():
        raise SplitError(f"{out} exists (it may hold labels a person made): give a new folder")
    days = frames_by_day(folders)
    if not days:
        raise SplitError(f"no frames in {', '.join(map(str, folders))}")
    every = max(2, round(1 / heldout_share))
    if len(days) < every:
        raise SplitError(f"{len(days)} day(s) of frames: holding out every {every}th day leaves none to measure on; "
                         "collect for longer or raise --heldout-share")
    plan, names = [], {}
    summary = {"train": [0, 0, 0], "heldout": [0, 0, 0]}
    for i, day in enumerate(sorted(days)):
        side = "heldout" if i % every == every - 1 else "train"
        summary[side][0] += 1
        for image, folder in days[day]:
            if image.name in names:  # the same camera id saved under two folders
                raise SplitError(f"{image} and {names[image.name]}: two frames of one name")
            names[image.name] = image
            label = folder / "labels" / (image.stem + ".txt")
            plan.append((side, image, label if label.is_file() else None))
            summary[side][1] += 1
            summary[side][2] += label.is_file()
    for side, image, label in plan:
        (out / side / "images").mkdir(parents=True, exist_ok=True)
        shutil.copy2(image, out / side / "images" / image.name)
        if label is not None:
            (out / side / "labels").mkdir(exist_ok=True)
            shutil.copy2(label, out / side / "labels" / label.name)
    return {side: tuple(v) for side, v in summary.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", metavar="CAMERA_FOLDER",
                    help="a camera's training frames folder, <training_frames.path>/<camera> (holds images/)")
    ap.add_argument("--out", required=True, help="new folder: OUT/train and OUT/heldout are written")
    ap.add_argument("--heldout-share", type=float, default=0.25,
                    help="share of the days to hold out (every round(1/share)th day; default 0.25)")
    args = ap.parse_args()
    try:
        summary = split(args.folders, args.out, args.heldout_share)
    except SplitError as e:
        print(f"split_site_frames: {e}", file=sys.stderr)
        return 2
    for side in ("train", "heldout"):
        days, frames, labelled = summary[side]
        print(f"{side}: {frames} frames of {days} days ({labelled} with labels) in {pathlib.Path(args.out) / side}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
