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


def separable_net(rng):
    """A small network of the mask classifier's kind, random weights, at 64x64: a stride-2 stem,
    depthwise 3x3 layers reading maps 32 (already fast, left), 16 (no activation after it: its
    padding moved to a Pad is enough), 16 (stride 2, pads uneven: padded further, cut after its
    Relu) and 8 wide (dilation 2: padded to 20; its own output also read by the graph's outputs, so
    cut before its Relu), pointwise 1x1 layers, a global average pool and a linear layer."""
    nodes, inits = [], []

    def weight(name, *shape):
        inits.append(numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name))
        return name

    def conv(x, out, cin, cout, k, stride, group=1, relu=True, pads=None, dilation=1):
        y = out + ("_c" if relu else "")
        nodes.append(helper.make_node("Conv", [x, weight(out + "_w", cout, cin // group, k, k), weight(out + "_b", cout)],
                                      [y], kernel_shape=[k, k], strides=[stride, stride],
                                      pads=pads or [k // 2 * dilation] * 4, dilations=[dilation, dilation],
                                      group=group, name=out))
        if relu:
            nodes.append(helper.make_node("Relu", [y], [out], name=out + "_relu"))
        return out

    x = conv("input", "stem", 3, 16, 3, 2)
    x = conv(x, "dw1", 16, 16, 3, 1, group=16)
    x = conv(x, "pw1", 16, 24, 1, 1)
    x = conv(x, "dw2", 24, 24, 3, 2, group=24)
    x = conv(x, "pw2", 24, 32, 1, 1)
    x = conv(x, "dw3", 32, 32, 3, 1, group=32, relu=False)
    x = conv(x, "pw3", 32, 32, 1, 1)
    x = conv(x, "dw4", 32, 32, 3, 2, group=32, pads=[0, 0, 1, 1])
    x = conv(x, "dw5", 32, 32, 3, 1, group=32, dilation=2)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"]))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], axis=1))
    nodes.append(helper.make_node("Gemm", ["flat", weight("fc_w", 3, 32), weight("fc_b", 3)], ["logits"], transB=1))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3]),
               helper.make_tensor_value_info("dw5_c", TensorProto.FLOAT, [1, 32, None, None])]
    graph = helper.make_graph(nodes, "separable", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    onnx.checker.check_model(model)
    return model


def outputs(model, shape, rng):
    net = cv2.dnn.readNetFromONNX(np.frombuffer(model.SerializeToString(), np.uint8))
    net.setInput(rng.uniform(-1, 1, shape).astype(np.float32))
    return net.forward(["logits", "dw5_c"])


def test_the_rewrite_keeps_the_outputs_at_every_input_size():
    model = separable_net(np.random.default_rng(7))
    fast, count = fast_depthwise.rewrite(model, 64)
    assert count == 3  # dw3, dw4, dw5; dw1 and dw2 read maps 32 wide
    ops = [n.op_type for n in fast.graph.node]
    assert ops.count("Pad") == 3 and ops.count("Slice") == 2
    after = {n.name: fast.graph.node[i + 1] for i, n in enumerate(fast.graph.node[:-1])}
    # The activation stays right after its convolution (cv::dnn fuses the two) and the cut follows it,
    # but for dw5, whose own output the graph also gives out: cut right after the convolution.
    assert after["dw4"].name == "dw4_relu" and after["dw4_relu"].op_type == "Slice"
    assert after["dw5"].op_type == "Slice" and after[after["dw5"].name].name == "dw5_relu"
    assert after["dw3"].op_type == "Conv"  # no cut: the Pad alone was enough
    for shape in [(2, 3, s, s) for s in (64, 16, 32, 48, 80, 96, 128)] + [(2, 3, 48, 64), (1, 3, 64, 40)]:
        want = outputs(model, shape, np.random.default_rng(sum(shape)))
        got = outputs(fast, shape, np.random.default_rng(sum(shape)))
        for w, g in zip(want, got):
            assert g.shape == w.shape, shape
            assert np.abs(g - w).max() < 1e-5 * max(1.0, np.abs(w).max()), shape
    # Run again, it finds nothing left to do.
    assert fast_depthwise.rewrite(fast, 64)[1] == 0


def test_a_file_it_cannot_rewrite_is_refused_naming_why():
    old = separable_net(np.random.default_rng(3))
    old.opset_import[0].version = 9
    with pytest.raises(ValueError, match="opset 9"):
        fast_depthwise.rewrite(old, 64)
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
    assert [n.op_type for n in classifier.graph.node].count("Pad") == 5
    for name in ("kitchen-one-pass-heads", "kitchen-covering-heads", "kitchen-mask-heads", "kitchen-heads"):
        assert fast_depthwise.rewrite(onnx.load(str(MODELS / f"{name}.onnx")), 512)[1] == 0, name


def test_a_file_with_nothing_to_rewrite_is_left_byte_for_byte(tmp_path):
    path = tmp_path / "heads.onnx"
    original = (MODELS / "kitchen-one-pass-heads.onnx").read_bytes()
    path.write_bytes(original)
    assert fast_depthwise.rewrite_file(path, 512) == 0
    assert path.read_bytes() == original


@pytest.mark.parametrize("size,count", [(64, 3), (512, 0)])
def test_the_command_line_names_what_it_did(tmp_path, capsys, size, count):
    src = tmp_path / "in.onnx"
    if size == 64:
        onnx.save(separable_net(np.random.default_rng(1)), str(src))
    else:
        src.write_bytes((MODELS / "kitchen-one-pass-heads.onnx").read_bytes())
    out = tmp_path / "out.onnx"
    assert fast_depthwise.main([str(src), "--input", str(size), "--out", str(out)]) == 0
    assert f"{count} depthwise layer(s) padded" in capsys.readouterr().out
    assert fast_depthwise.rewrite(onnx.load(str(out)), size)[1] == 0
