"""Rewrites an exported ONNX file so that OpenCV 4.6's cv::dnn runs its narrow depthwise convolutions
on its fast path, with the same outputs.

cv::dnn 4.6 runs a 3x3 depthwise convolution on its fast path only when the map it reads is at least
16 + 2 x dilation wide, its own padding not counted, and that padding is at most 1 at the top and on
the left; a narrower one falls back to a generic loop that is several times slower per value. The mask classifier at its 64x64
input has depthwise layers reading maps 16, 8 and 4 wide, and those took over half of its time.

For each such layer the rewrite moves the padding into an explicit zero Pad in front of it, and
where that is still too narrow pads further on the right. The extra columns it then computes are cut
off again after it (a Slice that ends a fixed number of columns before the end: the right padding
added is a whole number of strides, so that number is the same at any input size, and the file still
works at any input size). The columns kept see exactly the values they saw before: zero padding is
what the convolution padded with anyway, and the extra columns are cut before any other layer reads
them.

The head networks have no depthwise layers and are left byte for byte. The weights are untouched and
keep their order, so common.init_from_onnx still fine-tunes from a rewritten file.

    /usr/bin/python3 models/train/fast_depthwise.py FILE.onnx [--input 64 | --input WxH] [--out OUT.onnx]

Needs python3-onnx only (not PyTorch). The training scripts' export (common.export) calls it.
"""

import argparse
import os
import sys

import numpy as np

# cv::dnn 4.6 (modules/dnn/src/layers/convolution_layer.cpp): the fast depthwise path takes a 3x3
# kernel whose input map, without the convolution's own padding, is at least this many values wide
# plus the kernel's reach.
FAST_MIN_INPUT = 16
# cv::dnn fuses these into the convolution before them. (Clip too, but cv::dnn 4.6 reads no opset-11
# Clip, the only kind an opset-11 export writes.)
ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid")


def _widths(model, input_shape):
    """Width of every 4-D tensor at input_shape (N, C, H, W), by ONNX's shape inference; raises
    ValueError when the graph cannot be inferred at that shape."""
    import onnx
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    dims = probe.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise ValueError(f"the input has {len(dims)} dimensions, not {len(input_shape)}")
    for d, v in zip(dims, input_shape):
        d.ClearField("dim_param")
        d.dim_value = int(v)
    # Shapes stored by the export for another size would disagree with the ones inferred here.
    del probe.graph.value_info[:]
    for o in probe.graph.output:
        o.type.tensor_type.ClearField("shape")
    try:
        probe = onnx.shape_inference.infer_shapes(probe, strict_mode=True)
    except Exception as e:  # onnx raises its own InferenceError, or ValidationError, by version
        raise ValueError(f"shape inference failed at input {list(input_shape)}: {e}") from e
    widths = {}
    for vi in list(probe.graph.value_info) + list(probe.graph.input) + list(probe.graph.output):
        shape = vi.type.tensor_type.shape.dim
        if len(shape) == 4 and shape[3].dim_value:
            widths[vi.name] = shape[3].dim_value
    return widths


def _slow_depthwise(node, weights, widths):
    """(stride, pads, right padding to add) for a depthwise 3x3 convolution cv::dnn would run on its
    slow path; None for any other node."""
    from onnx import helper
    if node.op_type != "Conv":
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    group = attrs.get("group", 1)
    weight = weights.get(node.input[1])
    # One 3x3 filter per input channel; other kernels have no fast path to gain.
    if group == 1 or weight is None or list(weight.dims) != [group, 1, 3, 3]:
        return None
    if attrs.get("auto_pad", b"NOTSET") != b"NOTSET":
        return None
    width = widths.get(node.input[0])
    if width is None:
        return None
    stride = (attrs.get("strides") or [1, 1])[1]
    dilation = (attrs.get("dilations") or [1, 1])[1]
    pads = list(attrs.get("pads") or [0, 0, 0, 0])
    # cv::dnn's own test; uneven padding is split off into a padding layer of its own by its importer.
    if width >= FAST_MIN_INPUT + 2 * dilation and pads[0] <= 1 and pads[1] <= 1:
        return None  # already on the fast path
    # Once its padding is an explicit Pad, the convolution reads the padded map: pad it to the width
    # the fast path takes.
    need = FAST_MIN_INPUT + 2 * dilation - (width + pads[1] + pads[3])
    # A whole number of strides, so that the extra output columns are need/stride at any input width.
    extra = -(-max(need, 0) // stride) * stride
    return stride, pads, extra


def rewrite(model, input_shape):
    """Returns (rewritten model, number of layers rewritten); the model given is not changed.
    input_shape: the network's input (N, C, H, W), or one side of a square RGB input. Raises
    ValueError for a file it cannot rewrite (an opset without Pad's pads input, shapes that cannot be
    inferred)."""
    import onnx
    from onnx import helper, numpy_helper

    if isinstance(input_shape, int):
        input_shape = (1, 3, input_shape, input_shape)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    widths = _widths(out, input_shape)
    weights = {i.name: i for i in graph.initializer}
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in graph.output}
    # cv::dnn names each layer after its node and refuses two of one name: nodes' names are taken too.
    taken = set(weights) | {t for n in graph.node for t in [*n.input, *n.output, n.name]}

    def fresh(base):
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}.{k}"
        taken.add(name)
        return name

    cut_after = {}  # an activation's (renamed) output -> the Slice to place right after it
    nodes = []
    rewritten = 0
    for n in graph.node:
        plan = _slow_depthwise(n, weights, widths)
        if plan is None:
            nodes.append(n)
            for o in n.output:
                nodes.extend(cut_after.pop(o, []))
            continue
        if opset < 11:
            raise ValueError(f"opset {opset}: Pad takes its pads as an input from opset 11 on")
        stride, (top, left, bottom, right), extra = plan
        name = n.name or f"depthwise{rewritten}"
        pads = numpy_helper.from_array(np.array([0, 0, top, left, 0, 0, bottom, right + extra], np.int64),
                                       fresh(f"{name}/fast_pads"))
        graph.initializer.append(pads)
        padded = fresh(f"{name}/fast_padded")
        nodes.append(helper.make_node("Pad", [n.input[0], pads.name], [padded], mode="constant",
                                      name=fresh(f"{name}/fast_pad")))
        n.input[0] = padded
        for a in n.attribute:
            if a.name == "pads":
                a.ints[:] = [0, 0, 0, 0]
        nodes.append(n)
        rewritten += 1
        if extra == 0:
            continue  # the explicit Pad alone takes the fast path: nothing to cut
        # Cut after the activation that follows, so that cv::dnn still fuses it into the convolution;
        # not when something else reads the convolution's own output.
        tail = n
        follow = consumers.get(n.output[0], [])
        if n.output[0] not in graph_outputs and len(follow) == 1 and follow[0].op_type in ACTIVATIONS:
            tail = follow[0]
        full = fresh(f"{tail.output[0]}/fast_full")
        names = [fresh(f"{name}/fast_{k}") for k in ("starts", "ends", "axes")]
        for nm, v in zip(names, ([0], [-(extra // stride)], [3])):
            graph.initializer.append(numpy_helper.from_array(np.array(v, np.int64), nm))
        cut = helper.make_node("Slice", [full, *names], [tail.output[0]], name=fresh(f"{name}/fast_cut"))
        if tail is n:
            n.output[0] = full
            nodes.append(cut)
        else:
            tail.output[0] = full
            cut_after.setdefault(full, []).append(cut)
    if cut_after:
        raise ValueError(f"an activation after a rewritten convolution is not in the graph: {list(cut_after)}")
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # stale for the renamed tensors; cv::dnn does not need them
    try:
        onnx.checker.check_model(out)
    except onnx.checker.ValidationError as e:
        raise ValueError(f"the rewritten graph is not valid ONNX: {e}") from e
    return out, rewritten


def rewrite_file(path, input_shape, out_path=None):
    """Rewrites path in place (or to out_path); a file with nothing to rewrite is left byte for byte.
    Returns the number of layers rewritten."""
    import onnx
    from google.protobuf.message import DecodeError
    try:
        model = onnx.load(str(path))
    except DecodeError as e:
        raise ValueError(f"not an ONNX file ({e})") from e
    new, count = rewrite(model, input_shape)
    if count:
        onnx.save(new, str(out_path or path))
    elif out_path:
        onnx.save(model, str(out_path))
    return count


def _timings(path, input_shape, reps):
    """cv::dnn's own time per inference (one thread), ms."""
    import cv2
    cv2.setNumThreads(1)
    try:
        net = cv2.dnn.readNetFromONNX(str(path))
    except cv2.error as e:
        raise ValueError(f"cv::dnn cannot read it: {str(e).strip().splitlines()[-1]}") from e
    x = np.random.RandomState(0).uniform(-1, 1, input_shape).astype(np.float32)
    for _ in range(10):
        net.setInput(x)
        net.forward()
    total = 0.0
    for _ in range(reps):
        net.setInput(x)
        net.forward()
        total += net.getPerfProfile()[0]
    return total / reps / cv2.getTickFrequency() * 1e3


def _input_shape(text):
    w, x, h = text.partition("x")
    try:
        w, h = int(w), int(h if x else w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give the input as SIZE or WxH, e.g. 64 or 96x64")
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the input's sides must be positive")
    return (1, 3, h, w)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx")
    ap.add_argument("--input", type=_input_shape, default=(1, 3, 64, 64), metavar="SIZE|WxH",
                    help="the RGB input the layers' widths are read at (default 64)")
    ap.add_argument("--out", help="write here instead of in place")
    ap.add_argument("--timings", type=int, metavar="REPS",
                    help="print cv::dnn's time per inference before and after (needs python3-opencv)")
    args = ap.parse_args(argv)
    try:
        if not os.path.isfile(args.onnx):
            raise OSError("no such file")
        before = _timings(args.onnx, args.input, args.timings) if args.timings else None
        count = rewrite_file(args.onnx, args.input, args.out)
    except (OSError, ValueError) as e:
        print(f"{args.onnx}: {e}", file=sys.stderr)
        return 1
    print(f"{args.onnx}: {count} depthwise layer(s) padded for cv::dnn's fast path"
          + (f" -> {args.out}" if args.out else ""))
    if args.timings:
        after = _timings(args.out or args.onnx, args.input, args.timings)
        size = f"{args.input[3]}x{args.input[2]}"
        print(f"cv::dnn, one thread, {size}: {before:.3f} ms before, {after:.3f} ms after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
