"""ONNX graphs run by torch (edged/factory/onnx_torch.py): every op against ONNX Runtime itself, a real detector
end to end, and a QDQ graph whose weights stay on the quantizer's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_or_skip

torch = require_or_skip("torch", reason="torch is in the [build] extra")
onnx = require_or_skip("onnx")
ort = require_or_skip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edged.errors import ModelError  # noqa: E402
from edged.factory.int8 import prepare_for_quantization  # noqa: E402
from edged.factory.onnx_torch import torch_module  # noqa: E402
from edged.sources import read_image  # noqa: E402
from edged.vision.preprocess import Preprocessor  # noqa: E402

X_SHAPE = [1, 4, 10, 12]


def graph_of(nodes, initializers=(), opset: int = 17, x_shape=X_SHAPE):
    graph = helper.make_graph(
        nodes,
        "ops",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def both(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ONNX Runtime's output, torch's output) for the one-input model."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    with torch.no_grad():
        got = torch_module(model)(torch.from_numpy(x))[0].numpy()
    return expected, got


RNG = np.random.default_rng(0)
W3 = RNG.standard_normal((6, 4, 3, 3)).astype(np.float32)
WDW = RNG.standard_normal((4, 1, 3, 3)).astype(np.float32)
B6 = RNG.standard_normal(6).astype(np.float32)
I64 = np.int64
F32 = np.float32

OPS = {
    "conv-asymmetric-pads": (
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[0, 1, 1, 0], strides=[2, 2])],
        [("w", W3), ("b", B6)],
    ),
    "conv-depthwise": (
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4)],
        [("w", WDW)],
    ),
    "maxpool-ceil-pads": (
        [
            helper.make_node(
                "MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1
            )
        ],
        [],
    ),
    "averagepool": ([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])], []),
    "averagepool-pads-excluded": (
        [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
        [],
    ),
    "global-average-pool": ([helper.make_node("GlobalAveragePool", ["x"], ["y"])], []),
    "resize-nearest-asymmetric": (
        [
            helper.make_node(
                "Resize",
                ["x", "", "s"],
                ["y"],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
        ],
        [("s", np.array([1, 1, 2, 2], F32))],
    ),
    "resize-nearest-half-pixel": (
        [helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest")],
        [("s", np.array([1, 1, 2, 2], F32))],
    ),
    "resize-linear-sizes": (
        [helper.make_node("Resize", ["x", "", "", "z"], ["y"], mode="linear")],
        [("z", np.array([1, 4, 20, 24], I64))],
    ),
    "softmax": ([helper.make_node("Softmax", ["x"], ["y"], axis=1)], []),
    "concat-split": (
        [
            helper.make_node("Split", ["x", "parts"], ["a", "b"], axis=1),
            helper.make_node("Concat", ["b", "a"], ["y"], axis=1),
        ],
        [("parts", np.array([1, 3], I64))],
    ),
    "channel-shuffle": (
        [
            helper.make_node("Reshape", ["x", "shape"], ["r"]),
            helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
            helper.make_node("Reshape", ["t", "back"], ["y"]),
        ],
        [("shape", np.array([1, 2, 2, 10, 12], I64)), ("back", np.array([0, -1, 10, 12], I64))],
    ),
    "gather-slice": (
        [
            helper.make_node("Gather", ["x", "i"], ["g"], axis=1),
            helper.make_node("Slice", ["g", "starts", "ends", "axes", "steps"], ["y"]),
        ],
        [
            ("i", np.array([3, 0, -1], I64)),
            ("starts", np.array([1, 0], I64)),
            ("ends", np.array([100, -1], I64)),
            ("axes", np.array([2, 3], I64)),
            ("steps", np.array([2, 1], I64)),
        ],
    ),
    "gather-scalar-unsqueeze": (
        [
            helper.make_node("Gather", ["x", "i"], ["g"], axis=1),
            helper.make_node("Unsqueeze", ["g", "axes"], ["y"]),
        ],
        [("i", np.array(2, I64)), ("axes", np.array([1], I64))],
    ),
    "pad-reflect": (
        [helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")],
        [("pads", np.array([0, 0, 1, 2, 0, 0, 2, 1], I64))],
    ),
    "shape-driven-flatten": (
        [
            helper.make_node("Shape", ["x"], ["s"], start=0, end=2),
            helper.make_node("Constant", [], ["minus"], value=numpy_helper.from_array(np.array([-1], I64))),
            helper.make_node("Concat", ["s", "minus"], ["target"], axis=0),
            helper.make_node("Reshape", ["x", "target"], ["r"]),
            helper.make_node("Flatten", ["r"], ["y"], axis=1),
        ],
        [],
    ),
    "grid-decode": (  # what an in-graph box decoding does: cell offsets from the tensor's own width, exp sizes
        [
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Gather", ["s", "three"], ["w"], axis=0),
            helper.make_node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT),
            helper.make_node("Range", ["zero", "wf", "one"], ["columns"]),
            helper.make_node("Exp", ["x"], ["e"]),
            helper.make_node("Add", ["e", "columns"], ["y"]),
        ],
        [("three", np.array(3, I64)), ("zero", np.array(0.0, F32)), ("one", np.array(1.0, F32))],
    ),
    "activations": (
        [
            helper.make_node("LeakyRelu", ["x"], ["a"], alpha=0.1),
            helper.make_node("Sigmoid", ["a"], ["b"]),
            helper.make_node("Mul", ["a", "b"], ["c"]),
            helper.make_node("HardSigmoid", ["c"], ["d"]),
            helper.make_node("Clip", ["d", "lo", "hi"], ["e"]),
            helper.make_node("Sub", ["e", "x"], ["f"]),
            helper.make_node("Div", ["f", "two"], ["g"]),
            helper.make_node("Relu", ["g"], ["y"]),
        ],
        [("lo", np.array(0.1, F32)), ("hi", np.array(0.8, F32)), ("two", np.array(2.0, F32))],
    ),
}


@pytest.mark.parametrize("name", list(OPS))
def test_each_op_computes_what_onnx_runtime_computes(name):
    nodes, initializers = OPS[name]
    x = np.random.default_rng(1).standard_normal(X_SHAPE).astype(np.float32)
    expected, got = both(graph_of(nodes, initializers), x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_an_op_it_does_not_cover_is_named():
    model = graph_of([helper.make_node("Einsum", ["x", "x"], ["y"], equation="nchw,nchw->nc")])
    with pytest.raises(ModelError, match="Einsum"):
        torch_module(model)


def test_a_reshape_for_one_image_takes_a_batch():
    nodes, initializers = OPS["channel-shuffle"]
    module = torch_module(graph_of(nodes, initializers))
    x = np.random.default_rng(2).standard_normal([3, *X_SHAPE[1:]]).astype(np.float32)
    with torch.no_grad():
        batched = module(torch.from_numpy(x))[0]
        single = [module(torch.from_numpy(x[i : i + 1]))[0] for i in range(3)]
    np.testing.assert_array_equal(batched.numpy(), torch.cat(single).numpy())


def test_the_real_fastestdet_runs_as_in_onnx_runtime(coco_zoo, group_photo: Path, tmp_path: Path):
    parent = coco_zoo.variant("fastestdet-352")
    prepared, input_name = prepare_for_quantization(coco_zoo.file_of(parent), tmp_path)
    x, _ = Preprocessor(parent.input)(read_image(group_photo))
    model = onnx.load(str(prepared))
    session = ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"])
    expected = session.run(None, {input_name: x})[0]
    with torch.no_grad():
        got = torch_module(model)(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-3)
