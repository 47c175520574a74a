#!/usr/bin/python3
"""Trains kitchen-heads: a small single-stage, anchor-free (CenterNet-style) head detector with a
covered / bare attribute, and exports models/kitchen-heads.onnx.

    /usr/bin/python3 models/train/train_head_detector.py            # from scratch: 3000 steps (commit e6fb04c's model)

The shipped model (models/kitchen-heads.md) is that one fine-tuned (batch norms frozen):

    git show e6fb04c:models/kitchen-heads.onnx > /tmp/kitchen-heads-v1.onnx
    nice -n 5 /usr/bin/python3 models/train/train_head_detector.py --init /tmp/kitchen-heads-v1.onnx \
        --steps 1500 --lr 1e-3 --seed 1 --threads 2                 # ~8 min on two free cores

Times are of two free cores with this script (models/kitchen-heads.md, "Training time", and
models/log/kitchen-heads.md, "Training time: what changed, and how it was checked": the same
weights as when each file was made, in less time).

kitchen-mask-heads, the mask check's network of models/two-networks/ (models/kitchen-heads.md), ~25 min:

    nice -n 5 /usr/bin/python3 models/train/train_head_detector.py --aspect-max 2.0 --squeeze-faces \
        --steps 10000 --lr 3e-3 --seed 3 --threads 2 --ema 0.999 --out models/kitchen-mask-heads.onnx

kitchen-one-pass-heads, the network of the default manifests (both checks): the same with drawn clutter
in half the training crops, ~25 min:

    nice -n 5 /usr/bin/python3 models/train/train_head_detector.py --aspect-max 2.0 --squeeze-faces \
        --steps 10000 --lr 3e-3 --seed 3 --threads 2 --ema 0.999 --clutter 0.5 --out models/kitchen-one-pass-heads.onnx

kitchen-covering-heads, the second network of the default head-covering check (its maps averaged with
kitchen-one-pass-heads'): the same trained twice as long, 49 min (63 before):

    nice -n 5 /usr/bin/python3 models/train/train_head_detector.py --aspect-max 2.0 --squeeze-faces \
        --steps 20000 --lr 3e-3 --seed 3 --threads 2 --ema 0.999 --clutter 0.5 --out models/kitchen-covering-heads.onnx

Tried and not shipped: the lab log (models/log/kitchen-heads.md) holds each command. The code of those
that changed the training (BlazeFace's trunk, distillation, mosaic, clip-art objects, channels-last) was
removed after commit 044fd88, the last that has it (`git worktree add ../kg-044fd88 044fd88` to rerun
one). Those that only set this script's options still run here, e.g. "More and smaller pasted faces":

    nice -n 5 /usr/bin/python3 models/train/train_head_detector.py --aspect-max 2.0 --squeeze-faces \
        --steps 10000 --lr 3e-3 --seed 3 --threads 2 --ema 0.999 --clutter 0.5 \
        --paste-sizes 0.04,0.6 --paste-max 5 --out /tmp/kitchen-crowd-heads.onnx

Data:
  * ../shared/datasets/helmet-yolo/train ("helmet detection" dataset v3, CC BY 4.0): heads with
    class 0 helmet (covered) / 1 nohelmet (bare). 10% of it (seeded) is held out for monitoring.
  * ../shared/datasets/mask-crops (Face-Mask-Detection, MIT): face photos pasted, feathered, onto the
    helmet photos at many sizes, as extra heads/faces (masked and not, close up). Their covering is
    unknown, so they train the "head" score and box only, not the attribute.
  Never ../shared/datasets/mask-yolo (evaluation only, its licence forbids training).

Model: 384x384 RGB input (trained on 320x320 crops), (x - 127.5) / 127.5; plain 3x3 convolutions to stride 32, a small
top-down neck back to stride 8, one head per stride-8 cell (48x48): head score, covered
probability, centre offset (cells), log size. Exported outputs (both from one file):
  heads    [1, 5, 48, 48] = head score, dx, dy, w, h
  covering [1, 6, 48, 48] = covered score (head * p), bare score (head * (1 - p)), dx, dy, w, h
where the box centre is ((col + dx) * 8, (row + dy) * 8) and w, h are in input pixels
(layout `centernet` in src/vision/dnn/decoders.hpp).
"""

import argparse
import dataclasses
import json
import math
import pathlib
import time

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import common
import site_photos

S = 384  # inference input (exported)
TS = 320  # training crops: the network is fully convolutional, smaller crops train faster
STRIDE = 8
G = S // STRIDE
TG = TS // STRIDE


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How training crops are made: the command's augmentation options, passed to make_sample()."""
    # Widest horizontal squeeze (--aspect-max). Cameras are 16:9 and the gateway stretches the frame
    # to the square input, so every head it sees is 16/9 = 1.78x taller than wide than it is in the
    # room; the first shipped models were trained up to 1.45 (models/kitchen-heads.md), and this
    # default keeps their command reproducible.
    aspect_max: float = 1.45
    squeeze_faces: bool = False  # pasted faces stretched like the crop (the first shipped models: not)
    paste_rate: float = 0.5  # share of crops that get pasted faces
    paste_sizes: tuple[float, float] = (0.08, 0.6)  # pasted face widths, as shares of S (log-uniform)
    paste_max: int = 3  # most faces pasted into one crop
    # Share of crops with drawn signs and marks, unlabelled (the first shipped models: 0;
    # kitchen-one-pass-heads and kitchen-covering-heads: 0.5)
    clutter: float = 0.0


def pw(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def separable(cin, cout, stride=1):
    """A 3x3 depthwise convolution, then a 1x1 one (MobileNet's block): about an eighth of conv()'s
    multiplications at these widths."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                         nn.ReLU(inplace=True), pw(cin, cout))


class HeadNet(nn.Module):
    """Plain 3x3 convolutions. With `separable`, the layers at strides 4 and 8 (c3 after its first
    layer, and s3) are depthwise-separable instead: they hold a tenth of the weights but take two
    thirds of cv::dnn's time at 512 (a pass 21.2 -> 11.3 ms in Python's cv2 on one core, a
    training step 0.128 -> 0.140 s; models/log/kitchen-heads.md, "Separable layers where the
    pixels are")."""

    def __init__(self, width=1.0, separable_high=False):
        super().__init__()
        c = [max(8, int(round(v * width / 8)) * 8) for v in (16, 24, 32, 64, 96, 48)]  # never 0 channels
        hi = separable if separable_high else conv  # the blocks at strides 4 and 8
        self.c3 = nn.Sequential(conv(3, c[0], 2), hi(c[0], c[1], 2), hi(c[1], c[2], 2), hi(c[2], c[2]))  # /8
        self.c4 = nn.Sequential(conv(c[2], c[3], 2), conv(c[3], c[3]))  # /16
        self.c5 = nn.Sequential(conv(c[3], c[4], 2), conv(c[4], c[4]))  # /32
        self.l5, self.l4, self.l3 = pw(c[4], c[5]), pw(c[3], c[5]), pw(c[2], c[5])
        self.s4 = conv(c[5], c[5])
        self.s3 = hi(c[5], c[5])
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.out = nn.Conv2d(c[5], 6, 1)  # head logit, covered logit, dx, dy, log w, log h
        nn.init.constant_(self.out.bias, 0.0)
        with torch.no_grad():
            self.out.bias[0] = -math.log((1 - 0.05) / 0.05)  # rare positives: start near 0.05

    def forward(self, x):
        c3 = self.c3(x)
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        p4 = self.s4(self.l4(c4) + self.up(self.l5(c5)))
        p3 = self.s3(self.l3(c3) + self.up(p4))
        return self.out(p3)


class Exported(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        o = self.net(x)
        head = torch.sigmoid(o[:, 0:1])
        covered = torch.sigmoid(o[:, 1:2])
        box = torch.cat([o[:, 2:4], torch.exp(o[:, 4:6]) * STRIDE], 1)
        heads = torch.cat([head, box], 1)
        covering = torch.cat([head * covered, head * (1 - covered), box], 1)
        return heads, covering


# --- data ---------------------------------------------------------------------------------------------

def helmet_split(shared):
    """helmet-yolo/train's photos split as every script here splits them: (train, held out) lists of
    image paths, the held-out 10% drawn by a seeded shuffle of the sorted names."""
    root = shared / "datasets" / "helmet-yolo" / "train"
    files = sorted((root / "images").glob("*.jpg"))
    order = np.random.default_rng(0).permutation(len(files))
    n_val = len(files) // 10
    return [files[i] for i in order[n_val:]], [files[i] for i in order[:n_val]]


def read_helmet_photo(path):
    """(image, boxes [x1, y1, x2, y2, covered]): the boxes in the order of the label file's lines
    (none of whose lines is blank or malformed before the last box)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    boxes = []
    lf = path.parent.parent / "labels" / (path.stem + ".txt")
    if lf.exists():
        for line in lf.read_text().split("\n"):
            p = line.split()
            if len(p) != 5:
                continue
            c, cx, cy, bw, bh = int(p[0]), *map(float, p[1:])
            covered = 1.0 if c == 0 else 0.0
            boxes.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h, covered])
    return img, np.array(boxes, np.float32).reshape(-1, 5)


def load_helmet(shared):
    """(train, held out): lists of read_helmet_photo() in helmet_split's order."""
    train_files, val_files = helmet_split(shared)
    return [read_helmet_photo(f) for f in train_files], [read_helmet_photo(f) for f in val_files]


def read_site_photo(path, boxes):
    """A frame of a site folder (site_photos.read_folder()) as read_helmet_photo() reads a helmet
    photo: stretched to 640x640, as those photos are and as the gateway squeezes a frame into the
    network's square input, with boxes [x1, y1, x2, y2, covered] in its pixels."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise site_photos.SiteDataError(f"{path}: not an image OpenCV can read")
    img = cv2.resize(img, (640, 640), interpolation=cv2.INTER_AREA)
    out = [[(cx - w / 2) * 640, (cy - h / 2) * 640, (cx + w / 2) * 640, (cy + h / 2) * 640, 1.0 if c == 0 else 0.0]
           for c, cx, cy, w, h in boxes]
    return img, np.array(out, np.float32).reshape(-1, 5)


def load_faces(shared, limit_per_class=900, face_boxes=None):
    """Face photos for pasting: the same seeded 90% the mask classifier trains on (its 10% held out
    stays unseen by both models). With `face_boxes` (label_face_boxes.py's file), each comes with the
    box of its face ([x1, y1, x2, y2], or None where the photo is the face or the labeller found
    none) and photos of several faces are left out; without, every photo is the face (the shipped models' training)."""
    root = shared / "datasets" / "mask-crops"
    items = []
    for folder in ["with_mask", "without_mask"]:
        items += sorted((root / folder).glob("*.jpg"))
    # Same split rule as train_mask_classifier.load(): sorted by folder name, then file name.
    items = sorted(items, key=lambda p: (p.parent.name, p.name))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(items))
    train = [items[i] for i in order[len(items) // 10:]]
    sel = np.random.default_rng(1).permutation(len(train))[:2 * limit_per_class]
    photos = [train[i] for i in sorted(sel)]
    if face_boxes is None:
        return [(cv2.imread(str(p), cv2.IMREAD_COLOR), None) for p in photos]
    labels = json.loads(pathlib.Path(face_boxes).read_text())["photos"]
    out = []
    for p in photos:
        v = labels[f"{p.parent.name}/{p.name}"]
        if v != "skip":
            out.append((cv2.imread(str(p), cv2.IMREAD_COLOR), None if v in ("whole", "none") else v))
    return out


def feather_ellipse(w, h):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = ((xx + 0.5 - w / 2) / (w / 2)) ** 2 + ((yy + 0.5 - h / 2) / (h / 2)) ** 2
    return np.clip((1.15 - d) / 0.3, 0, 1)[..., None]


CLUTTER_COLOURS = [(0, 0, 230), (0, 200, 255), (0, 200, 0), (230, 120, 0), (200, 0, 200), (255, 255, 255),
                   (20, 20, 20), (0, 140, 255), (200, 200, 0)]


def unhidden(objs, x, y, w, h):
    """The objects of which under 40% lies under the rectangle (x, y, w, h) pasted or drawn over them."""
    return [o for o in objs
            if max(0, min(o[2], x + w) - max(o[0], x)) * max(0, min(o[3], y + h) - max(o[1], y))
            < 0.4 * (o[2] - o[0]) * (o[3] - o[1])]


def clutter_colour(rng):
    return tuple(int(c) for c in CLUTTER_COLOURS[int(rng.integers(len(CLUTTER_COLOURS)))])


def paint_clutter(patch, rng):
    """Paints one sign, label, text or painted mark over all of `patch` (in place)."""
    h, w = patch.shape[:2]
    kind = rng.random()
    if kind < 0.6:  # a sign or label: a plate with text, or text alone
        if rng.random() < 0.6:
            patch[:] = clutter_colour(rng)
        text = "".join(rng.choice(list("ABCDEFGHKLMNOPRSTUXZ0123456789"), int(rng.integers(1, 5))))
        scale = max(0.3, h / 40 * rng.uniform(0.6, 1.0))
        cv2.putText(patch, text, (int(rng.integers(0, max(1, w // 3))), int(h * rng.uniform(0.6, 0.95))),
                    int(rng.choice([0, 1, 2, 3, 4])), scale, clutter_colour(rng), max(1, int(scale * 2)))
    else:  # a painted mark: a cross, a chevron or a bar
        t = max(2, w // 8)
        c = clutter_colour(rng)
        m = int(rng.integers(0, 3))
        if m == 0:
            cv2.line(patch, (0, 0), (w - 1, h - 1), c, t)
            cv2.line(patch, (0, h - 1), (w - 1, 0), c, t)
        elif m == 1:
            cv2.polylines(patch, [np.array([[0, h - 1], [w // 2, 0], [w - 1, h - 1]], np.int32)], False, c, t)
        else:
            patch[h // 3:2 * h // 3] = c


def draw_clutter(out, objs, rng):
    """1-3 signs, labels, text and painted marks of head size, unlabelled: what the head networks
    box in street and kitchen pictures and the building-site photos rarely show. Heads they hide
    are dropped from `objs`."""
    for _ in range(int(rng.integers(1, 4))):
        w = int(TS * math.exp(rng.uniform(math.log(0.05), math.log(0.3))))
        h = int(w * rng.uniform(0.5, 1.3))
        x, y = int(rng.integers(0, max(1, TS - w))), int(rng.integers(0, max(1, TS - h)))
        patch = out[y:y + h, x:x + w].copy()
        paint_clutter(patch, rng)
        out[y:y + h, x:x + w] = patch
        objs = unhidden(objs, x, y, w, h)
    return out, objs


def make_sample(train, faces, recipe, rng):
    img, boxes = train[int(rng.integers(len(train)))]
    H, W = img.shape[:2]
    # Crop window: anything from the whole photo to a close-up (heads from ~10 px to ~150 px at 384).
    # Object scale as at inference (the whole photo at S) down to a 3x zoom.
    side = W * TS / S * math.exp(rng.uniform(math.log(0.33), math.log(1.0)))
    aspect = math.exp(rng.uniform(math.log(0.7), math.log(recipe.aspect_max)))  # stretch: 16:9 cameras squeezed to square
    ww, wh = side * math.sqrt(aspect), side / math.sqrt(aspect)
    if len(boxes) and rng.random() < 0.6:
        b = boxes[int(rng.integers(len(boxes)))]
        cx = (b[0] + b[2]) / 2 + rng.uniform(-0.4, 0.4) * ww
        cy = (b[1] + b[3]) / 2 + rng.uniform(-0.4, 0.4) * wh
    else:
        cx, cy = rng.uniform(0.3, 0.7) * W, rng.uniform(0.3, 0.7) * H
    x0, y0 = cx - ww / 2, cy - wh / 2
    sx, sy = TS / ww, TS / wh
    m = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]], np.float32)
    out = cv2.warpAffine(img, m, (TS, TS), flags=cv2.INTER_LINEAR if sx > 1 else cv2.INTER_AREA,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(114, 114, 114))
    objs = []
    for b in boxes:
        x1, y1, x2, y2 = (b[0] - x0) * sx, (b[1] - y0) * sy, (b[2] - x0) * sx, (b[3] - y0) * sy
        cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(TS, x2), min(TS, y2)
        full = (x2 - x1) * (y2 - y1)
        if cx2 <= cx1 or cy2 <= cy1 or full <= 0:
            continue
        if (cx2 - cx1) * (cy2 - cy1) / full < 0.5:
            continue  # mostly outside the window: neither a positive nor worth teaching as one
        objs.append([cx1, cy1, cx2, cy2, b[4]])
    # Paste face photos as extra close-up heads.
    if rng.random() < recipe.paste_rate:
        for _ in range(int(rng.integers(1, recipe.paste_max + 1))):
            f, fb = faces[int(rng.integers(len(faces)))]
            lo, hi = recipe.paste_sizes
            fw = S * math.exp(rng.uniform(math.log(lo), math.log(hi)))
            fh = fw * rng.uniform(1.0, 1.35) * (aspect if recipe.squeeze_faces else 1.0)
            if fb is None:  # the photo is the face
                fw, fh = int(fw), int(min(fh, TS - 2))
                cut, lx1, ly1, lx2, ly2 = f, 0, 0, fw, fh
            else:
                # The face (fw x fh) with some of the photo around it: the margin shows the network
                # what is not face, the label is the face alone.
                bw, bh = fb[2] - fb[0], fb[3] - fb[1]
                sx, sy = fw / bw, fh / bh
                m = rng.uniform(0.15, 0.3)
                x1, y1 = max(0, int(fb[0] - m * bw)), max(0, int(fb[1] - m * bh))
                x2, y2 = min(f.shape[1], int(fb[2] + m * bw) + 1), min(f.shape[0], int(fb[3] + m * bh) + 1)
                cut = f[y1:y2, x1:x2]
                k = min(1.0, (TS - 2) / ((x2 - x1) * sx), (TS - 2) / ((y2 - y1) * sy))  # must fit the crop
                sx, sy = sx * k, sy * k
                fw, fh = max(2, int((x2 - x1) * sx)), max(2, int((y2 - y1) * sy))
                lx1, ly1 = (fb[0] - x1) * sx, (fb[1] - y1) * sy
                lx2, ly2 = min(fw, (fb[2] - x1) * sx), min(fh, (fb[3] - y1) * sy)
            px, py = int(rng.integers(0, max(1, TS - fw))), int(rng.integers(0, max(1, TS - fh)))
            face = cv2.resize(cut, (fw, fh), interpolation=cv2.INTER_AREA)
            face = common.photometric(face, rng, 0.5)
            alpha = feather_ellipse(fw, fh) if rng.random() < 0.7 else np.ones((fh, fw, 1), np.float32)
            roi = out[py:py + fh, px:px + fw].astype(np.float32)
            out[py:py + fh, px:px + fw] = (roi * (1 - alpha) + face.astype(np.float32) * alpha).astype(np.uint8)
            # Heads the face now hides are gone.
            objs = unhidden(objs, px, py, fw, fh) + [[px + lx1, py + ly1, px + lx2, py + ly2, -1.0]]  # -1: covering unknown
    if recipe.clutter > 0 and rng.random() < recipe.clutter:  # no draw at 0: older commands give the same weights
        out, objs = draw_clutter(out, objs, rng)
    if rng.random() < 0.5:
        out = cv2.flip(out, 1)
        objs = [[TS - o[2], o[1], TS - o[0], o[3], o[4]] for o in objs]
    out = common.photometric(out, rng, 0.6)  # milder than for crops: a 10 px head must stay a head
    if rng.random() < 0.25:
        out = common.occlude(out, rng, 0.3)
    return out, np.array(objs, np.float32).reshape(-1, 5)


def targets(objs):
    hm = np.zeros((TG, TG), np.float32)
    reg = np.zeros((4, TG, TG), np.float32)
    reg_w = np.zeros((TG, TG), np.float32)
    attr = np.zeros((TG, TG), np.float32)
    attr_w = np.zeros((TG, TG), np.float32)
    ys, xs = np.mgrid[0:TG, 0:TG].astype(np.float32)
    for x1, y1, x2, y2, cov in objs:
        w, h = (x2 - x1) / STRIDE, (y2 - y1) / STRIDE
        if w < 0.5 or h < 0.5:
            continue
        cx, cy = (x1 + x2) / 2 / STRIDE, (y1 + y2) / 2 / STRIDE
        ci, cj = min(TG - 1, int(cy)), min(TG - 1, int(cx))
        sx, sy = max(0.35, 0.54 * w / 6), max(0.35, 0.54 * h / 6)  # TTFNet's elliptical Gaussian
        g = np.exp(-((xs - cj) ** 2) / (2 * sx * sx) - ((ys - ci) ** 2) / (2 * sy * sy))
        hm = np.maximum(hm, g)
        hm[ci, cj] = 1.0
        for di in (-1, 0, 1):  # regress from the 3x3 around the centre: more signal from few photos
            for dj in (-1, 0, 1):
                i, j = ci + di, cj + dj
                if not (0 <= i < TG and 0 <= j < TG):
                    continue
                wt = 1.0 if di == 0 and dj == 0 else 0.3
                if wt <= reg_w[i, j]:
                    continue
                reg[:, i, j] = [cx - j, cy - i, math.log(w), math.log(h)]
                reg_w[i, j] = wt
                if cov >= 0:
                    attr[i, j], attr_w[i, j] = cov, wt
                else:
                    attr_w[i, j] = 0.0
    return hm, reg, reg_w, attr, attr_w


def focal(logit, gt):
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = gt.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = torch.log(1 - p) * p ** 2 * (1 - gt) ** 4 * neg
    n = pos.sum().clamp(min=1)
    return -(pos_loss.sum() + neg_loss.sum()) / n


# --- decoding for monitoring (the C++ decoder does the same) --------------------------------------

def decode(heads_or_cov, threshold, n_cls):
    """[n_cls + 4, G, G] numpy -> list of (x1, y1, x2, y2, score, cls) in input pixels, after NMS."""
    dets = []
    for c in range(n_cls):
        s = heads_or_cov[c]
        mx = cv2.dilate(s, np.ones((3, 3), np.uint8))
        for i, j in zip(*np.where((s >= threshold) & (s >= mx))):
            dx, dy, w, h = heads_or_cov[n_cls:, i, j]
            cx, cy = (j + dx) * STRIDE, (i + dy) * STRIDE
            dets.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, float(s[i, j]), c))
    dets.sort(key=lambda d: -d[4])
    keep = []
    for d in dets:
        if all(iou(d, k) < 0.4 for k in keep):
            keep.append(d)
    return keep


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / max(1e-6, (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def evaluate(model, val, threshold=0.3):
    """P/R per class (covered, bare) at IoU 0.3 on the held-out helmet photos, stretched to 384."""
    model.eval()
    tp, fp, fn = np.zeros(2), np.zeros(2), np.zeros(2)
    with torch.no_grad():
        for img, boxes in val:
            H, W = img.shape[:2]
            x = common.to_tensor([cv2.resize(img, (S, S), interpolation=cv2.INTER_AREA)])
            _, cov = model(x)
            dets = decode(cov[0].numpy(), threshold, 2)
            gt = [(b[0] * S / W, b[1] * S / H, b[2] * S / W, b[3] * S / H, 0 if b[4] > 0.5 else 1) for b in boxes]
            for c in range(2):
                g = [b for b in gt if b[4] == c]
                used = [False] * len(g)
                for d in (d for d in dets if d[5] == c):
                    best, bi = 0.3, -1
                    for k, b in enumerate(g):
                        if not used[k] and iou(d, b) >= best:
                            best, bi = iou(d, b), k
                    if bi >= 0:
                        used[bi] = True
                        tp[c] += 1
                    else:
                        fp[c] += 1
                fn[c] += used.count(False)
    p = tp / np.maximum(1, tp + fp)
    r = tp / np.maximum(1, tp + fn)
    return p, r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=None,
                    help="peak learning rate: 3e-3 from scratch, 3e-4 with --init (3e-3 on a trained network "
                         "undoes it within a few steps: held-out P and R 0 after 3 steps, models/log/kitchen-heads.md)")
    ap.add_argument("--init", default="", help="fine-tune from this kitchen-heads.onnx (batch norms frozen)")
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier of the network")
    ap.add_argument("--separable", action="store_true",
                    help="depthwise-separable layers at strides 4 and 8 (about half the network's CPU)")
    ap.add_argument("--aspect-max", type=float, default=Recipe.aspect_max,
                    help="widest horizontal squeeze of training crops (16:9 stretched to square is 1.78)")
    ap.add_argument("--squeeze-faces", action="store_true",
                    help="stretch the pasted faces by the crop's aspect too, as the camera's would be")
    ap.add_argument("--paste-rate", type=float, default=Recipe.paste_rate,
                    help="share of training crops with 1-3 pasted faces")
    ap.add_argument("--paste-sizes", default=",".join(map(str, Recipe.paste_sizes)),
                    help="smallest and largest pasted face width as shares of the 384 input, e.g. 0.04,0.6 "
                         "(faces from 15 px: crowds seen from a ceiling)")
    ap.add_argument("--paste-max", type=int, default=Recipe.paste_max, help="most faces pasted into one crop")
    ap.add_argument("--face-boxes", default="",
                    help="label_face_boxes.py's file: pasted photos are labelled with their face's box, not their own")
    ap.add_argument("--clutter", type=float, default=Recipe.clutter,
                    help="share of training crops with 1-3 drawn signs, text and marks (unlabelled)")
    ap.add_argument("--site", action="append", default=[], metavar="DIR",
                    help="a canteen's own labelled frames (site_photos.py: images/, labels/ with 0 = covered, "
                         "1 = bare head boxes), drawn for --site-share of the training crops; repeatable")
    ap.add_argument("--site-share", type=float, default=0.5,
                    help="share of the training crops cut from the --site frames (the rest from helmet-yolo)")
    ap.add_argument("--weights", default="",
                    help="start from this state dict (the .pt a run leaves in /tmp); with --steps 0: export it")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="evaluate and export a moving average of the weights with this decay (e.g. 0.999; "
                         "0, the shipped models: the last step's weights)")
    ap.add_argument("--out", default=str(common.MODELS / "kitchen-heads.onnx"))
    args = ap.parse_args()
    if args.init and args.weights:
        ap.error("--init and --weights both set the starting weights: give one")
    if not 0.0 <= args.ema < 1.0:
        ap.error("--ema is a decay in [0, 1)")
    if not 0.0 <= args.clutter <= 1.0:
        ap.error("--clutter is a share in [0, 1]")
    try:
        sizes = tuple(float(v) for v in args.paste_sizes.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 2 or not 0.0 < sizes[0] <= sizes[1] <= 1.0:
        ap.error("--paste-sizes is two shares of the input, smallest first, e.g. 0.08,0.6")
    if args.paste_max < 1:
        ap.error("--paste-max is at least 1")
    if not 0.0 <= args.site_share <= 1.0:
        ap.error("--site-share is a share in [0, 1]")
    if args.site_share != 0.5 and not args.site:
        ap.error("--site-share sets the share of the --site frames: give --site too")
    try:
        site = [read_site_photo(p, b) for p, b in site_photos.read_folders(args.site, 2)]
    except (site_photos.SiteDataError, OSError) as e:
        ap.error(f"--site: {e}")
    if args.lr is None:
        args.lr = 3e-4 if args.init else 3e-3
    if args.steps < 0 or (args.steps == 0 and not (args.init or args.weights)):
        ap.error("--steps 0 exports --weights or --init as they are; without either it would export a random network")
    common.seed_everything(args.seed, args.threads)
    shared = common.shared_dir()
    train, val = load_helmet(shared)
    faces = load_faces(shared, face_boxes=args.face_boxes or None)
    print(f"helmet-yolo: {len(train)} train, {len(val)} held out; {len(faces)} face photos to paste", flush=True)
    if site:
        n = np.concatenate([b[:, 4] for _, b in site])
        print(f"site frames: {len(site)} ({int((n == 1).sum())} covered, {int((n == 0).sum())} bare heads), "
              f"{args.site_share:.0%} of the crops", flush=True)

    recipe = Recipe(aspect_max=args.aspect_max, squeeze_faces=args.squeeze_faces, paste_rate=args.paste_rate,
                    paste_sizes=sizes, paste_max=args.paste_max, clutter=args.clutter)
    net = HeadNet(args.width, args.separable)
    model = Exported(net)
    if args.init:
        common.init_from_onnx(net, args.init, (1, 3, S, S))
        p, r = evaluate(model, val)
        print(f"from {args.init}: held-out covered P {p[0]:.3f} R {r[0]:.3f}, bare P {p[1]:.3f} R {r[1]:.3f}", flush=True)
    if args.weights:
        net.load_state_dict(torch.load(args.weights))
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=max(1, args.steps), pct_start=0.1)
    ema = common.Ema(net, args.ema) if args.ema > 0 else None
    final = Exported(ema.net) if ema else model  # what is evaluated and exported
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    acc = np.zeros(4)
    for step in range(1, args.steps + 1):
        net.train()
        if args.init:
            common.freeze_bn(net)
        # Without --site no draw is made: the other recipes' runs stay as they were, bit for bit.
        samples = [make_sample(site if site and rng.random() < args.site_share else train, faces, recipe, rng)
                   for _ in range(args.batch)]
        x = common.to_tensor([s[0] for s in samples])
        t = [targets(s[1]) for s in samples]
        hm, reg, reg_w, attr, attr_w = (torch.from_numpy(np.stack([tt[k] for tt in t])) for k in range(5))
        o = net(x)
        l_hm = focal(o[:, 0], hm)
        n = reg_w.sum().clamp(min=1)
        l_off = (F.l1_loss(o[:, 2:4], reg[:, 0:2], reduction="none").sum(1) * reg_w).sum() / n
        l_size = (F.l1_loss(o[:, 4:6], reg[:, 2:4], reduction="none").sum(1) * reg_w).sum() / n
        l_attr = (F.binary_cross_entropy_with_logits(o[:, 1], attr, reduction="none") * attr_w).sum() / \
            attr_w.sum().clamp(min=1)
        loss = l_hm + l_off + l_size + l_attr
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if ema:
            ema.update(net)
        acc += [float(l_hm), float(l_off), float(l_size), float(l_attr)]
        if step % 100 == 0 or step == args.steps:
            a = acc / 100
            acc[:] = 0
            msg = f"step {step}/{args.steps} hm {a[0]:.3f} off {a[1]:.3f} size {a[2]:.3f} attr {a[3]:.3f}"
            if step % 500 == 0 or step == args.steps:
                p, r = evaluate(final, val)
                msg += f" | held-out covered P {p[0]:.3f} R {r[0]:.3f}, bare P {p[1]:.3f} R {r[1]:.3f}"
            print(f"{msg} ({time.time() - t0:.0f} s)", flush=True)
            torch.save((ema.net if ema else net).state_dict(), "/tmp/" + pathlib.Path(args.out).stem + ".pt")

    final.eval()
    for th in (0.2, 0.3, 0.4, 0.5):
        p, r = evaluate(final, val, th)
        print(f"held-out at threshold {th}: covered P {p[0]:.3f} R {r[0]:.3f}, bare P {p[1]:.3f} R {r[1]:.3f}")
    common.export(final, args.out, (1, 3, S, S), ["heads", "covering"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
