"""Shared pieces of the training scripts: seeding, the shared-data location, augmentations suited
to ceiling-mounted kitchen cameras, ONNX export and the cv::dnn equivalence fixtures.

Runs on Debian 12's python3-torch 1.13 / python3-onnx / python3-opencv, CPU only: call
/usr/bin/python3, not another interpreter.
"""

import copy
import ctypes
import json
import math
import os
import pathlib
import random

import cv2
import numpy as np
import torch
import torch.nn as nn

REPO = pathlib.Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
FIXTURES = MODELS / "train" / "fixtures"
OPSET = 11  # OpenCV 4.6's ONNX importer is tested up to opset 11-13; 11 is the safe choice


def shared_dir():
    d = pathlib.Path(os.environ.get("KG_SHARED_DIR") or REPO.parent / "shared")
    if not (d / "datasets").exists():
        raise SystemExit(f"no training data in {d}/datasets (set KG_SHARED_DIR)")
    return d


class MeanOfNetworks:
    """Several head networks read as one, as a manifest's `ensemble:` reads plain file entries
    (DnnDetector): each runs on the same input and their output maps are averaged. Entries at an input
    of their own ({model, input}) are not mirrored here."""

    def __init__(self, paths):
        self.nets = [cv2.dnn.readNetFromONNX(str(p)) for p in paths]

    def setInput(self, blob):  # noqa: N802 (cv2.dnn's name)
        for n in self.nets:
            n.setInput(blob)

    def forward(self, name):
        return sum(n.forward(name) for n in self.nets) / len(self.nets)


def read_heads(spec):
    """--heads: one ONNX file, or several separated by commas (an ensemble, their maps averaged)."""
    paths = [p for p in str(spec).split(",") if p]
    return cv2.dnn.readNetFromONNX(paths[0]) if len(paths) == 1 else MeanOfNetworks(paths)


def keep_freed_memory():
    """Tells glibc's malloc to keep the memory PyTorch frees instead of handing it back to the kernel.

    A training step allocates and frees tensors of up to ~20 MB. By default glibc serves those with
    fresh mmap()s and trims freed heap, so every step faults in and zeroes its memory again (2.2
    million page faults in 80 steps of the head detector): about a fifth of the step. Reused memory
    changes no arithmetic, so the weights stay bit for bit those of a run without this."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: nothing to tune
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    libc.mallopt(m_mmap_threshold, 32 << 20)  # above a step's largest tensors
    libc.mallopt(m_trim_threshold, 1 << 30)


def seed_everything(seed, threads):
    """Fixed seeds and a fixed thread count: the same command gives the same weights."""
    keep_freed_memory()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    cv2.setNumThreads(1)
    cv2.setRNGSeed(seed)


# --- photometric augmentation: what a ceiling camera in a kitchen does to a picture ----------------

def jpeg(img, rng, lo=15, hi=90):
    q = int(rng.integers(lo, hi))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else img


def photometric(img, rng, strength=1.0):
    """BGR uint8 in, BGR uint8 out: low light, colour cast, grey/IR, blur, low resolution, noise, JPEG.

    The same draws and the same pictures as the plain float32 arithmetic on the whole picture, so
    that old training commands still give their weights bit for bit, for less work: the picture
    goes to float32 only when a branch needs it (uint8 -> float32 -> uint8 is the identity), and
    gain and gamma, applied first to an 8-bit picture, are a 256-entry table. May return img itself."""
    out = None  # float32 working copy, made by the first branch that needs one
    if rng.random() < 0.5 * strength:  # low light / over-exposure: gain and gamma
        gain = rng.uniform(0.35, 1.3)
        gamma = rng.uniform(0.7, 1.6)
        table = 255.0 * np.power(np.clip(np.arange(256, dtype=np.float32) * gain / 255.0, 0, 1), gamma)
        out = cv2.LUT(img, table)
    if rng.random() < 0.3 * strength:  # white balance of cheap sensors
        out = img.astype(np.float32) if out is None else out
        out *= rng.uniform(0.8, 1.2, size=3).astype(np.float32)
    if rng.random() < 0.2 * strength:  # contrast
        out = img.astype(np.float32) if out is None else out
        m = out.mean()
        out = (out - m) * rng.uniform(0.6, 1.3) + m
    out = img if out is None else np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.2 * strength:  # night mode: grey / IR picture
        g = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
        out = cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)
    if rng.random() < 0.3 * strength:  # far from the lens: low resolution, scaled back up
        h, w = out.shape[:2]
        f = rng.uniform(0.25, 0.7)
        small = cv2.resize(out, (max(4, int(w * f)), max(4, int(h * f))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.25 * strength:  # out of focus / motion
        k = int(rng.choice([3, 5]))
        out = cv2.GaussianBlur(out, (k, k), 0) if rng.random() < 0.6 else cv2.blur(out, (k, 1))
    if rng.random() < 0.25 * strength:  # sensor noise in the dark
        n = rng.normal(0, rng.uniform(3, 12), out.shape).astype(np.float32)
        out = np.clip(out.astype(np.float32) + n, 0, 255).astype(np.uint8)
    if rng.random() < 0.5 * strength:
        out = jpeg(out, rng)
    return out


def occlude(img, rng, max_frac=0.35):
    """A hand, a pan or a steam cloud over part of the picture."""
    h, w = img.shape[:2]
    ow, oh = int(w * rng.uniform(0.1, max_frac)), int(h * rng.uniform(0.1, max_frac))
    x, y = int(rng.integers(0, w - ow + 1)), int(rng.integers(0, h - oh + 1))
    out = img.copy()
    if rng.random() < 0.5:
        out[y:y + oh, x:x + ow] = rng.integers(0, 256, size=3)
    else:
        out[y:y + oh, x:x + ow] = cv2.GaussianBlur(out[y:y + oh, x:x + ow], (0, 0), 6)
    return out


# --- network input ----------------------------------------------------------------------------------

def to_tensor(imgs):
    """BGR uint8 pictures to the networks' RGB (x - 127.5) / 127.5, N x 3 x H x W: in torch (on the
    threads seed_everything set; the same float32 arithmetic as numpy's, so the same tensor)."""
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).flip(1).contiguous()
    return x.float().sub_(127.5).div_(127.5)


# --- export and fixtures -----------------------------------------------------------------------------

def fixed_input(shape):
    """A deterministic input both Python and C++ can compute: x[i] = sin(0.37 i) * 0.9 + cos(0.011 i) * 0.1,
    then scaled to the network's normalised range [-1, 1]-ish. i runs over the flat NCHW index."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.float64)
    x = np.sin(0.37 * i) * 0.9 + np.cos(0.011 * i) * 0.1
    return x.astype(np.float32).reshape(shape)


def write_fixture(name, onnx_path, model, input_shape, output_names, samples=400):
    """Runs the PyTorch model on fixed_input() and writes the expected outputs (a spread sample of
    values plus sums) to fixtures/<name>.json, for tests/unit/own_models_test.cpp."""
    model.eval()
    x = fixed_input(input_shape)
    with torch.no_grad():
        outs = model(torch.from_numpy(x))
    if isinstance(outs, torch.Tensor):
        outs = (outs,)
    path = pathlib.Path(onnx_path).resolve()
    # Trained to a scratch path (to compare before shipping): the fixture names the shipped file.
    rel = path.relative_to(REPO) if REPO in path.parents else pathlib.Path("models") / f"{name}.onnx"
    fixture = {"model": str(rel), "input_shape": list(input_shape),
               "input": "x[i] = sin(0.37 i) * 0.9 + cos(0.011 i) * 0.1 over the flat NCHW index",
               "outputs": []}
    for oname, o in zip(output_names, outs):
        flat = o.numpy().astype(np.float64).ravel()
        step = max(1, len(flat) // samples)
        idx = list(range(0, len(flat), step))
        fixture["outputs"].append({"name": oname, "shape": list(o.shape), "sum": float(flat.sum()),
                                   "abs_sum": float(np.abs(flat).sum()),
                                   "samples": [[i, float(flat[i])] for i in idx]})
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / f"{name}.json").write_text(json.dumps(fixture, indent=0) + "\n")


def check_with_opencv(onnx_path, model, input_shape, output_names):
    """Loads the exported file in this machine's OpenCV (4.6 on Debian 12) and compares with PyTorch."""
    # torch.onnx.export restores the wrapper's training flag onto every child: eval() again.
    model.eval()
    net = cv2.dnn.readNetFromONNX(str(onnx_path))
    x = fixed_input(input_shape)
    with torch.no_grad():
        want = model(torch.from_numpy(x.copy()))
    # A copy: cv::dnn may work in place on the input buffer it is given.
    net.setInput(x.copy())
    got = net.forward(output_names)
    if isinstance(want, torch.Tensor):
        want = (want,)
    for n, g, w in zip(output_names, got, want):
        err = float(np.abs(g - w.numpy()).max())
        print(f"  cv::dnn vs torch, output {n}: max abs difference {err:.2e}")
        assert err < 1e-3, f"{onnx_path}: output {n} differs by {err}"


def drop_omitted_inputs(path):
    """torch writes an omitted optional input as an empty name at the end of a node's inputs (Pad's
    constant value); ONNX allows leaving it off, and cv::dnn 4.6 fails on the empty name. Files with
    no such input (every network without a Pad) are left untouched, byte for byte."""
    import onnx
    m = onnx.load(str(path))
    changed = False
    for n in m.graph.node:
        while n.input and n.input[-1] == "":
            n.input.pop()
            changed = True
    if changed:
        onnx.save(m, str(path))


def export(model, out, input_shape, output_names):
    """Exports `model` to ONNX at `out` (input `input`), pads its narrow depthwise layers for cv::dnn's
    fast path (fast_depthwise.py: same outputs, a network without them is left as exported), checks
    it in this machine's OpenCV against PyTorch and, for a file in models/ (a shipped one), writes its
    equivalence fixture; scratch runs elsewhere leave the fixtures alone."""
    import fast_depthwise
    model.eval()
    torch.onnx.export(model, torch.zeros(input_shape), out, opset_version=OPSET, input_names=["input"],
                      output_names=output_names, do_constant_folding=True)
    drop_omitted_inputs(out)
    try:
        fast_depthwise.rewrite_file(out, input_shape)
    except ValueError as e:  # an optimisation: a file it cannot read is still a correct file
        print(f"  fast_depthwise: {e}; the file is left as exported")
    check_with_opencv(out, model, input_shape, output_names)
    path = pathlib.Path(out).resolve()
    if path.parent == MODELS.resolve():
        write_fixture(path.stem, out, model, input_shape, output_names)


# --- fine-tuning from a shipped model -------------------------------------------------------------

def init_from_onnx(net, path, input_shape):
    """Starts from a shipped .onnx of the same network: its convolutions (batch norm folded in at
    export) go into the network's convolutions, each batch norm becomes the identity plus the
    folded bias; a final linear layer (Gemm) takes the file's rows, and when the network has more
    outputs than the file (a new class), the new rows keep their random initialisation.
    Fine-tuning then keeps the batch norms frozen (freeze_bn). Returns the file's number of outputs
    (rows of its last linear layer)."""
    import onnx
    import onnx.numpy_helper as nh
    m = onnx.load(str(path))
    init = {i.name: nh.to_array(i) for i in m.graph.initializer}
    src = [(init[n.input[1]], init[n.input[2]] if len(n.input) > 2 else None)
           for n in m.graph.node if n.op_type in ("Conv", "Gemm")]
    order = []  # the network's layers in execution order, as the export traced them
    hooks = [mod.register_forward_hook(lambda mod, i, o: order.append(mod))
             for mod in net.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    net.eval()
    with torch.no_grad():
        net(torch.zeros(input_shape))
    for h in hooks:
        h.remove()
    assert len(order) == len(src), (len(order), len(src))
    bn_of = {}
    for mod in net.modules():
        if isinstance(mod, nn.Sequential):
            for a, b in zip(list(mod)[:-1], list(mod)[1:]):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    bn_of[a] = b
    rows = 0
    with torch.no_grad():
        for layer, (w, b) in zip(order, src):
            w = torch.from_numpy(w.copy())
            b = torch.from_numpy(b.copy())
            if isinstance(layer, nn.Linear):
                k = w.shape[0]
                assert layer.weight.shape[1] == w.shape[1] and layer.weight.shape[0] >= k
                layer.weight[:k] = w
                layer.bias[:k] = b
                rows = k
                continue
            assert layer.weight.shape == w.shape, (layer.weight.shape, w.shape)
            layer.weight.copy_(w)
            if layer in bn_of:
                bn = bn_of[layer]
                bn.weight.fill_(1.0)
                bn.bias.copy_(b)
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
            else:
                layer.bias.copy_(b)
    return rows


def freeze_bn(net):
    for mod in net.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.eval()


class Ema:
    """An exponential moving average of a network's weights and batch-norm statistics (as YOLOv5's
    ModelEMA): the averaged copy is what gets evaluated and exported. On a few hundred photos the
    last steps' weights swing with each batch; their average does not. The decay ramps up from 0 so
    that the average does not keep the random start."""

    def __init__(self, net, decay, ramp=1000):
        self.net = copy.deepcopy(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.decay, self.ramp, self.updates = decay, ramp, 0

    def update(self, net):
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.ramp))
        with torch.no_grad():
            src = net.state_dict()
            for k, v in self.net.state_dict().items():
                if v.dtype.is_floating_point:
                    v.mul_(d).add_(src[k].detach(), alpha=1 - d)
                else:
                    v.copy_(src[k])
