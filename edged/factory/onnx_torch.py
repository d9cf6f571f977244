"""An ONNX graph run by torch, so that its weights can be trained: the interpreter quantization-aware fine-tuning
(qat.py) needs, for any detector the manifest describes, not only the ones edged trains itself.

Each node becomes the torch call that computes the same thing; the graph's float initializers are constants, and
a QDQ graph's quantize / dequantize pairs become torch's fake quantization (straight-through gradients), on the
scales and zero points ONNX Runtime's quantizer chose, or on learnt scales (`learn_ranges`). A weight or bias that
a DequantizeLinear reads from an integer initializer becomes a trainable tensor that stays on its grid, and
`integers()` gives it back as the quantizer's integers. Only the ops the detectors here use are covered; any other
raises ModelError naming it (nothing is guessed).

Not bit-exact with ONNX Runtime on a QDQ graph: torch sums a convolution in another order, so a value a hair from
a rounding boundary can land on the other side, and that one step spreads through later layers like any other
quantization error. Float graphs agree to float precision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edged.errors import ModelError

Values = dict[str, Any]  # tensor name -> torch.Tensor


def torch_module(model: Any, weight_range: tuple[int, int] = (-127, 127), learn_ranges: bool = False) -> Any:
    """An ONNX ModelProto (one input, static shapes) as a torch.nn.Module returning the graph's outputs as a list.

    `weight_range`: the integers a quantized weight may take once trained (the quantizer's; int32 biases keep
    their dtype's). `learn_ranges`: the per-tensor activation scales become Parameters (`ranges`, named by
    `range_names`), trained as LSQ does."""
    import torch

    class OnnxModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.graph = model.graph
            inits = {i.name: _array(i) for i in model.graph.initializer}
            grids = _grid_tensors(model.graph, inits, weight_range)
            self.grids: Any = torch.nn.ModuleList(grids.values())
            self._grid_outputs = list(grids)
            integers = {g.name for g in grids.values()}
            self._constants = {n: torch.from_numpy(a) for n, a in inits.items() if n not in integers}
            # Activation ranges: the scales of the QuantizeLinear nodes, trainable when asked.
            ranges = _activation_scales(model.graph, inits) if learn_ranges else []
            self.ranges = torch.nn.ParameterList(
                torch.nn.Parameter(self._constants.pop(name).float()) for name in ranges
            )
            self.range_names = ranges
            # The DequantizeLinear nodes of weights and biases are replaced by their grid tensors.
            opset = _opset(model)
            self._steps = [(n, _bind(n, opset)) for n in model.graph.node if n.output[0] not in grids]

        def forward(self, x: Any) -> list[Any]:
            values: Values = dict(self._constants)
            values.update(zip(self.range_names, self.ranges, strict=True))
            values.update((name, grid()) for name, grid in zip(self._grid_outputs, self.grids, strict=True))
            values[self.graph.input[0].name] = x
            for node, run in self._steps:
                outputs = run(*[values[name] if name else None for name in node.input])
                values.update(zip(node.output, outputs if isinstance(outputs, tuple) else (outputs,), strict=False))
            return [values[o.name] for o in self.graph.output]

        def integers(self) -> dict[str, np.ndarray]:
            """Each trained weight or bias rounded onto its quantizer's grid, by integer initializer name."""
            return {grid.name: grid.integers() for grid in self.grids}

    return OnnxModule()


def _activation_scales(graph: Any, inits: dict[str, np.ndarray]) -> list[str]:
    """The per-tensor scale initializers of the graph's QuantizeLinear nodes."""
    return sorted(
        {
            n.input[1]
            for n in graph.node
            if n.op_type == "QuantizeLinear" and n.input[1] in inits and inits[n.input[1]].size == 1
        }
    )


def _array(init: Any) -> np.ndarray:
    from onnx import numpy_helper

    return np.array(numpy_helper.to_array(init))


def _grid_tensors(graph: Any, inits: dict[str, np.ndarray], weight_range: tuple[int, int]) -> dict[str, Any]:
    """A GridTensor for each DequantizeLinear that reads an integer initializer, by the node's output name."""
    from onnx import helper

    found: dict[str, Any] = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        integers = inits[node.input[0]]
        if integers.dtype.kind not in "iu":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        scale = inits[node.input[1]].astype(np.float64).reshape(-1)
        has_zero = len(node.input) > 2 and node.input[2]
        zero = inits[node.input[2]].astype(np.float64).reshape(-1) if has_zero else np.zeros_like(scale)
        shape = [1] * integers.ndim
        if integers.ndim and scale.size > 1:
            shape[int(attrs.get("axis", 1)) % integers.ndim] = -1
        limits = np.iinfo(integers.dtype)
        bounds = weight_range if integers.itemsize == 1 else (int(limits.min), int(limits.max))
        found[node.output[0]] = _grid_tensor(node.input[0], integers, scale.reshape(shape), zero.reshape(shape), bounds)
    return found


def _grid_tensor(name: str, integers: np.ndarray, scale: np.ndarray, zero: np.ndarray, bounds: tuple[int, int]) -> Any:
    """A quantized weight or bias as a trainable tensor that stays on its grid: real = scale · (integer - zero)."""
    import torch

    class GridTensor(torch.nn.Module):
        """Weights (8-bit) are trained in units of their grid step, so that one learning rate moves every layer's
        weights by the same fraction of a step, and are rounded in the forward pass (straight-through gradient).
        Biases (int32) train as plain floats: their step (input scale x weight scale) is far below anything
        training could feel."""

        def __init__(self) -> None:
            super().__init__()
            self.name = name
            self.is_weight = integers.itemsize == 1
            self.scale: Any = torch.from_numpy(np.ascontiguousarray(scale, dtype=np.float32))
            offset = integers.astype(np.float64) - zero
            latent = offset if self.is_weight else offset * scale
            # np.asarray: a quantized scalar (a 0-d initializer, e.g. a constant of an Add) comes out of numpy's
            # arithmetic as a numpy scalar, which torch.from_numpy refuses
            self.latent = torch.nn.Parameter(torch.from_numpy(np.asarray(latent, dtype=np.float32)))
            self._zero, self._bounds = zero, bounds
            self._low = torch.from_numpy(np.asarray(bounds[0] - zero, dtype=np.float32))
            self._high = torch.from_numpy(np.asarray(bounds[1] - zero, dtype=np.float32))

        def forward(self) -> Any:
            if not self.is_weight:
                return self.latent
            rounded = self.latent + (self.latent.round() - self.latent).detach()
            return self.scale * torch.maximum(torch.minimum(rounded, self._high), self._low)

        def rescale(self, scale: np.ndarray) -> None:
            """A bias whose grid changed with its input's learnt range: same real value, new step."""
            self.scale = torch.from_numpy(np.asarray(scale, np.float32).reshape(self.scale.shape))

        def integers(self) -> np.ndarray:
            latent = self.latent.detach().double().numpy()
            steps = latent if self.is_weight else latent / self.scale.double().numpy()
            return np.clip(np.round(steps) + self._zero, *self._bounds)

    return GridTensor()


def _opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


def _bind(node: Any, opset: int) -> Callable[..., Any]:
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    make = _OPS.get(node.op_type)
    if make is None:
        raise ModelError(f"node {node.name or node.output[0]}: op {node.op_type} is not supported for fine-tuning")
    return make(attrs, opset)


# -- ops: attrs, opset -> a function of the node's inputs (torch tensors, or None for an omitted optional input) --


def _ints(t: Any) -> list[int]:
    return [int(v) for v in t.reshape(-1).tolist()]


def _conv(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    import torch.nn.functional as F

    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ModelError("Conv with auto_pad is not supported for fine-tuning")
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    strides, dilations, group = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1]), attrs.get("group", 1)
    half = len(pads) // 2
    symmetric = pads[:half] == pads[half:]

    def conv(x: Any, w: Any, b: Any = None) -> Any:
        if not symmetric:
            x = F.pad(x, _torch_pads(pads))
        return F.conv2d(x, w, b, strides, pads[:half] if symmetric else 0, dilations, group)

    return conv


def _torch_pads(pads: list[int]) -> list[int]:
    """ONNX [x1_begin, x2_begin, ..., x1_end, x2_end, ...] -> torch's (last_begin, last_end, ..., first_end)."""
    half = len(pads) // 2
    out: list[int] = []
    for axis in reversed(range(half)):
        out += [pads[axis], pads[axis + half]]
    return out


def _pool(kind: str) -> Callable[[dict[str, Any], int], Callable[..., Any]]:
    def make(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
        import torch.nn.functional as F

        kernel, strides = attrs["kernel_shape"], attrs.get("strides", [1] * len(attrs["kernel_shape"]))
        pads, ceil = list(attrs.get("pads", [0] * 2 * len(kernel))), bool(attrs.get("ceil_mode", 0))
        count_pad = bool(attrs.get("count_include_pad", 0))

        def pool(x: Any) -> Any:
            if kind == "max":
                x = F.pad(x, _torch_pads(pads), value=float("-inf")) if any(pads) else x
                return F.max_pool2d(x, kernel, strides, 0, ceil_mode=ceil)
            half = len(pads) // 2
            if pads[:half] != pads[half:]:
                raise ModelError("AveragePool with asymmetric pads is not supported for fine-tuning")
            return F.avg_pool2d(x, kernel, strides, pads[:half], ceil, count_include_pad=count_pad)

        return pool

    return make


def _global_average_pool(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    return lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


def _resize(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    import torch.nn.functional as F

    mode = _text(attrs.get("mode", b"nearest"))
    transform = _text(attrs.get("coordinate_transformation_mode", b"half_pixel"))
    nearest_mode = _text(attrs.get("nearest_mode", b"round_prefer_floor"))
    floor = transform == "asymmetric" and nearest_mode == "floor"
    # Integer upscaling with half_pixel + round_prefer_floor picks the same pixels as floor + asymmetric.
    half_pixel = transform in ("half_pixel", "pytorch_half_pixel") and nearest_mode == "round_prefer_floor"
    if mode == "nearest" and not (floor or half_pixel):
        raise ModelError(f"Resize nearest ({transform}, {nearest_mode}) is not supported for fine-tuning")
    if mode == "linear" and transform not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        raise ModelError(f"Resize linear ({transform}) is not supported for fine-tuning")
    if mode not in ("nearest", "linear"):
        raise ModelError(f"Resize {mode} is not supported for fine-tuning")

    def resize(x: Any, roi: Any = None, scales: Any = None, sizes: Any = None) -> Any:
        size = _ints(sizes)[2:] if sizes is not None and sizes.numel() else None
        if size is None:
            size = [round(d * float(s)) for d, s in zip(x.shape[2:], scales.reshape(-1).tolist()[2:])]
        if mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        return F.interpolate(x, size=size, mode="bilinear", align_corners=transform == "align_corners")

    return resize


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _quantize_linear(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    """Quantize + the DequantizeLinear that follows it, as one fake quantization (see _dequantize_linear)."""
    import torch

    axis = attrs.get("axis", 1)

    def quantize(x: Any, scale: Any, zero: Any = None) -> Any:
        zero = torch.zeros((), dtype=torch.uint8) if zero is None else zero
        limits = torch.iinfo(zero.dtype)
        if scale.requires_grad:  # a learnt range (LSQ: Esser et al. 2020), its gradient scaled as the paper does
            grad_factor = 1.0 / float(np.sqrt(x[0].numel() * int(limits.max)))
            return torch._fake_quantize_learnable_per_tensor_affine(
                x, scale.reshape(1), zero.float().reshape(1), int(limits.min), int(limits.max), grad_factor
            )
        if scale.numel() == 1:
            return torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero), int(limits.min), int(limits.max))
        return torch.fake_quantize_per_channel_affine(
            x, scale.float(), zero.int(), axis, int(limits.min), int(limits.max)
        )

    return quantize


def _dequantize_linear(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    """Its input is already dequantized: QuantizeLinear fake-quantizes, and integer initializers are Parameters."""
    return lambda x, scale=None, zero=None: x


def _softmax(attrs: dict[str, Any], opset: int) -> Callable[..., Any]:
    axis = attrs.get("axis", -1 if opset >= 13 else 1)
    if opset < 13:
        raise ModelError("Softmax before opset 13 (flattening semantics) is not supported for fine-tuning")
    return lambda x: x.softmax(axis)


def _concat(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    import torch

    return lambda *xs: torch.cat(xs, attrs["axis"])


def _reshape(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    def reshape(x: Any, shape: Any) -> Any:
        dims = [x.shape[i] if d == 0 and not attrs.get("allowzero", 0) else d for i, d in enumerate(_ints(shape))]
        if dims and dims[0] == 1 and x.shape[0] > 1:
            dims[0] = x.shape[0]  # exported for one image: the leading 1 is the batch, and training feeds several
        return x.reshape(dims)

    return reshape


def _gather(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    axis = attrs.get("axis", 0)

    def gather(x: Any, indices: Any) -> Any:
        index = indices.long() % x.shape[axis]
        if index.dim() == 0:
            return x.select(axis, int(index))
        return x.index_select(axis, index.reshape(-1)).reshape(
            *x.shape[:axis], *index.shape, *x.shape[axis % x.dim() + 1 :]
        )

    return gather


def _slice(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    def slice_(x: Any, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> Any:
        axes_ = _ints(axes) if axes is not None else list(range(len(_ints(starts))))
        steps_ = _ints(steps) if steps is not None else [1] * len(axes_)
        index = [slice(None)] * x.dim()
        for a, s, e, st in zip(axes_, _ints(starts), _ints(ends), steps_):
            if st < 0:
                raise ModelError("Slice with negative steps is not supported for fine-tuning")
            size = x.shape[a]
            index[a] = slice(max(min(s, size), -size), max(min(e, size), -size - 1), st)
        return x[tuple(index)]

    return slice_


def _split(attrs: dict[str, Any], opset: int) -> Callable[..., Any]:
    axis = attrs.get("axis", 0)

    def split(x: Any, sizes: Any = None) -> tuple[Any, ...]:
        parts = attrs.get("split") if opset < 13 else (_ints(sizes) if sizes is not None else None)
        if parts is None:
            count = attrs.get("num_outputs")
            if count is None:
                raise ModelError("Split without sizes or num_outputs is not supported for fine-tuning")
            parts = [-(-x.shape[axis] // count)] * count
            parts[-1] = x.shape[axis] - sum(parts[:-1])
        return tuple(x.split(list(parts), axis))

    return split


def _pad(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    import torch.nn.functional as F

    mode = _text(attrs.get("mode", b"constant"))
    if mode not in ("constant", "reflect", "edge"):
        raise ModelError(f"Pad {mode} is not supported for fine-tuning")

    def pad(x: Any, pads: Any, value: Any = None, axes: Any = None) -> Any:
        if axes is not None:
            raise ModelError("Pad with axes is not supported for fine-tuning")
        torch_mode = {"edge": "replicate"}.get(mode, mode)
        fill = float(value) if value is not None and value.numel() else 0.0
        widths = _torch_pads(_ints(pads))
        while len(widths) > 2 and not any(widths[-2:]):
            widths = widths[:-2]  # reflect and edge pad only the trailing axes in torch
        return F.pad(x, widths, torch_mode, fill if mode == "constant" else None)

    return pad


def _unsqueeze(attrs: dict[str, Any], opset: int) -> Callable[..., Any]:
    def unsqueeze(x: Any, axes: Any = None) -> Any:
        for axis in sorted(attrs["axes"] if opset < 13 else _ints(axes)):
            x = x.unsqueeze(axis)
        return x

    return unsqueeze


def _squeeze(attrs: dict[str, Any], opset: int) -> Callable[..., Any]:
    def squeeze(x: Any, axes: Any = None) -> Any:
        chosen = attrs.get("axes") if opset < 13 else (_ints(axes) if axes is not None else None)
        if chosen is None:
            return x.squeeze()
        for axis in sorted((a % x.dim() for a in chosen), reverse=True):
            x = x.squeeze(axis)
        return x

    return squeeze


def _cast(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    import torch
    from onnx import TensorProto

    dtypes = {
        TensorProto.FLOAT: torch.float32,
        TensorProto.INT64: torch.int64,
        TensorProto.INT32: torch.int32,
        TensorProto.BOOL: torch.bool,
    }
    if attrs["to"] not in dtypes:
        raise ModelError(f"Cast to ONNX type {attrs['to']} is not supported for fine-tuning")
    return lambda x: x.to(dtypes[attrs["to"]])


def _constant(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    import torch
    from onnx import numpy_helper

    if "value" not in attrs:
        raise ModelError("Constant without a tensor value is not supported for fine-tuning")
    value = torch.from_numpy(np.array(numpy_helper.to_array(attrs["value"])))
    return lambda: value


def _shape(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    import torch

    return lambda x: torch.tensor(list(x.shape)[attrs.get("start", 0) : attrs.get("end")], dtype=torch.int64)


def _range(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    import torch

    return lambda start, limit, delta: torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


def _transpose(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    return lambda x: x.permute(*(attrs.get("perm") or reversed(range(x.dim()))))


def _flatten(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    axis = attrs.get("axis", 1)
    return lambda x: x.reshape(int(np.prod(x.shape[: axis % x.dim()] or [1])), -1)


def _clip(attrs: dict[str, Any], opset: int) -> Callable[..., Any]:
    def clip(x: Any, low: Any = None, high: Any = None) -> Any:
        if opset < 11:
            low_, high_ = attrs.get("min"), attrs.get("max")
        else:
            low_ = None if low is None else float(low)
            high_ = None if high is None else float(high)
        return x.clamp(low_, high_)

    return clip


def _elementwise(function: Callable[..., Any]) -> Callable[[dict[str, Any], int], Callable[..., Any]]:
    return lambda attrs, opset: function


def _leaky_relu(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    import torch.nn.functional as F

    return lambda x: F.leaky_relu(x, attrs.get("alpha", 0.01))


def _hard_sigmoid(attrs: dict[str, Any], _: int) -> Callable[..., Any]:
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    return lambda x: (alpha * x + beta).clamp(0, 1)


def _ops() -> dict[str, Callable[[dict[str, Any], int], Callable[..., Any]]]:
    import operator

    return {
        "Conv": _conv,
        "MaxPool": _pool("max"),
        "AveragePool": _pool("average"),
        "GlobalAveragePool": _global_average_pool,
        "Resize": _resize,
        "QuantizeLinear": _quantize_linear,
        "DequantizeLinear": _dequantize_linear,
        "Softmax": _softmax,
        "Concat": _concat,
        "Reshape": _reshape,
        "Gather": _gather,
        "Slice": _slice,
        "Split": _split,
        "Pad": _pad,
        "Unsqueeze": _unsqueeze,
        "Squeeze": _squeeze,
        "Cast": _cast,
        "Constant": _constant,
        "Shape": _shape,
        "Transpose": _transpose,
        "Flatten": _flatten,
        "Clip": _clip,
        "LeakyRelu": _leaky_relu,
        "HardSigmoid": _hard_sigmoid,
        "Relu": _elementwise(lambda x: x.relu()),
        "Sigmoid": _elementwise(lambda x: x.sigmoid()),
        "Exp": _elementwise(lambda x: x.exp()),
        "Range": _range,
        "Identity": _elementwise(lambda x: x),
        "Add": _elementwise(operator.add),
        "Sub": _elementwise(operator.sub),
        "Mul": _elementwise(operator.mul),
        "Div": _elementwise(operator.truediv),
    }


_OPS = _ops()
