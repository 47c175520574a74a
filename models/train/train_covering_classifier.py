#!/usr/bin/python3
"""Trains kitchen-covering-classifier: head crop -> covered | bare | background, the second stage of a
two-stage head-covering check (the head network finds heads, this decides), and exports it.

    nice -n 5 /usr/bin/python3 models/train/train_covering_classifier.py --out /tmp/kitchen-covering-classifier.onnx

Why: on helmet-yolo/valid most wrong `bare` boxes of the one-stage check are clutter (watermark
logos, signs, hands, machinery: docs/accuracy.md, "Where the errors are"). A classifier sees each
box at 64x64, however small it is in the frame, and can learn to drop it.

Data: ../shared/datasets/helmet-yolo/train ("helmet detection" dataset v3, CC BY 4.0), split as the
head network splits it (its held-out 10% is held out here too):
  * heads: the labelled boxes, covered (helmet) or bare (nohelmet);
  * background: crops away from every labelled head, the head network's own false positives (run
    as models/kitchen-head-covering.yaml runs it: 512x512, peaks of `heads` >= 0.1) and random
    boxes of head sizes.
Never ../shared/datasets/mask-yolo. The network and augmentation are the mask classifier's
(train_mask_classifier.py): 64x64 RGB, (x - 127.5) / 127.5, output `probs` = P(covered), P(bare),
P(background).
"""

import argparse
import math
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F

import common
import train_head_detector as thd
import train_mask_classifier as tmc

SIZE = tmc.SIZE
CLASSES = ["covered", "bare", "background"]
BG = 2
NET_INPUT = 512  # as kitchen-head-covering.yaml runs the head network


def crops(photos, net, rng, expand):
    heads, labels, bg, fp = [], [], [], 0
    for img, boxes in photos:
        H, W = img.shape[:2]
        hb = [tuple(b[:4]) for b in boxes]
        for b in boxes:
            if min(b[2] - b[0], b[3] - b[1]) >= 6:
                heads.append(tmc.cut(img, b[:4], expand))
                labels.append(0 if b[4] > 0.5 else 1)
        for b in tmc.detector_boxes(net, img, size=NET_INPUT):
            if tmc.away_from_heads(b, hb):
                bg.append(tmc.cut(img, b, expand))
                fp += 1
        for _ in range(12):
            side = math.exp(rng.uniform(math.log(10), math.log(0.3 * min(W, H))))
            w, h = side, side * rng.uniform(0.75, 1.35)
            x, y = rng.uniform(0, W - w), rng.uniform(0, max(1, H - h))
            b = (x, y, x + w, y + h)
            if tmc.away_from_heads(b, hb):
                bg.append(tmc.cut(img, b, expand))
    arr = lambda a: np.array(a, np.uint8).reshape(-1, 96, 96, 3)  # noqa: E731
    return arr(heads), np.array(labels, np.int64), arr(bg), fp


def evaluate(net, hx, hy, bx):
    p = tmc.predict(net, hx).argmax(1)
    out = {"heads_kept": float((p != BG).mean())}
    for c, name in enumerate(CLASSES[:BG]):
        called = p == c
        tp = int((called & (hy == c)).sum())
        out[f"{name}_P"] = tp / max(1, int(called.sum()))
        out[f"{name}_R"] = tp / max(1, int((hy == c).sum()))
    out["bg_dropped"] = float((tmc.predict(net, bx).argmax(1) == BG).mean())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--expand", type=float, default=0.1, help="context around each box, as classifier.expand")
    ap.add_argument("--heads", default=str(common.MODELS / "kitchen-heads.onnx"))
    # Not shipped (models/log/kitchen-heads.md, "A covering classifier as a second stage"): by default
    # nothing is written into models/.
    ap.add_argument("--out", default="/tmp/kitchen-covering-classifier.onnx")
    args = ap.parse_args()
    common.seed_everything(args.seed, args.threads)
    shared = common.shared_dir()
    train, val = thd.load_helmet(shared)
    det = cv2.dnn.readNetFromONNX(args.heads)
    rng = np.random.default_rng(args.seed + 1)
    hx, hy, bx, nfp = crops(train, det, rng, args.expand)
    vhx, vhy, vbx, vfp = crops(val, det, rng, args.expand)
    print(f"train: {len(hx)} heads ({int((hy == 1).sum())} bare), {len(bx)} background ({nfp} false positives); "
          f"held out: {len(vhx)} heads ({int((vhy == 1).sum())} bare), {len(vbx)} background ({vfp})", flush=True)

    net = tmc.MaskNet()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-3)
    nb = max(1, len(hx) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * nb, pct_start=0.15)
    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        order = rng.permutation(len(hx))
        total = 0.0
        for b in range(nb):
            # Each batch: 32 heads (as labelled), 32 background crops.
            idx = order[b * 32:(b + 1) * 32]
            bi = rng.integers(0, len(bx), 32)
            imgs = [tmc.augment(hx[i], rng) for i in idx] + [tmc.augment(bx[i], rng) for i in bi]
            y = torch.from_numpy(np.concatenate([hy[idx], np.full(32, BG, np.int64)]))
            loss = F.cross_entropy(net(common.to_tensor(imgs)), y, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss)
        ex = evaluate(net, vhx, vhy, vbx)
        print(f"epoch {epoch + 1}/{args.epochs} loss {total / nb:.4f} held-out "
              + " ".join(f"{k} {v:.3f}" for k, v in ex.items()) + f" ({time.time() - t0:.0f} s)", flush=True)

    net.eval()
    model = tmc.Exported(net).eval()
    common.export(model, args.out, (1, 3, SIZE, SIZE), ["probs"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
