#!/usr/bin/python3
"""Trains the mask classifier (face/head crop -> no_mask | with_mask) on ../shared/datasets/mask-crops
(MIT, Face-Mask-Detection by chandrikadeb7) and exports models/kitchen-mask-classifier.onnx.

    /usr/bin/python3 models/train/train_mask_classifier.py          # ~10 min on one core

Reproducible: fixed seed, fixed split (sorted file names, seeded shuffle), one thread.
The input is what the two-stage detector hands over: a head box from kitchen-heads, widened and
made square, resized to 64x64. Augmentation therefore covers loose and tight crops, ceiling-camera
angles (rotation, aspect), low light, grey/IR, blur, low resolution, JPEG and partial occlusion.
"""

import argparse
import time

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import common

SIZE = 64
CLASSES = ["no_mask", "with_mask"]  # output order of the exported model
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


def load(shared):
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

    def read(lst):
        imgs = np.zeros((len(lst), 96, 96, 3), np.uint8)
        for k, (f, _) in enumerate(lst):
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            imgs[k] = cv2.resize(img, (96, 96), interpolation=cv2.INTER_AREA)
        return imgs, np.array([l for _, l in lst], np.int64)

    return read(train), read(val)


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


def to_tensor(batch_bgr):
    x = np.stack(batch_bgr)[..., ::-1].astype(np.float32)  # RGB
    x = (x - 127.5) / 127.5
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def evaluate(net, imgs, labels):
    net.eval()
    probs = []
    with torch.no_grad():
        for i in range(0, len(imgs), 256):
            batch = [cv2.resize(im, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for im in imgs[i:i + 256]]
            probs.append(torch.softmax(net(to_tensor(batch)), 1).numpy())
    p = np.concatenate(probs)
    pred = p.argmax(1)
    acc = float((pred == labels).mean())
    tp = int(((pred == 0) & (labels == 0)).sum())
    prec0 = tp / max(1, int((pred == 0).sum()))
    rec0 = tp / max(1, int((labels == 0).sum()))
    return acc, prec0, rec0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=35)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(common.MODELS / "kitchen-mask-classifier.onnx"))
    args = ap.parse_args()
    common.seed_everything(args.seed, args.threads)
    shared = common.shared_dir()
    (tx, ty), (vx, vy) = load(shared)
    print(f"mask-crops: {len(tx)} train, {len(vx)} held out "
          f"({int((ty == 0).sum())}/{int((ty == 1).sum())} no_mask/with_mask in train)")

    net = MaskNet()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-3)
    steps = args.epochs * (len(tx) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        order = rng.permutation(len(tx))
        total = 0.0
        for b in range(len(tx) // 64):
            idx = order[b * 64:(b + 1) * 64]
            x = to_tensor([augment(tx[i], rng) for i in idx])
            y = torch.from_numpy(ty[idx])
            loss = F.cross_entropy(net(x), y, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss)
        acc, p0, r0 = evaluate(net, vx, vy)
        print(f"epoch {epoch + 1}/{args.epochs} loss {total / (len(tx) // 64):.4f} held-out acc {acc:.4f} "
              f"no_mask P {p0:.4f} R {r0:.4f} ({time.time() - t0:.0f} s)", flush=True)

    net.eval()
    model = Exported(net).eval()
    shape = (1, 3, SIZE, SIZE)
    torch.onnx.export(model, torch.zeros(shape), args.out, opset_version=common.OPSET,
                      input_names=["input"], output_names=["probs"], do_constant_folding=True)
    torch.save(net.state_dict(), "/tmp/kitchen-mask-classifier.pt")
    common.check_with_opencv(args.out, model, shape, ["probs"])
    common.write_fixture("kitchen-mask-classifier", args.out, model, shape, ["probs"])
    print(f"wrote {args.out}; held-out accuracy {acc:.4f}, no_mask P {p0:.4f} R {r0:.4f}")


if __name__ == "__main__":
    main()
