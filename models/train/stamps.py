"""Clip-art objects pasted as clutter: real-looking things a head network boxes and a classifier may
call a face (toys, signs, logos, fruit, kettles, balls), where the drawn clutter of
train_head_detector.py has only plates, text and painted marks.

Drawn from two Debian packages, installed for training only (`apt-get install openclipart-png
tuxpaint-stamps-default`); nothing of them is committed:
  * openclipart-png 1:0.18+dfsg-19: Open Clip Art Library, public domain (Creative Commons Public
    Domain Dedication, /usr/share/doc/openclipart-png/copyright);
  * tuxpaint-stamps-default 2022.06.04-1: Tux Paint's stamps, photos and drawings, GPL-2 or later
    (/usr/share/doc/tuxpaint-stamps-default/copyright).
Left out, because a drawn face, hat or face mask taught as "not a face" would teach the wrong
thing: the folders of people, clothes, medical things and cartoons, and every file whose name has
a word of PEOPLE_WORDS. Left out too: pictures without transparency (an opaque page, not an
object), and `cartoon/`, which tuxpaint-data (pulled in by Recommends) adds to the same folder,
so that the list does not depend on how the packages were installed.
"""

import pathlib
import re

import cv2
import numpy as np

DIRS = ("/usr/share/openclipart/png", "/usr/share/tuxpaint/stamps")
SKIP = {"people", "clothes", "medical", "cartoon"}
PEOPLE_WORDS = {
    "face", "faces", "head", "heads", "people", "person", "persons", "boy", "boys", "girl", "girls", "man", "men",
    "woman", "women", "santa", "hat", "hats", "helmet", "helmets", "cap", "smiley", "smile", "smiling", "emoticon",
    "emoticons", "snowman", "skull", "mask", "masks", "child", "children", "kid", "kids", "lady", "baby", "guy",
    "user", "users", "avatar", "portrait", "chef", "cook", "doctor", "nurse", "clown", "king", "queen", "princess",
    "prince", "pirate", "cowboy", "ninja", "ghost", "zombie", "eye", "eyes", "mouth", "nose", "player", "family"}
SIDE = 128  # stamps are kept at this longest side: they are pasted at head sizes, 10-150 px


def files(dirs=DIRS):
    """The stamp files in sorted order (the same list on every machine with the same packages)."""
    out = []
    for d in dirs:
        root = pathlib.Path(d)
        if not root.is_dir():
            raise FileNotFoundError(f"no stamps in {root}: apt-get install openclipart-png tuxpaint-stamps-default")
        out += sorted(p for p in root.rglob("*.png")
                      if not SKIP & set(p.relative_to(root).parts[:-1]) and not PEOPLE_WORDS & words(p.stem))
    if len(out) < 1000:
        raise FileNotFoundError(f"only {len(out)} stamp files in {', '.join(dirs)}: "
                                "apt-get install openclipart-png tuxpaint-stamps-default")
    return out


def words(name):
    """The lower-case words of a file name: 'brown_hair_boy_face_mike_02' -> {'brown', 'hair', 'boy', ...}."""
    return set(re.split(r"[^a-z]+", name.lower())) - {""}


def load(count, seed, dirs=DIRS):
    """`count` stamp files drawn by `seed` (a generator of their own, so that the training draws do not
    change with the count); of them, those usable as objects, each BGRA uint8 with its colour
    premultiplied by its alpha (so that resizing does not blend the black of the transparent
    pixels into the edge), cut to what its alpha shows, longest side SIDE."""
    paths = files(dirs)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(paths), min(count, len(paths)), replace=False))
    out = []
    for i in pick:
        im = cv2.imread(str(paths[i]), cv2.IMREAD_UNCHANGED)
        if im is None or im.ndim != 3 or im.shape[2] != 4:
            continue  # no alpha channel: a page, not an object
        if im.dtype != np.uint8:  # 16-bit PNGs
            im = (im / 257).astype(np.uint8)
        if im[:, :, 3].min() == 255:
            continue  # an alpha channel, all opaque: a page too
        ys, xs = np.nonzero(im[:, :, 3] > 32)
        if len(xs) < 16:
            continue
        im = im[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        if (im[:, :, 3] > 32).mean() < 0.15:  # thin line art: a few strokes, not an object
            continue
        a = im[:, :, 3:].astype(np.float32) / 255.0
        im = np.concatenate([np.round(im[:, :, :3] * a), im[:, :, 3:]], 2).astype(np.uint8)
        k = SIDE / max(im.shape[:2])
        im = cv2.resize(im, (max(1, round(im.shape[1] * k)), max(1, round(im.shape[0] * k))),
                        interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
        out.append(im)
    if not out:
        raise ValueError(f"no usable stamps among {len(pick)} files of {', '.join(dirs)}")
    return out


def add_options(ap):
    """--stamps and --stamp-count, the same in every training script that pastes objects."""
    ap.add_argument("--stamps", type=float, default=0.0,
                    help="share of training pictures with clip-art objects pasted over them (stamps.py; "
                         "default 0: the shipped models)")
    ap.add_argument("--stamp-count", type=int, default=3000, help="with --stamps, how many stamp files to draw from")


def from_options(ap, args):
    """The objects add_options()' flags ask for (none at --stamps 0), or ap.error() naming what is wrong."""
    if not 0.0 <= args.stamps <= 1.0:
        ap.error("--stamps is a share in [0, 1]")
    if args.stamp_count < 1:
        ap.error("--stamp-count is at least 1")
    if args.stamps == 0:
        return []
    try:
        objects = load(args.stamp_count, args.seed + 2)
    except (OSError, ValueError) as e:
        ap.error(f"--stamps: {e}")
    print(f"stamps: {len(objects)} clip-art objects", flush=True)
    return objects


def paste(img, x, y, w, h, stamp, rng):
    """Pastes `stamp` (BGRA, premultiplied: load()) into `img` (BGR uint8, in place), centred in the
    rectangle (x, y, w, h) and as large as fits it, its aspect kept, mirrored in half the draws, its
    light and colour varied. Returns where it is opaque: (x0, y0, mask), mask a bool array of the
    part inside the picture (empty when none is)."""
    if w <= 0 or h <= 0:
        return (max(0, x), max(0, y), np.zeros((0, 0), bool))
    sh, sw = stamp.shape[:2]
    k = min(w / sw, h / sh)
    pw, ph = max(2, int(sw * k)), max(2, int(sh * k))
    s = cv2.resize(stamp, (pw, ph), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        s = s[:, ::-1]
    x, y = x + (w - pw) // 2, y + (h - ph) // 2
    H, W = img.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + pw), min(H, y + ph)
    if x1 <= x0 or y1 <= y0:
        return (x0, y0, np.zeros((0, 0), bool))
    s = s[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.float32)
    colour = s[:, :, :3] * rng.uniform(0.5, 1.15) * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    alpha = s[:, :, 3:] / 255.0
    roi = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.clip(roi * (1 - alpha) + colour, 0, 255).astype(np.uint8)
    return (x0, y0, alpha[:, :, 0] > 0.5)
