#!/usr/bin/python3
"""Trains the mask classifier (face/head crop -> no_mask | with_mask | background) on
../shared/datasets/mask-crops (MIT, Face-Mask-Detection by chandrikadeb7) and background crops from
../shared/datasets/helmet-yolo/train (CC BY 4.0), and exports models/kitchen-mask-classifier.onnx.

The shipped model (models/kitchen-mask-classifier.md) is the two-class model of commit e6fb04c,
fine-tuned with the third class (step 2), then fine-tuned again with the photos also framed as the
head network frames them (step 3, frame_mask_crops.py), then again with the framing and the
background crops of the default head network, kitchen-one-pass-heads at 512 (step 4):

    git show e6fb04c:models/kitchen-mask-classifier.onnx > /tmp/kitchen-mask-classifier-v1.onnx
    git show e6fb04c:models/kitchen-heads.onnx > /tmp/kitchen-heads-v1.onnx
    nice -n 5 /usr/bin/python3 models/train/train_mask_classifier.py --init /tmp/kitchen-mask-classifier-v1.onnx \
        --heads /tmp/kitchen-heads-v1.onnx --epochs 15 --lr 3e-3 --threads 1     # ~3 min on a free core
    # step 3 (the file of step 2 is the one of commit 89db889)
    git show 89db889:models/kitchen-mask-classifier.onnx > /tmp/kitchen-mask-classifier-89db889.onnx
    cd models/train && nice -n 5 /usr/bin/python3 train_mask_classifier.py \
        --init /tmp/kitchen-mask-classifier-89db889.onnx --heads ../kitchen-mask-heads.onnx \
        --head-frames head_frames.json --epochs 30 --lr 1e-3 --ema 0.99 --threads 1   # ~6 min
    # step 4 (the file of step 3 is the one of commit eb6a91b); the shipped file byte for byte on the
    # machine it was made on (another processor rounds differently: models/kitchen-mask-classifier.md)
    git show eb6a91b:models/kitchen-mask-classifier.onnx > /tmp/kitchen-mask-classifier-eb6a91b.onnx
    cd models/train && nice -n 5 /usr/bin/python3 train_mask_classifier.py \
        --init /tmp/kitchen-mask-classifier-eb6a91b.onnx --heads ../kitchen-one-pass-heads.onnx --heads-size 512 \
        --head-frames head_frames_one_pass.json --epochs 30 --lr 1e-3 --ema 0.99 --threads 1 --seed 1   # ~5 min

`background` ("not a face or head": the two-stage detector drops the box) is learnt from crops of
helmet-yolo/train photos away from every labelled head: the head detector's own false positives
(--heads) and random boxes of head sizes. The labelled helmet heads teach only "not background"
(mask unknown). Never mask-yolo (evaluation only, its licence forbids training).

Tried and not shipped (models/log/kitchen-mask-classifier.md, "Helmet-yolo heads labelled by their
face"): --helmet-faces helmet_faces.json teaches the helmet heads a developer labelled as bare faces
`no_mask` (and those showing no face, background), 8 a batch, on step 4's command; it fixes bare
faces under hard hats (the shipped file calls 57 of 74 of them masked) and costs mask-yolo/train's
no_mask F1 a little. The lab log holds the other tried commands; the code of those that drew on
the training pictures (--clutter, --caps, --drawn-masks, --drawn-masks-heads, --stamps) was removed
after commit 044fd88, the last that has it (`git worktree add ../kg-044fd88 044fd88` to rerun one).

Reproducible: fixed seed, fixed split (sorted file names, seeded shuffle), fixed thread count.
The input is what the two-stage detector hands over: a head box from the head network
(kitchen-one-pass-heads in the default manifests), made square, resized to 64x64. Augmentation therefore covers loose and tight crops, ceiling-camera
angles (rotation, aspect), low light, grey/IR, blur, low resolution, JPEG and partial occlusion.
"""

import argparse
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
import helmet_faces
import site_photos

SIZE = 64
CLASSES = ["no_mask", "with_mask", "background"]  # output order of the exported model
BG = 2  # "not a face or head": the two-stage detector drops the box
FOLDERS = {"without_mask": 0, "with_mask": 1}


def dws(cin, cout, stride):
    """Depthwise-separable 3x3: the cheap convolution cv::dnn runs fast on one core."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MaskNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),  # 32
            dws(16, 32, 1), dws(32, 48, 2), dws(48, 48, 1),  # 16
            dws(48, 96, 2), dws(96, 96, 1),  # 8
            dws(96, 128, 2), dws(128, 128, 1))  # 4
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(128, len(CLASSES))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.fc(self.drop(x))


class Exported(nn.Module):
    """What ships: probabilities, so the C++ side needs no softmax."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.softmax(self.net(x), dim=1)


def load(shared, face_boxes=None, head_frames=None):
    """mask-crops, 90% train / 10% held out, as 96x96. Without `face_boxes` each photo is taken
    whole (the shipped model's training); with label_face_boxes.py's file, a photo whose face is a
    small part of it (a wider shot) is cut as TwoStageDetector cuts a head box, the face widened by
    10% and made square, and photos of several faces are left out, in both splits. Returns
    (photos, labels, framed) for each split: `framed` holds each photo cut by its box in
    frame_mask_crops.py's `head_frames` file (as the pipeline cuts a head box), or the photo as in
    `photos` where the file has no box for it or none is given."""
    root = shared / "datasets" / "mask-crops"
    items = []
    for folder, label in sorted(FOLDERS.items()):
        for f in sorted((root / folder).glob("*.jpg")):
            items.append((f, label))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(items))
    n_val = len(items) // 10
    val = [items[i] for i in order[:n_val]]
    train = [items[i] for i in order[n_val:]]
    boxes = json.loads(pathlib.Path(face_boxes).read_text())["photos"] if face_boxes else {}
    heads = json.loads(pathlib.Path(head_frames).read_text())["photos"] if head_frames else {}

    def read(lst):
        imgs, framed, labels = [], [], []
        for f, label in lst:
            key = f"{f.parent.name}/{f.name}"
            v = boxes.get(key, "whole")
            if v == "skip":
                continue
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            imgs.append(cut(img, v) if isinstance(v, list) else cv2.resize(img, (96, 96), interpolation=cv2.INTER_AREA))
            # The photo as the pipeline frames it (the head network's box, square, no margin), or
            # the plain photo where the head network found nothing.
            framed.append(cut(img, heads[key], expand=0.0) if key in heads else imgs[-1])
            labels.append(label)
        return (np.array(imgs, np.uint8).reshape(-1, 96, 96, 3), np.array(labels, np.int64),
                np.array(framed, np.uint8).reshape(-1, 96, 96, 3))

    return read(train), read(val)


# --- "not a face": background crops from helmet-yolo/train --------------------------------------

def cut(img, box, expand=0.1, out=96):
    """The crop TwoStageDetector::cut() hands the classifier: the box widened by `expand` on each
    side, made square around its centre, edge pixels repeated outside the picture."""
    x1, y1, x2, y2 = box[:4]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(2.0, max(x2 - x1, y2 - y1) * (1 + 2 * expand))
    s = out / side
    m = np.array([[s, 0, -(cx - side / 2) * s], [0, s, -(cy - side / 2) * s]], np.float32)
    return cv2.warpAffine(img, m, (out, out), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def box_iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / max(1e-6, (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def cut_region(box, expand=0.1):
    x1, y1, x2, y2 = box[:4]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(x2 - x1, y2 - y1) * (1 + 2 * expand) / 2
    return (cx - half, cy - half, cx + half, cy + half)


def away_from_heads(box, heads):
    """What the classifier would see of the box (widened, square) shows no labelled head: no head
    centre inside it, and it covers under 20% of any head (and a head under 20% of it)."""
    r = cut_region(box)
    ra = (r[2] - r[0]) * (r[3] - r[1])
    for h in heads:
        hx, hy = (h[0] + h[2]) / 2, (h[1] + h[3]) / 2
        if r[0] <= hx <= r[2] and r[1] <= hy <= r[3]:
            return False
        ix = max(0, min(r[2], h[2]) - max(r[0], h[0]))
        iy = max(0, min(r[3], h[3]) - max(r[1], h[1]))
        ha = max(1e-6, (h[2] - h[0]) * (h[3] - h[1]))
        if ix * iy > 0.2 * ha or ix * iy > 0.2 * ra:
            return False
    return True


def detector_boxes(net, img, threshold=0.1, size=None):
    """A head network on the whole photo stretched to size x size (default: the 384 it was
    exported at), as kitchen-eval runs it: peaks of the head map, NMS 0.4; boxes (x1, y1, x2, y2,
    score) in photo pixels."""
    import train_head_detector as thd
    S = size or thd.S
    H, W = img.shape[:2]
    blob = cv2.dnn.blobFromImage(img, 1 / 127.5, (S, S), (127.5, 127.5, 127.5), swapRB=True)
    net.setInput(blob)
    heads = net.forward("heads")[0]
    return [(d[0] * W / S, d[1] * H / S, d[2] * W / S, d[3] * H / S, float(d[4]))
            for d in thd.decode(heads, threshold, 1)]


UNKNOWN = -1  # a helmet head whose face helmet_faces.json does not label


def read_helmet_faces(path, shared):
    """helmet_faces.json (helmet_faces.read(), checked there) -> {(photo file name, line): class}; a
    head with no face to judge is background for the mask check."""
    classes = {"no_mask": 0, "with_mask": 1, "no_face": BG}
    return {(photo, line): classes[group] for photo, groups in helmet_faces.read(shared, path).items()
            for group, lines in groups.items() for line in lines}


def load_helmet_crops(shared, heads_onnx, rng, heads_size=None, face_labels=None):
    """Background crops (class BG) from helmet-yolo/train, away from every labelled head: the head
    detector's own false positives and random boxes of head sizes; and the labelled heads
    themselves with their face labels (`face_labels`, read_helmet_faces(); UNKNOWN for every head
    without: a face or head, mask unknown, which teaches only "not background"). Split as the head
    detector splits it: its held-out 10% gives the held-out crops here."""
    import train_head_detector as thd
    names = thd.helmet_split(shared)
    train, val = thd.load_helmet(shared)
    net = common.read_heads(heads_onnx)
    face_labels = face_labels or {}
    found = set()

    def crops(photos, files):
        bg, fp, heads, labels = [], 0, [], []
        for (img, boxes), f in zip(photos, files):
            H, W = img.shape[:2]
            hb = [tuple(b[:4]) for b in boxes]
            for line, b in enumerate(hb):
                if min(b[2] - b[0], b[3] - b[1]) >= 6:
                    heads.append(cut(img, b))
                    labels.append(face_labels.get((f.name, line), UNKNOWN))
                    found.add((f.name, line))
            for b in detector_boxes(net, img, size=heads_size):
                if away_from_heads(b, hb):
                    bg.append(cut(img, b))
                    fp += 1
            for _ in range(24):
                side = math.exp(rng.uniform(math.log(10), math.log(0.3 * min(W, H))))
                asp = rng.uniform(0.75, 1.35)
                w, h = side, side * asp
                x, y = rng.uniform(0, W - w), rng.uniform(0, max(1, H - h))
                b = (x, y, x + w, y + h)
                if away_from_heads(b, hb):
                    bg.append(cut(img, b))
        return (np.array(bg, np.uint8).reshape(-1, 96, 96, 3), np.array(heads, np.uint8).reshape(-1, 96, 96, 3),
                np.array(labels, np.int64), fp)

    out = crops(train, names[0]), crops(val, names[1])
    missing = sorted(set(face_labels) - found)
    if missing:
        raise ValueError(f"face labels for heads that are not in helmet-yolo/train (or under 6 px): {missing[:5]}")
    return out


def load_site_crops(folders):
    """The head boxes of site folders (site_photos.py; 0 = no_mask, 1 = with_mask, 2 = background) cut
    from the frames as the gateway cuts them (TwoStageDetector: the box as found, made square, in
    the frame's own pixels): (crops [N, 96, 96, 3], labels [N])."""
    crops, labels = [], []
    for path, boxes in site_photos.read_folders(folders, len(CLASSES)):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise site_photos.SiteDataError(f"{path}: not an image OpenCV can read")
        H, W = img.shape[:2]
        for c, cx, cy, w, h in boxes:
            crops.append(cut(img, ((cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H), expand=0.0))
            labels.append(c)
    if not crops:
        raise site_photos.SiteDataError(f"{', '.join(map(str, folders))}: no labelled head to train on")
    return np.array(crops, np.uint8).reshape(-1, 96, 96, 3), np.array(labels, np.int64)


def augment(img, rng):
    # Geometry: loose/tight crop, off-centre, tilted (ceiling cameras look down at an angle), aspect.
    s = rng.uniform(0.75, 1.3)
    ax = rng.uniform(0.85, 1.15)
    ang = rng.uniform(-20, 20)
    m = cv2.getRotationMatrix2D((48, 48), ang, s)
    m[0, :2] *= ax
    m[:, 2] += rng.uniform(-0.12, 0.12, size=2) * 96
    out = cv2.warpAffine(img, m, (96, 96), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = cv2.resize(np.ascontiguousarray(out), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    out = common.photometric(out, rng)
    if rng.random() < 0.2:  # small occluders only: a big one could hide the mask and flip the label
        out = common.occlude(out, rng, max_frac=0.3)
    return out


def predict(net, imgs):
    net.eval()
    probs = []
    with torch.no_grad():
        for i in range(0, len(imgs), 256):
            batch = [cv2.resize(im, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for im in imgs[i:i + 256]]
            probs.append(torch.softmax(net(common.to_tensor(batch)), 1).numpy())
    return np.concatenate(probs) if probs else np.zeros((0, len(CLASSES)), np.float32)


def evaluate(net, imgs, labels, bg=None, heads=None):
    """Face photos: accuracy and no_mask P/R (a face called background counts as wrong); background
    crops: the share dropped; helmet heads (images, labels): the share kept (not called background),
    and the share of those labelled (not UNKNOWN) given their label."""
    p = predict(net, imgs)
    pred = p.argmax(1)
    acc = float((pred == labels).mean())
    tp = int(((pred == 0) & (labels == 0)).sum())
    prec0 = tp / max(1, int((pred == 0).sum()))
    rec0 = tp / max(1, int((labels == 0).sum()))
    extra = {}
    if bg is not None and len(bg):
        extra["bg_dropped"] = float((predict(net, bg).argmax(1) == BG).mean())
        extra["faces_dropped"] = float((pred == BG).mean())
    if heads is not None and len(heads[0]):
        hp = predict(net, heads[0]).argmax(1)
        extra["heads_kept"] = float((hp != BG).mean())
        known = heads[1] != UNKNOWN
        if known.any():  # the helmet heads helmet_faces.json labels, held out
            extra["labelled_heads_right"] = float((hp[known] == heads[1][known]).mean())
    return acc, prec0, rec0, extra


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heads", default=str(common.MODELS / "kitchen-heads.onnx"),
                    help="head detector whose false positives on helmet-yolo/train become background crops "
                         "(several separated by commas: an ensemble, their maps averaged)")
    ap.add_argument("--heads-size", type=int, default=0,
                    help="input size --heads runs at (0: the 384 it was exported at; the default manifests run 512)")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--init", default="",
                    help="fine-tune from this kitchen-mask-classifier.onnx, two or three classes (batch norms frozen)")
    ap.add_argument("--face-boxes", default="",
                    help="label_face_boxes.py's file: wider shots cut to their face, photos of several faces left out")
    ap.add_argument("--head-frames", default="",
                    help="frame_mask_crops.py's file: photos cut as the head network frames them")
    ap.add_argument("--framed-share", type=float, default=0.5,
                    help="with --head-frames, the share of face photos in a batch cut that way")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="evaluate and export a moving average of the weights with this decay (0: the last weights)")
    ap.add_argument("--helmet-faces", default="",
                    help="helmet_faces.json: helmet-yolo heads labelled no_mask, with_mask or no_face (background), "
                         "taught as such instead of only 'not background'")
    ap.add_argument("--labelled-heads", type=int, default=8,
                    help="with --helmet-faces, labelled helmet heads added to each batch")
    ap.add_argument("--site", action="append", default=[], metavar="DIR",
                    help="a canteen's own labelled frames (site_photos.py: images/, labels/ with head boxes, "
                         "0 = no_mask, 1 = with_mask, 2 = background); repeatable")
    ap.add_argument("--site-per-batch", type=int, default=16,
                    help="crops of --site heads in each batch (beside 48 face photos, 24 background crops)")
    ap.add_argument("--out", default=str(common.MODELS / "kitchen-mask-classifier.onnx"))
    args = ap.parse_args()
    if not 0.0 <= args.framed_share <= 1.0:
        ap.error("--framed-share is a share in [0, 1]")
    if not 0.0 <= args.ema < 1.0:
        ap.error("--ema is a decay in [0, 1)")
    if args.heads_size and (args.heads_size < 64 or args.heads_size % 8):
        ap.error("--heads-size is a multiple of 8, at least 64")
    if not 0 <= args.labelled_heads <= 48:
        ap.error("--labelled-heads is 0 to 48 a batch")
    if args.labelled_heads != 8 and not args.helmet_faces:
        ap.error("--labelled-heads counts the heads of --helmet-faces: give that file too")
    if not 1 <= args.site_per_batch <= 48:
        ap.error("--site-per-batch is 1 to 48 a batch")
    if args.site_per_batch != 16 and not args.site:
        ap.error("--site-per-batch counts the crops of --site: give --site too")
    try:
        site_x, site_y = load_site_crops(args.site) if args.site else (None, None)
    except (site_photos.SiteDataError, OSError) as e:
        ap.error(f"--site: {e}")
    if args.site:
        print(f"site heads: {int((site_y == 0).sum())} no_mask, {int((site_y == 1).sum())} with_mask, "
              f"{int((site_y == BG).sum())} background; {args.site_per_batch} a batch", flush=True)
    shared = common.shared_dir()
    try:
        face_labels = read_helmet_faces(args.helmet_faces, shared) if args.helmet_faces else None
    except (OSError, ValueError, KeyError) as e:
        ap.error(f"--helmet-faces {args.helmet_faces}: {e}")
    common.seed_everything(args.seed, args.threads)
    (tx, ty, tf), (vx, vy, _) = load(shared, args.face_boxes or None, args.head_frames or None)
    print(f"mask-crops: {len(tx)} train, {len(vx)} held out "
          f"({int((ty == 0).sum())}/{int((ty == 1).sum())} no_mask/with_mask in train)", flush=True)
    rng = np.random.default_rng(args.seed)
    (bx, hx, hy, nfp), (vbx, vhx, vhy, vfp) = load_helmet_crops(
        shared, args.heads, np.random.default_rng(args.seed + 1), args.heads_size or None, face_labels)
    print(f"helmet-yolo/train: {len(bx)} background crops ({nfp} detector false positives), {len(hx)} heads; "
          f"held out: {len(vbx)} background ({vfp} false positives), {len(vhx)} heads", flush=True)
    # Without --helmet-faces every head is UNKNOWN and the batches are drawn as before.
    kept = np.flatnonzero(hy != BG)  # "not background" pool: every head but those with no face
    labelled = np.flatnonzero(hy != UNKNOWN)
    if face_labels:
        print(f"helmet heads labelled: {int((hy == 0).sum())} no_mask, {int((hy == 1).sum())} with_mask, "
              f"{int((hy == BG).sum())} no face (train); held out: {int((vhy == 0).sum())} / {int((vhy == 1).sum())} / "
              f"{int((vhy == BG).sum())}", flush=True)
    vheads = (vhx, vhy)
    net = MaskNet()
    if args.init:
        if common.init_from_onnx(net, args.init, (1, 3, SIZE, SIZE)) <= BG:
            with torch.no_grad():  # the new class starts unlikely
                net.fc.bias[BG] = float(net.fc.bias[:BG].min()) - 2.0
        acc, p0, r0, ex = evaluate(net, vx, vy, vbx, vheads)
        print(f"from {args.init}: held-out acc {acc:.4f} no_mask P {p0:.4f} R {r0:.4f} {ex}", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-3)
    nb = len(tx) // 48
    steps = args.epochs * nb
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    ema = common.Ema(net, args.ema) if args.ema > 0 else None
    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        if args.init:
            common.freeze_bn(net)
        order = rng.permutation(len(tx))
        total = 0.0
        for b in range(nb):
            # Each batch: 48 face photos (no_mask / with_mask), 24 background crops, 8 helmet heads.
            idx = order[b * 48:(b + 1) * 48]
            bi = rng.integers(0, len(bx), 24)
            hi = kept[rng.integers(0, len(kept), 8)]
            li = labelled[rng.integers(0, len(labelled), args.labelled_heads)] if face_labels else labelled[:0]
            framed = [bool(args.head_frames) and rng.random() < args.framed_share for _ in idx]
            faces = [tf[i] if f else tx[i] for i, f in zip(idx, framed)]
            fy, ly = ty[idx], hy[li]
            heads_l = [hx[i] for i in li]
            # Without --site no draw is made: the other recipes' runs stay as they were, bit for bit.
            si = rng.integers(0, len(site_x), args.site_per_batch) if args.site else np.zeros(0, np.int64)
            imgs = [augment(f, rng) for f in faces] + [augment(bx[i], rng) for i in bi] + \
                [augment(h, rng) for h in heads_l] + [augment(site_x[i], rng) for i in si] + \
                [augment(hx[i], rng) for i in hi]
            sy = site_y[si] if args.site else np.zeros(0, np.int64)
            y = torch.from_numpy(np.concatenate([fy, np.full(24, BG, np.int64), ly, sy]))
            logits = net(common.to_tensor(imgs))
            n = len(y)
            loss = F.cross_entropy(logits[:n], y, label_smoothing=0.05)
            # An unlabelled helmet-yolo head is a face or head, masked or not: only "not background" is known.
            logp = F.log_softmax(logits[n:], 1)
            loss = loss + 0.3 * -torch.logsumexp(logp[:, :BG], 1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if ema:
                ema.update(net)
            total += float(loss)
        acc, p0, r0, ex = evaluate(ema.net if ema else net, vx, vy, vbx, vheads)
        print(f"epoch {epoch + 1}/{args.epochs} loss {total / nb:.4f} held-out acc {acc:.4f} "
              f"no_mask P {p0:.4f} R {r0:.4f} faces dropped {ex['faces_dropped']:.4f}, "
              f"background dropped {ex['bg_dropped']:.4f}, helmet heads kept {ex['heads_kept']:.4f} "
              + (f"labelled helmet heads right {ex['labelled_heads_right']:.4f} " if "labelled_heads_right" in ex else "")
              + f"({time.time() - t0:.0f} s)", flush=True)
        torch.save((ema.net if ema else net).state_dict(), "/tmp/kitchen-mask-classifier.pt")

    net = ema.net if ema else net
    net.eval()
    model = Exported(net).eval()
    common.export(model, args.out, (1, 3, SIZE, SIZE), ["probs"])
    print(f"wrote {args.out}; held-out accuracy {acc:.4f}, no_mask P {p0:.4f} R {r0:.4f}, {ex}")


if __name__ == "__main__":
    main()
