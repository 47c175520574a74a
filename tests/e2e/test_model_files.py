"""The shipped ONNX files as the export leaves them (models/train/common.export), without PyTorch:
fast_depthwise.py pads narrow depthwise layers so that OpenCV 4.6's cv::dnn takes its fast path, and
the network's outputs must not change by it, at the input it was read at or at any other; the shipped
mask classifier must hold the rewrite (an export that skipped it would be slower and still pass the
PyTorch fixture); the head networks have nothing to rewrite and stay byte for byte."""

import sys

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kg_e2e

sys.path.insert(0, str(kg_e2e.SOURCE_DIR / "models" / "train"))
import fast_depthwise  # noqa: E402  (the training scripts' folder, put on the path above)

MODELS = kg_e2e.SOURCE_DIR / "models"


def separable_net(rng, opset=11):
    """A small network of the mask classifier's kind, random weights, at 64x64: a stride-2 stem, then
    depthwise 3x3 layers reading maps
    - dw1: 32 wide: already fast, left;
    - dw2: 32 wide, stride 2, dilation 2 and its padding 2: wide enough, but cv::dnn takes no
      padding over 1 on its fast path: the padding moved to a Pad;
    - dw3: 16 wide, no activation after it: its padding moved to a Pad is enough;
    - dw4: 16 wide, stride 2, padding 1 at the top and 1 on the right only: padded further and cut;
      its convolution's output is also read by a Sigmoid beside its Relu, so the cut comes before
      the Relu;
    - dw5: 8 wide, dilation 1 down and 2 across, strides 2 down and 1 across: padded to 20, cut; its
      convolution's output is also one of the graph's outputs, so cut before its Relu;
    - dw6: 8 wide, read by its Relu alone: padded, and cut after the Relu (which cv::dnn fuses);
    pointwise 1x1 layers, a global average pool and a linear layer."""
    nodes, inits = [], []

    def weight(name, *shape):
        inits.append(numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name))
        return name

    def conv(x, out, cin, cout, k, stride=1, group=1, relu=True, pads=None, dilation=1):
        strides = stride if isinstance(stride, list) else [stride, stride]
        dilations = dilation if isinstance(dilation, list) else [dilation, dilation]
        y = out + ("_c" if relu else "")
        nodes.append(helper.make_node("Conv", [x, weight(out + "_w", cout, cin // group, k, k), weight(out + "_b", cout)],
                                      [y], kernel_shape=[k, k], strides=strides,
                                      pads=pads or [k // 2 * dilations[0], k // 2 * dilations[1]] * 2,
                                      dilations=dilations, group=group, name=out))
        if relu:
            nodes.append(helper.make_node("Relu", [y], [out], name=out + "_relu"))
        return out

    x = conv("input", "stem", 3, 16, 3, 2)
    x = conv(x, "dw1", 16, 16, 3, group=16)
    x = conv(x, "pw1", 16, 24, 1)
    x = conv(x, "dw2", 24, 24, 3, 2, group=24, dilation=2)
    x = conv(x, "pw2", 24, 32, 1)
    x = conv(x, "dw3", 32, 32, 3, group=32, relu=False)
    x = conv(x, "pw3", 32, 32, 1)
    x = conv(x, "dw4", 32, 32, 3, 2, group=32, pads=[1, 0, 0, 1])
    nodes.append(helper.make_node("Sigmoid", ["dw4_c"], ["dw4_gate"], name="dw4_gate"))
    nodes.append(helper.make_node("Mul", [x, "dw4_gate"], ["dw4_gated"], name="dw4_mul"))
    x = conv("dw4_gated", "dw5", 32, 32, 3, [2, 1], group=32, dilation=[1, 2])
    x = conv(x, "dw6", 32, 32, 3, group=32)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"]))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", weight("fc_w", 3, 32), weight("fc_b", 3)], ["logits"], transB=1))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3]),
               helper.make_tensor_value_info("dw5_c", TensorProto.FLOAT, [1, 32, None, None])]
    graph = helper.make_graph(nodes, "separable", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def outputs(model, shape, rng):
    net = cv2.dnn.readNetFromONNX(np.frombuffer(model.SerializeToString(), np.uint8))
    net.setInput(rng.uniform(-1, 1, shape).astype(np.float32))
    return net.forward(["logits", "dw5_c"])


def expect_same_outputs(model, fast, shapes):
    for shape in shapes:
        want = outputs(model, shape, np.random.default_rng(sum(shape)))
        got = outputs(fast, shape, np.random.default_rng(sum(shape)))
        for w, g in zip(want, got):
            assert g.shape == w.shape, shape
            assert np.abs(g - w).max() < 1e-5 * max(1.0, np.abs(w).max()), shape


def test_the_rewrite_keeps_the_outputs_at_every_input_size():
    model = separable_net(np.random.default_rng(7))
    fast, count = fast_depthwise.rewrite(model, 64)
    assert count == 5  # all but dw1
    ops = [n.op_type for n in fast.graph.node]
    assert ops.count("Pad") == 5 and ops.count("Slice") == 3
    after = {n.name: fast.graph.node[i + 1] for i, n in enumerate(fast.graph.node[:-1])}
    # The cut follows the activation where only the activation reads the convolution (cv::dnn fuses
    # the two); dw4's and dw5's are read by something else as well, so the cut comes first.
    assert after["dw4"].op_type == "Slice" and after["dw5"].op_type == "Slice"
    assert after["dw6"].name == "dw6_relu" and after["dw6_relu"].op_type == "Slice"
    assert after["dw2"].name == "dw2_relu" and after["dw3"].op_type == "Conv"  # no cut: the Pad alone was enough
    # Every rewritten layer now reads a map wide enough for the fast path, with no padding of its own.
    widths = fast_depthwise._widths(fast, (1, 3, 64, 64))
    for node in fast.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.name in ("dw2", "dw3", "dw4", "dw5", "dw6"):
            assert list(attrs["pads"]) == [0, 0, 0, 0], node.name
            assert widths[node.input[0]] >= 16 + 2 * attrs["dilations"][1], node.name
    shapes = [(2, 3, s, s) for s in (64, 16, 32, 48, 80, 96, 128)] + [(2, 3, 48, 64), (1, 3, 64, 40), (1, 3, 37, 53)]
    expect_same_outputs(model, fast, shapes)
    # Run again, it finds nothing left to do.
    assert fast_depthwise.rewrite(fast, 64)[1] == 0


def test_names_the_graph_already_has_are_not_taken_again():
    model = separable_net(np.random.default_rng(5))
    # A node and a tensor already named as the rewrite would name its own: cv::dnn refuses a net
    # with two layers of one name.
    next(n for n in model.graph.node if n.name == "pw3").name = "dw4/fast_pad"
    inits = {i.name: i for i in model.graph.initializer}
    inits["dw5_b"].name = "dw5/fast_pads"
    next(n for n in model.graph.node if n.name == "dw5").input[2] = "dw5/fast_pads"
    fast, count = fast_depthwise.rewrite(model, 64)
    assert count == 5
    names = [n.name for n in fast.graph.node if n.name]
    assert len(names) == len(set(names))
    expect_same_outputs(model, fast, [(1, 3, 64, 64)])


@pytest.mark.parametrize("opset", [9, 10])
def test_a_file_it_cannot_rewrite_is_refused_naming_why(opset):
    with pytest.raises(ValueError, match=f"opset {opset}"):
        fast_depthwise.rewrite(separable_net(np.random.default_rng(3), opset), 64)


def test_shapes_it_cannot_infer_are_refused_naming_the_input():
    # A constant the size of the input (BlazeFace's anchors are so): read at another size, the shapes
    # disagree, and the export leaves the file as it is (common.export).
    anchors = numpy_helper.from_array(np.zeros((1, 3, 64, 64), np.float32), "anchors")
    graph = helper.make_graph([helper.make_node("Add", ["input", "anchors"], ["y"])], "anchored",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])], [anchors])
    anchored = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    assert fast_depthwise.rewrite(anchored, 64)[1] == 0
    with pytest.raises(ValueError, match=r"shape inference failed at input \[1, 3, 48, 64\]"):
        fast_depthwise.rewrite(anchored, (1, 3, 48, 64))


def test_the_shipped_classifier_holds_the_rewrite_and_the_head_networks_need_none():
    classifier = onnx.load(str(MODELS / "kitchen-mask-classifier.onnx"))
    assert fast_depthwise.rewrite(classifier, 64)[1] == 0, "re-exported without common.export's rewrite"
    ops = [n.op_type for n in classifier.graph.node]
    assert ops.count("Pad") == 5 and ops.count("Slice") == 3
    # Each cut follows the Relu after its convolution, which cv::dnn then still fuses into it.
    made_by = {o: n for n in classifier.graph.node for o in n.output}
    for cut in (n for n in classifier.graph.node if n.op_type == "Slice"):
        relu = made_by[cut.input[0]]
        assert relu.op_type == "Relu" and made_by[relu.input[0]].op_type == "Conv", cut.name
    for name in ("kitchen-one-pass-heads", "kitchen-covering-heads", "kitchen-mask-heads", "kitchen-heads"):
        assert fast_depthwise.rewrite(onnx.load(str(MODELS / f"{name}.onnx")), 512)[1] == 0, name


def test_a_file_with_nothing_to_rewrite_is_left_byte_for_byte(tmp_path):
    path = tmp_path / "heads.onnx"
    original = (MODELS / "kitchen-one-pass-heads.onnx").read_bytes()
    path.write_bytes(original)
    assert fast_depthwise.rewrite_file(path, 512) == 0
    assert path.read_bytes() == original


# --input is WIDTHxHEIGHT: 96 wide leaves dw2 (its padding), dw5 and dw6 (reading 12); 16 wide, all six.
@pytest.mark.parametrize("size,count", [("64", 5), ("96x16", 3), ("512", 0)])
def test_the_command_line_names_what_it_did(tmp_path, capsys, size, count):
    src = tmp_path / "in.onnx"
    if size != "512":
        onnx.save(separable_net(np.random.default_rng(1)), str(src))
    else:
        src.write_bytes((MODELS / "kitchen-one-pass-heads.onnx").read_bytes())
    out = tmp_path / "out.onnx"
    assert fast_depthwise.main([str(src), "--input", size, "--out", str(out)]) == 0
    assert f"{count} depthwise layer(s) padded" in capsys.readouterr().out
    assert fast_depthwise.main([str(out), "--input", size]) == 0
    assert "0 depthwise layer(s) padded" in capsys.readouterr().out


def test_the_command_line_refuses_what_it_cannot_read(tmp_path, capsys):
    assert fast_depthwise.main([str(tmp_path / "missing.onnx")]) == 1
    assert "missing.onnx: no such file" in capsys.readouterr().err
    (tmp_path / "notes.onnx").write_text("not a network")
    assert fast_depthwise.main([str(tmp_path / "notes.onnx")]) == 1
    assert "notes.onnx: not an ONNX file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        fast_depthwise.main([str(tmp_path / "notes.onnx"), "--input", "64x"])
