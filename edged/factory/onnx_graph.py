"""ONNX graphs as the factory needs them: loaded with clear errors, and made ready for quantization."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edged.errors import MissingExtraError, ModelError

QDQ_MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (the `axis` attribute) needs opset 13


def onnx_module() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingExtraError("onnx", "build", "the variant factory") from None
    return onnx


def load_onnx(path: Path) -> Any:
    """The ModelProto in `path`, or a ModelError that says the file is not an ONNX model."""
    onnx = onnx_module()
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends: the file is something else
        raise ModelError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})") from None
    if not model.graph.node:
        raise ModelError(f"{path}: not an ONNX model (no graph nodes; is it another format?)")
    return model


def default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def strip_initializer_inputs(model: Any) -> int:
    """Old exporters list weights as graph inputs too; ORT then sees many inputs and the quantizer skips them."""
    weights = {init.name for init in model.graph.initializer}
    exposed = [i for i in model.graph.input if i.name in weights]
    for graph_input in exposed:
        model.graph.input.remove(graph_input)
    return len(exposed)


def upgrade_opset(model: Any, path: Path, minimum: int = QDQ_MIN_OPSET) -> Any:
    """The model at opset >= `minimum` (onnx's version converter), unchanged when it already is."""
    if default_opset(model) >= minimum:
        return model
    onnx = onnx_module()
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, minimum)
        onnx.checker.check_model(converted)
    except Exception as exc:
        raise ModelError(
            f"{path}: cannot upgrade opset {default_opset(model)} -> {minimum} for int8 QDQ: {exc}"
        ) from None
    return converted


def with_outputs(model: Any, names: list[str]) -> bytes:
    """`model` serialized with `names` as its only outputs: to read tensors inside it."""
    onnx = onnx_module()
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in names)
    return bytes(probe.SerializeToString())


def compact(model: Any) -> None:
    """Make a QDQ model as small as its numbers: what is left is weights, scales and the graph.

    A QDQ graph holds a few hundred extra nodes whose generated names (``onnx::Conv_931_DequantizeLinear_Output``)
    and per-channel all-zero zero points can weigh a third of a small model's int8 weights. Dropped: zero points
    that are all zeros on constant DequantizeLinear inputs (0 is the default), initializers nothing uses, the
    shape annotations (value_info; runtimes infer them), node names and doc strings. Internal tensors get short
    names; the graph's input and output names, its interface, are kept.
    """
    from onnx import numpy_helper

    graph = model.graph
    if any(attr.type in (attr.GRAPH, attr.GRAPHS) for node in graph.node for attr in node.attribute):
        return  # subgraphs (If, Loop) refer to outer names: leave such a model as it is
    constants = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and len(node.input) == 3 and node.input[0] in constants:
            zero_point = constants.get(node.input[2])
            if zero_point is not None and not numpy_helper.to_array(zero_point).any():
                del node.input[2]
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]
    _shorten_names(graph)
    graph.doc_string = ""
    model.doc_string = ""


def _shorten_names(graph: Any) -> None:
    keep = {i.name for i in graph.input} | {o.name for o in graph.output}
    renamed: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        if name not in renamed:
            renamed[name] = _base36(len(renamed))
        return renamed[name]

    for init in graph.initializer:
        init.name = short(init.name)
        init.doc_string = ""
    for node in graph.node:
        node.name = ""
        node.doc_string = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return "t" + out


def store_weights_float16(model: Any) -> int:
    """Convolution weights stored in float16, each widened back by a Cast: half the file, the same float32 graph.

    Runtimes fold a Cast of a constant when they load the model (ONNX Runtime's constant folding), so inference
    runs the float32 convolutions it ran before, on weights rounded to float16 (what the float TFLite files hold
    too). Returns the bytes saved; a model already stored this way is left as it is (0)."""
    onnx = onnx_module()
    from onnx import numpy_helper

    graph = model.graph
    conv_inputs = {name for node in graph.node if node.op_type == "Conv" for name in node.input[1:]}
    other_inputs = {name for node in graph.node if node.op_type != "Conv" for name in node.input}
    widened, kept = [], []
    saved = 0
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or init.name not in conv_inputs or init.name in other_inputs:
            kept.append(init)
            continue
        narrow = numpy_helper.from_array(numpy_helper.to_array(init).astype("float16"), f"{init.name}.f16")
        kept.append(narrow)
        widened.append(onnx.helper.make_node("Cast", [narrow.name], [init.name], to=onnx.TensorProto.FLOAT))
        saved += init.ByteSize() - narrow.ByteSize()
    if not widened:
        return 0
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [*widened, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    return saved
