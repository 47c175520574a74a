"""Google MediaPipe's BlazeFace (back-camera model, 256x256), read from its TensorFlow.js graph into
PyTorch. With --export-detector it writes the whole face detector as ONNX, tried as the mask check's
first stage (models/log/kitchen-mask.md); its layers were also tried as a pretrained trunk beside the
head networks' own (train_head_detector.py --trunk blazeface, up to commit 044fd88), since Google
trained them on far more faces than the 233 labelled photos here. The weights come from the npm
package @vladmandic/human (MIT), which ships MediaPipe's model converted to TensorFlow.js
(models/blazeface.json, "generatedBy": "https://github.com/google/mediapipe"; MediaPipe and its
models: Apache License 2.0).
fetch_pretrained.sh fetches that package, pinned by version and checksums, and keeps the two files
in models/train/pretrained/blazeface/ (not committed: an ONNX file exported from them carries the weights).

The graph is rebuilt op by op (convolutions with TensorFlow's SAME padding, depthwise convolutions,
residual adds, max pools, the channel padding of the shortcut), so the trunk computes what the
TensorFlow.js graph computes. Run as a script it checks that, against TensorFlow.js itself when
given its npm package (blazeface_reference.cjs runs the graph in TF.js's JavaScript CPU backend on a
fixed picture; every tap and the detector's scores agree within 2e-5), and shows the detector's
face score on face photos of ../shared/datasets/mask-crops, small on a grey canvas as the back
camera sees them, against corners of the helmet photos:

    npm install --prefix /tmp/tfjs @tensorflow/tfjs@4          # once, for --tfjs
    /usr/bin/python3 models/train/blazeface.py [--tfjs /tmp/tfjs]

It also writes the whole face detector as ONNX for kitchen-eval (tried as the mask check's first
stage, not shipped: models/log/kitchen-mask.md, "BlazeFace's face detector as the first stage"):

    /usr/bin/python3 models/train/blazeface.py --export-detector 384 384 /tmp/blazeface-384.onnx --box-scale 1.4
"""

import argparse
import base64
import json
import math
import pathlib
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_DIR = HERE / "pretrained" / "blazeface"  # fetch_pretrained.sh
INPUT = 256  # the model's own input side; the trunk is fully convolutional


def read_graph(model_dir=DEFAULT_DIR):
    """(nodes, weights): the graph's non-constant nodes in order, and its weights as numpy arrays."""
    model_dir = pathlib.Path(model_dir)
    if not (model_dir / "blazeface.json").exists():
        raise SystemExit(f"no BlazeFace in {model_dir}: run models/train/fetch_pretrained.sh")
    j = json.loads((model_dir / "blazeface.json").read_text())
    weights = {}
    for group in j["weightsManifest"]:
        blob = b"".join((model_dir / p).read_bytes() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            dtype = {"float32": np.float32, "int32": np.int32}[w["dtype"]]
            if "quantization" in w:
                raise ValueError(f"{w['name']}: quantised weights are not read here")
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            weights[w["name"]] = np.frombuffer(blob, dtype, n, off).reshape(w["shape"]).copy()
            off += n * 4
        if off != len(blob):
            raise ValueError(f"blazeface.bin: {len(blob)} bytes, the manifest names {off}")
    nodes = [n for n in j["modelTopology"]["node"] if n["op"] != "Const"]
    return nodes, weights


def _same_conv(x, w, b, k, s, groups=1):
    """A convolution with TensorFlow's SAME padding, for the even input sides this trunk is fed:
    (k - 1) / 2 each side at stride 1, PyTorch's own; at stride 2 TensorFlow pads k - 2 in all and
    puts the odd pixel after. Constants, not read off the tensor, so that the export's Pad is fixed."""
    if s == 1:
        return F.conv2d(x, w, b, 1, (k - 1) // 2, groups=groups)
    if k < 2 or (not torch.jit.is_tracing() and (x.shape[-1] % 2 or x.shape[-2] % 2)):
        raise ValueError(f"SAME padding at stride 2 is read here for even sides and k >= 2, not {tuple(x.shape)}, k {k}")
    total = k - 2
    x = F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))
    return F.conv2d(x, w, b, s, 0, groups=groups)


def _short(name):
    """'StatefulPartitionedCall/functional_1/re_lu_22/Relu' -> 're_lu_22': the Keras layer's name."""
    return name.split("/")[-2] if "/" in name else name


def _strides(node):
    return int(node["attr"]["strides"]["list"]["i"][1])


def _check_attrs(node, k):
    """Only what this port computes: NHWC, no dilation, SAME padding (VALID only where it is the same,
    1x1 kernels), 2x2 pools of stride 2."""
    a = node.get("attr", {})
    pad = base64.b64decode(a["padding"]["s"]).decode() if "padding" in a else "SAME"
    fmt = base64.b64decode(a["data_format"]["s"]).decode() if "data_format" in a else "NHWC"
    dil = [int(v) for v in a.get("dilations", {}).get("list", {}).get("i", ["1"])]
    if fmt != "NHWC" or any(d != 1 for d in dil) or not (pad == "SAME" or (pad == "VALID" and k == 1)):
        raise ValueError(f"{node['name']}: {fmt}, dilations {dil}, padding {pad} are not read here")
    if node["op"] == "MaxPool" and [int(v) for v in a["ksize"]["list"]["i"]] != [1, 2, 2, 1]:
        raise ValueError(f"{node['name']}: only 2x2 pools are read here")


class BlazeTrunk(nn.Module):
    """BlazeFace's layers from the input up to the last node named in `taps`.

    The outputs of the nodes named in `taps` are returned, in the order of `taps` (stride 8 is the output of
    're_lu_22', 32x32 at 256; stride 16 is 're_lu_30')."""

    def __init__(self, taps, model_dir=DEFAULT_DIR):
        super().__init__()
        nodes, weights = read_graph(model_dir)
        self.ops = []  # (kind, output, inputs, params name, stride, kernel)
        self.params = nn.ParameterDict()
        count = 0
        channels = {}  # each node's output channels, to check the shortcut's widening
        last = taps[-1]
        self.taps = list(taps)
        for n in nodes:
            op, name = n["op"], _short(n["name"])
            ins = [_short(i) for i in n.get("input", []) if i not in weights]
            consts = [i for i in n.get("input", []) if i in weights]
            if op == "Placeholder":
                continue
            if op == "_FusedConv2D":
                fused = [base64.b64decode(s).decode() for s in n["attr"]["fused_ops"]["list"]["s"]]
                if fused not in (["BiasAdd"], ["BiasAdd", "Relu"]):
                    raise ValueError(f"{name}: fused {fused} is not read here")
                w = torch.from_numpy(weights[consts[0]]).permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
                _check_attrs(n, w.shape[-1])
                key, count = f"p{count}", count + 1
                self.params[key + "w"] = nn.Parameter(w)
                self.params[key + "b"] = nn.Parameter(torch.from_numpy(weights[consts[1]]))
                self.ops.append(("conv", name, ins, key, _strides(n), w.shape[-1], "Relu" in fused))
                channels[name] = w.shape[0]
            elif op == "DepthwiseConv2dNative":
                if weights[consts[0]].shape[3] != 1:
                    raise ValueError(f"{name}: channel multiplier {weights[consts[0]].shape[3]}, read here only as 1")
                w = torch.from_numpy(weights[consts[0]]).permute(2, 3, 0, 1).contiguous()  # HWC1 -> C1HW
                _check_attrs(n, w.shape[-1])
                key, count = f"p{count}", count + 1
                self.params[key + "w"] = nn.Parameter(w)
                self.ops.append(("dw", name, ins, key, _strides(n), w.shape[-1], False))
                channels[name] = w.shape[0]
            elif op == "AddV2":
                self.ops.append(("add", name, ins, None, 1, 0, False))
                channels[name] = channels[ins[0]]
            elif op == "Relu":
                self.ops.append(("relu", name, ins, None, 1, 0, False))
                channels[name] = channels[ins[0]]
            elif op == "MaxPool":
                _check_attrs(n, 2)
                self.ops.append(("pool", name, ins, None, _strides(n), 2, False))
                channels[name] = channels[ins[0]]
            elif op == "Pad":
                pad = weights[consts[0]]  # NHWC: only channels are padded (the shortcut's widening)
                if pad[:3].any():
                    raise ValueError(f"{name}: pads other than channels are not read here")
                if pad[3, 0] != 0 or pad[3, 1] != channels[ins[0]]:
                    raise ValueError(f"{name}: the shortcut is widened by {pad[3].tolist()} channels, "
                                     f"read here only as doubling its {channels[ins[0]]}")
                self.ops.append(("padc", name, ins, None, int(pad[3, 1]), 0, False))
                channels[name] = 2 * channels[ins[0]]
            else:
                continue  # the detector's own reshapes and outputs: not part of the trunk
            if name == last:
                break
        else:
            raise ValueError(f"no node {last} in blazeface.json")
        missing = [t for t in taps if t not in {op[1] for op in self.ops}]
        if missing:
            raise ValueError(f"taps {missing} are not before {last} in blazeface.json")

    def forward(self, x):
        vals = {"input": x}  # the graph's Placeholder; a name not computed yet is an error, not x
        for kind, name, ins, key, s, k, relu in self.ops:
            src = [vals[i] for i in ins]
            if kind == "conv":
                cur = _same_conv(src[0], self.params[key + "w"], self.params[key + "b"], k, s)
                if relu:
                    cur = F.relu(cur)
            elif kind == "dw":
                w = self.params[key + "w"]
                cur = _same_conv(src[0], w, None, k, s, groups=w.shape[0])
            elif kind == "add":
                cur = src[0] + src[1]
            elif kind == "relu":
                cur = F.relu(src[0])
            elif kind == "pool":
                cur = F.max_pool2d(src[0], 2, 2)
            elif kind == "padc":
                # The shortcut's zero channels (as many as it has: checked when built), without a Pad.
                cur = torch.cat([src[0], src[0] * 0.0], 1)
            vals[name] = cur
        return [vals[t] for t in self.taps]


class Detector(nn.Module):
    """BlazeFace's whole detector at a w x h input (multiples of 32), its anchors decoded in the graph,
    in the gateway's `ultraface` layout: boxes [1, N, 4] as x1, y1, x2, y2 shares of the input, scores
    [1, N, 2] as (0, face), so that the manifest's score_threshold alone decides (with 1 - face as
    the background, no face under 0.5 would pass). The decoding is MediaPipe's (2 anchors per
    stride-16 cell, 6 per stride-32 cell, centres offset from the cell's, sizes in input pixels),
    done with 1x1 convolutions on the maps because cv::dnn 4.6 reads 3-D slices badly. BlazeFace's
    boxes are tight on the face; `box_scale` widens them about their centre (mask-yolo's labels,
    and the crops the mask classifier was fitted to, hold the whole head)."""

    def __init__(self, w, h, box_scale=1.0, model_dir=DEFAULT_DIR):
        super().__init__()
        if w < 32 or h < 32 or w % 32 or h % 32:
            raise ValueError(f"the detector's input sides are positive multiples of 32, not {w} x {h}")
        self.trunk = BlazeTrunk(taps=("conv2d_33", "conv2d_35", "conv2d_36", "conv2d_34"), model_dir=model_dir)
        for i, (stride, n) in enumerate(((16, 2), (32, 6))):
            gw, gh = w // stride, h // stride
            ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
            ax, ay = (xs + 0.5) / gw, (ys + 0.5) / gh
            centres = torch.stack([ax, ay, ax, ay], 0).repeat(n, 1, 1)[None].float()  # [1, 4n, gh, gw]
            to_box = torch.zeros(4 * n, 16 * n, 1, 1)  # 16 numbers per anchor: dx, dy, w, h, 6 points
            to_score = torch.zeros(2 * n, n, 1, 1)  # (0, face) per anchor
            for a in range(n):
                r = 16 * a
                for k, (c, side, sign) in enumerate(((0, w, -1), (1, h, -1), (0, w, 1), (1, h, 1))):
                    to_box[4 * a + k, r + c] = 1 / side
                    to_box[4 * a + k, r + c + 2] = sign * 0.5 * box_scale / side
                to_score[2 * a + 1, a] = 1.0
            self.register_buffer(f"centres{i}", centres)
            self.register_buffer(f"to_box{i}", to_box)
            self.register_buffer(f"to_score{i}", to_score)

    def forward(self, x):
        c16, r16, r32, c32 = self.trunk(x)
        boxes, scores = [], []
        for i, (c, r) in enumerate(((c16, r16), (c32, r32))):
            b = F.conv2d(r, getattr(self, f"to_box{i}")) + getattr(self, f"centres{i}")
            s = F.conv2d(torch.sigmoid(c), getattr(self, f"to_score{i}"))
            boxes.append(b.permute(0, 2, 3, 1).reshape(1, -1, 4))
            scores.append(s.permute(0, 2, 3, 1).reshape(1, -1, 2))
        return torch.cat(boxes, 1), torch.cat(scores, 1)


def against_tfjs(prefix, model_dir=DEFAULT_DIR):
    """The largest difference between this port and TensorFlow.js on a fixed 256x256 picture, over
    two inner layers ('re_lu_22' at stride 8, 're_lu_30' at stride 16) and the detector's two score outputs."""
    taps = ("re_lu_22", "re_lu_30", "conv2d_33", "conv2d_34")
    x = (np.random.default_rng(0).random((1, INPUT, INPUT, 3)) * 2 - 1).astype(np.float32)
    with torch.no_grad():
        mine = BlazeTrunk(taps=taps, model_dir=model_dir)(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
    full = {_short(n["name"]): n["name"] for n in read_graph(model_dir)[0]}
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        x.tofile(f"{tmp}/in.f32")
        subprocess.run(["node", str(HERE / "blazeface_reference.cjs"), str(prefix), str(model_dir), f"{tmp}/in.f32",
                        str(INPUT), f"{tmp}/out", *[full[t] for t in taps]], check=True, stdout=subprocess.DEVNULL)
        for i, (name, got) in enumerate(zip(taps, mine)):
            want = np.fromfile(f"{tmp}/out.{i}.f32", np.float32).reshape(got.shape[0], *got.shape[2:], got.shape[1])
            err = float(np.abs(got.permute(0, 2, 3, 1).numpy() - want).max())
            print(f"{name} {tuple(want.shape)}: max abs difference from TensorFlow.js {err:.1e} "
                  f"(values up to {float(np.abs(want).max()):.1f})")
            worst = max(worst, err)
    return worst


def main():
    import cv2

    import common
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tfjs", default="", help="a prefix with node_modules/@tensorflow/tfjs: compare with TF.js itself")
    ap.add_argument("--export-detector", nargs=3, metavar=("W", "H", "OUT"),
                    help="write the whole face detector at a W x H input to OUT (ONNX, the ultraface layout) and stop")
    ap.add_argument("--box-scale", type=float, default=1.0,
                    help="with --export-detector: widen its face boxes this many times about their centre")
    args = ap.parse_args()
    if args.export_detector:
        try:
            w, h = int(args.export_detector[0]), int(args.export_detector[1])
        except ValueError:
            ap.error(f"--export-detector W H OUT: W and H are whole numbers, not {args.export_detector[:2]}")
        out = args.export_detector[2]
        if not 0 < args.box_scale < math.inf:  # also refuses nan
            ap.error("--box-scale is a positive factor")
        try:
            detector = Detector(w, h, args.box_scale).eval()
        except ValueError as e:
            ap.error(f"--export-detector: {e}")
        common.export(detector, out, (1, 3, h, w), ["boxes", "scores"])
        print(f"wrote {out}")
        return
    if args.tfjs:
        worst = against_tfjs(args.tfjs)
        if worst > 1e-4:
            raise SystemExit(f"the port differs from TensorFlow.js by {worst:.1e}")
    shared = common.shared_dir()
    trunk = BlazeTrunk(taps=("conv2d_33", "conv2d_34"))  # the detector's two class outputs

    def face_score(img):
        with torch.no_grad():
            a, b = trunk(common.to_tensor([cv2.resize(img, (INPUT, INPUT))]))
        return float(torch.sigmoid(torch.cat([a.flatten(), b.flatten()])).max())

    rng = np.random.default_rng(0)
    for cls in ("without_mask", "with_mask"):
        files = sorted((shared / "datasets" / "mask-crops" / cls).iterdir())
        scores = []
        for f in rng.permutation(files)[:40]:
            img = cv2.imread(str(f))
            h, w = img.shape[:2]
            side = max(h, w)
            canvas = np.full((3 * side, 3 * side, 3), 114, np.uint8)
            canvas[side:side + h, side:side + w] = img
            scores.append(face_score(canvas))
        print(f"mask-crops {cls}, 40 photos: face score 10/50/90th percentile",
              np.round(np.percentile(scores, [10, 50, 90]), 3))
    files = sorted((shared / "datasets" / "helmet-yolo" / "train" / "images").glob("*.jpg"))[:20]
    scores = [face_score(cv2.imread(str(f))[:200, :200]) for f in files]
    print("helmet-yolo corners (200 px), 20 photos: 10/50/90th percentile", np.round(np.percentile(scores, [10, 50, 90]), 3))


if __name__ == "__main__":
    main()
