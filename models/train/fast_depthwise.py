"""Rewrites an exported ONNX file so that OpenCV 4.6's cv::dnn runs its narrow depthwise convolutions
on its fast path, with the same outputs.

cv::dnn 4.6 runs a depthwise convolution with its vectorised code only when the output is wide enough;
narrower maps fall back to a generic loop that is several times slower per value. The mask classifier
at its 64x64 input has depthwise layers 16, 8 and 4 wide, and those took over half of its time. This
rewrite pads each such layer's input on the right with zeros (an explicit Pad), so the convolution's
output is at least MIN_WIDTH wide, and cuts the extra columns off again after it (a Slice that ends
a fixed number of columns before the end). The columns kept see exactly the values they saw before:
zero padding is what the convolution padded with anyway, and the extra columns are cut before any
other layer reads them. The Slice counts from the end, so the file still works at any input size.

The head networks have no depthwise layers and are left byte for byte. The weights are untouched and
keep their order, so common.init_from_onnx still fine-tunes from a rewritten file.

    /usr/bin/python3 models/train/fast_depthwise.py FILE.onnx [--input 64] [--out OUT.onnx]

Needs python3-onnx only (not PyTorch). The training scripts' export (common.export) calls it.
"""

import argparse
import sys

import numpy as np

# The narrowest output cv::dnn 4.6 takes on its fast depthwise path (measured with `--timings`: a
# layer 16 wide runs at 0.8 GMAC/s, one padded to 18 at several times that).
MIN_WIDTH = 18


def _output_widths(model, input_size):
    """Width of every tensor at a square input of input_size, by ONNX's shape inference."""
    import onnx
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    dims = probe.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, [1, 3, input_size, input_size]):
        d.ClearField("dim_param")
        d.dim_value = v
    # Shapes stored by the export for another size would disagree with the ones inferred here.
    del probe.graph.value_info[:]
    for o in probe.graph.output:
        o.type.tensor_type.ClearField("shape")
    probe = onnx.shape_inference.infer_shapes(probe, strict_mode=True)
    widths = {}
    for vi in list(probe.graph.value_info) + list(probe.graph.input) + list(probe.graph.output):
        shape = vi.type.tensor_type.shape.dim
        if len(shape) == 4 and shape[3].dim_value:
            widths[vi.name] = shape[3].dim_value
    return widths


def rewrite(model, input_size, min_width=MIN_WIDTH):
    """Returns (rewritten model, number of layers rewritten). The model is not changed."""
    import onnx
    from onnx import helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    widths = _output_widths(out, input_size)
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    cut_after = {}  # id(node) -> the Slice that follows it
    nodes = []
    rewritten = 0
    for n in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        group = attrs.get("group", 1)
        depthwise = False
        if n.op_type == "Conv" and group > 1:
            # One filter per input channel: as many output channels as groups, one input each.
            weight = next((i for i in graph.initializer if i.name == n.input[1]), None)
            depthwise = weight is not None and weight.dims[0] == group and weight.dims[1] == 1
        width = widths.get(n.output[0])
        if (not depthwise or width is None or width >= min_width
                or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
            nodes.append(n)
            for s in cut_after.pop(id(n), []):
                nodes.append(s)
            continue
        stride = (attrs.get("strides") or [1, 1])[1]
        top, left, bottom, right = attrs.get("pads") or [0, 0, 0, 0]
        extra = min_width - width  # output columns added, cut again below
        name = n.name or f"depthwise{rewritten}"
        pads = numpy_helper.from_array(
            np.array([0, 0, top, left, 0, 0, bottom, right + extra * stride], np.int64), f"{name}/fast_pads")
        starts = numpy_helper.from_array(np.array([0], np.int64), f"{name}/fast_starts")
        ends = numpy_helper.from_array(np.array([-extra], np.int64), f"{name}/fast_ends")
        axes = numpy_helper.from_array(np.array([3], np.int64), f"{name}/fast_axes")
        graph.initializer.extend([pads, starts, ends, axes])
        padded = f"{name}/fast_padded"
        nodes.append(helper.make_node("Pad", [n.input[0], pads.name], [padded], mode="constant",
                                      name=f"{name}/fast_pad"))
        n.input[0] = padded
        for a in n.attribute:
            if a.name == "pads":
                a.ints[:] = [0, 0, 0, 0]
        nodes.append(n)
        # Cut after the activation that follows, so that cv::dnn still fuses it into the convolution.
        tail = n
        follow = consumers.get(n.output[0], [])
        if len(follow) == 1 and follow[0].op_type in ("Relu", "Clip", "LeakyRelu", "Sigmoid"):
            tail = follow[0]
        full = f"{tail.output[0]}/fast_full"
        cut = helper.make_node("Slice", [full, starts.name, ends.name, axes.name], [tail.output[0]],
                               name=f"{name}/fast_cut")
        tail.output[0] = full
        if tail is n:
            nodes.append(cut)
        else:
            cut_after.setdefault(id(tail), []).append(cut)
        rewritten += 1
    assert not cut_after, "an activation after a rewritten convolution was not found in the graph"
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # stale for the renamed tensors; cv::dnn does not need them
    onnx.checker.check_model(out)
    return out, rewritten


def rewrite_file(path, input_size, out_path=None):
    """Rewrites path in place (or to out_path); a file with nothing to rewrite is left byte for byte.
    Returns the number of layers rewritten."""
    import onnx
    model = onnx.load(str(path))
    new, count = rewrite(model, input_size)
    if count:
        onnx.save(new, str(out_path or path))
    elif out_path:
        onnx.save(model, str(out_path))
    return count


def _timings(path, input_size, reps):
    """cv::dnn's own time per layer (one thread), for the depthwise layers."""
    import cv2
    cv2.setNumThreads(1)
    net = cv2.dnn.readNetFromONNX(str(path))
    x = np.random.RandomState(0).uniform(-1, 1, (1, 3, input_size, input_size)).astype(np.float32)
    for _ in range(10):
        net.setInput(x)
        net.forward()
    total = 0.0
    for _ in range(reps):
        net.setInput(x)
        net.forward()
        total += net.getPerfProfile()[0]
    return total / reps / cv2.getTickFrequency() * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx")
    ap.add_argument("--input", type=int, default=64, help="the square input the layers' widths are read at")
    ap.add_argument("--out", help="write here instead of in place")
    ap.add_argument("--timings", type=int, metavar="REPS",
                    help="print cv::dnn's time per inference before and after (needs python3-opencv)")
    args = ap.parse_args(argv)
    before = _timings(args.onnx, args.input, args.timings) if args.timings else None
    count = rewrite_file(args.onnx, args.input, args.out)
    print(f"{args.onnx}: {count} depthwise layer(s) padded to at least {MIN_WIDTH} wide"
          + (f" -> {args.out}" if args.out else ""))
    if args.timings:
        after = _timings(args.out or args.onnx, args.input, args.timings)
        print(f"cv::dnn, one thread, {args.input}x{args.input}: {before:.3f} ms before, {after:.3f} ms after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
