#!/usr/bin/python3
"""Two or more mask classifiers (kitchen-mask-classifier.onnx files of train_mask_classifier.py's
network) in one ONNX file whose `probs` is the mean of their probabilities: an ensemble the
gateway runs as one classifier (each member adds its CPU to every head).

    /usr/bin/python3 models/train/average_classifiers.py A.onnx B.onnx [...] --out /tmp/mean.onnx

Tried on 2026-11-30, 13th, not shipped (models/log/kitchen-mask-classifier.md, "Masks drawn on bare
faces"). The file is checked in this machine's OpenCV against PyTorch, as every export is.
"""

import argparse

import torch
import torch.nn as nn

import common
import train_mask_classifier as tmc


class Mean(nn.Module):
    """The mean of the members' softmax outputs."""

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        # A sum and a scale, not stack().mean(): cv::dnn 4.6 reads that ReduceMean at batch 1 only.
        total = torch.softmax(self.members[0](x), 1)
        for m in self.members[1:]:
            total = total + torch.softmax(m(x), 1)
        return total * (1.0 / len(self.members))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("classifiers", nargs="+", help="kitchen-mask-classifier.onnx files (three classes each)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if len(args.classifiers) < 2:
        ap.error("give two classifiers or more")
    shape = (1, 3, tmc.SIZE, tmc.SIZE)
    members = []
    for path in args.classifiers:
        net = tmc.MaskNet()
        try:
            outputs = common.init_from_onnx(net, path, shape)
        except OSError as e:
            ap.error(f"{path}: {e.strerror or e}")
        except (KeyError, ValueError, AssertionError) as e:  # init_from_onnx asserts the layer shapes
            ap.error(f"{path}: not a mask classifier of this network (layer shapes {e})")
        if outputs != len(tmc.CLASSES):
            ap.error(f"{path}: {outputs} classes, not {len(tmc.CLASSES)} ({', '.join(tmc.CLASSES)})")
        members.append(net.eval())
    common.export(Mean(members).eval(), args.out, shape, ["probs"])
    print(f"wrote {args.out}: the mean of {len(members)} classifiers")


if __name__ == "__main__":
    main()
