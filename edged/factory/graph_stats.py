"""Parameters and multiply-accumulates counted from an ONNX graph (shapes from onnx shape inference).

Counts are the same for a float model and its int8 QDQ form: weights are followed through DequantizeLinear, and
quantization scales and zero points are not parameters.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from edged.factory.onnx_graph import load_onnx, onnx_module

_CONV_OPS = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}  # op -> index of its weight input
_MATMUL_OPS = {"MatMul", "MatMulInteger", "QLinearMatMul", "Gemm"}
_QDQ_PARAMS = {"QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2)}  # scale, zero point


class GraphStats(BaseModel):
    params: int = Field(description="weights and biases (not quantization scales, not shape constants)")
    macs: int = Field(description="multiply-accumulates of Conv, Gemm and MatMul for one inference")
    uncounted: list[str] = Field(default_factory=list, description="compute nodes whose shapes were unknown")


def graph_stats(path: Path, input_shape: tuple[int, ...] | None = None) -> GraphStats:
    """`input_shape` fixes an input whose size the file leaves free (a model served at several sizes)."""
    model = load_onnx(path)
    onnx = onnx_module()
    if input_shape is not None:
        for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, input_shape):
            dim.Clear()
            dim.dim_value = value
    with contextlib.suppress(Exception):  # best effort: nodes whose shapes stay unknown are reported as uncounted
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    macs, uncounted = count_macs(model)
    return GraphStats(params=count_params(model), macs=macs, uncounted=uncounted)


def count_params(model: Any) -> int:
    from onnx import numpy_helper

    tensors = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                tensors[node.output[0]] = value
    not_params: set[str] = set()
    for node in model.graph.node:
        for index in _QDQ_PARAMS.get(node.op_type, ()):
            if index < len(node.input):
                not_params.add(node.input[index])
    total = 0
    for name, tensor in tensors.items():
        if name in not_params or tensor.data_type == onnx_module().TensorProto.INT64:
            continue  # scales / zero points, and shapes, axes and indices
        total += int(numpy_helper.to_array(tensor).size)
    return total


def count_macs(model: Any) -> tuple[int, list[str]]:
    shapes = _known_shapes(model)
    missing = [
        name
        for node in model.graph.node
        if node.op_type in _CONV_OPS or node.op_type in _MATMUL_OPS
        for name in (node.input[0], node.output[0])
        if name not in shapes
    ]
    if missing:
        shapes.update(_shapes_by_running(model, missing))
    macs, uncounted = 0, []
    for node in model.graph.node:
        if node.op_type in _CONV_OPS:
            weight = shapes.get(node.input[_CONV_OPS[node.op_type]])
            out = shapes.get(node.output[0])
            if weight is None or out is None:
                uncounted.append(node.name or node.op_type)
                continue
            # each output element costs (in_channels / group) x kernel area; the weight is [out, in / group, k...]
            macs += math.prod(out) * math.prod(weight[1:])
        elif node.op_type in _MATMUL_OPS:
            a = shapes.get(node.input[0])
            out = shapes.get(node.output[0])
            if a is None or out is None:
                uncounted.append(node.name or node.op_type)
                continue
            trans_a = node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)
            inner = a[-2] if trans_a else a[-1]
            macs += math.prod(out) * inner
    return macs, uncounted


def _known_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Static shapes of every tensor shape inference resolved (dynamic dims make a shape unknown)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    for info in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = info.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
            shapes[info.name] = tuple(d.dim_value for d in dims)
    return shapes


def _shapes_by_running(model: Any, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Shapes that inference could not resolve (e.g. behind Shape -> Gather -> Reshape): run the model once."""
    import numpy as np
    import onnxruntime as ort

    onnx = onnx_module()
    names = list(dict.fromkeys(names))
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known_outputs = {o.name for o in probe.graph.output}
    for name in names:
        if name not in known_outputs:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    try:
        session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {
            i.name: np.zeros(
                [d if isinstance(d, int) and d > 0 else 1 for d in i.shape],
                dtype=np.uint8 if i.type == "tensor(uint8)" else np.float32,
            )
            for i in session.get_inputs()
        }
        outputs = session.run(names, feeds)
    except Exception:  # a model ORT cannot run with zeros: leave those nodes uncounted, and say so
        return {}
    return {name: tuple(out.shape) for name, out in zip(names, outputs)}
