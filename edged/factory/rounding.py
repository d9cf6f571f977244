"""Weight rounding beyond nearest for an ONNX Runtime QDQ model: bias correction, and AdaRound.

Why: on a small net every layer's rounding error adds up: weights moved at random by rounding's size cost FastestDet
0.002-0.015 mAP50-95 (bench/INT8_RECIPES.md), most of a 0.01 guard.

- Bias correction (Nagel et al., "Data-Free Quantization", 2019, the empirical form): each Conv's bias absorbs the
  mean error of its output, measured on the calibration images with the layers before it already quantized.
- AdaRound (Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization", 2020): each weight is
  rounded up or down, whichever minimises the layer's output error E||W·x̂ - Ŵ·x̂||² on its own quantized
  input x̂; then the bias is corrected. (Matching the float model's input x instead, to absorb earlier layers' error as
  well, did worse on FastestDet in an exploratory run: it fits the calibration images' noise.)

Layer by layer, in graph order: layer k's input is taken with the layers before it already rounded. The error is
quadratic in Ŵ, so it needs only the first and second moments of the layer's input patches, accumulated image
by image: a few hundred kB per layer, plain numpy, no torch. Scales and zero points stay the quantizer's; only the
integers and the int32 biases change, so the graph, its size and its speed are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from edged.factory.onnx_graph import with_outputs

ITERATIONS = 1000  # Adam steps per layer
REG_WEIGHT = 0.01  # the paper's lambda: how hard the rounding variables are pushed to 0 or 1
WARM_UP = 0.2  # fraction of the steps with no push, so that the reconstruction alone leads at first
BETA = (20.0, 2.0)  # the push's annealing: flat (only near-decided weights feel it) -> everywhere
ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch: h reaches exactly 0 and 1 with finite V
LEARNING_RATE = 0.01


@dataclass(frozen=True)
class ConvGeometry:
    """What a Conv node does to its input, enough to cut the input into the patches its weights see."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    group: int

    @classmethod
    def of(cls, node: Any) -> ConvGeometry | None:
        """None for what this module does not model (dilation, auto_pad, 1-D or 3-D): such a layer keeps its
        nearest rounding."""
        from onnx import helper

        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel = tuple(attrs.get("kernel_shape", ()))
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        if len(kernel) != 2 or any(d != 1 for d in attrs.get("dilations", [1, 1])) or auto_pad != b"NOTSET":
            return None
        strides = tuple(attrs.get("strides", [1, 1]))
        pads = tuple(attrs.get("pads", [0, 0, 0, 0]))
        return cls(kernel, strides, pads, int(attrs.get("group", 1)))  # type: ignore[arg-type]

    def patches(self, x: np.ndarray) -> np.ndarray:
        """[1, C, H, W] -> [groups, C/groups·kh·kw, positions], in the order of the weights' [C/groups, kh, kw]."""
        channels = x.shape[1]
        (kh, kw), (sh, sw), (top, left, bottom, right) = self.kernel, self.strides, self.pads
        image = x[0].astype(np.float64)
        if (kh, kw, sh, sw) == (1, 1, 1, 1) and not any(self.pads):
            return image.reshape(self.group, channels // self.group, -1)
        image = np.pad(image, ((0, 0), (top, bottom), (left, right)))
        windows = np.lib.stride_tricks.sliding_window_view(image, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
        rows, cols = windows.shape[1:3]
        windows = windows.reshape(self.group, channels // self.group, rows, cols, kh, kw)
        return windows.transpose(0, 1, 4, 5, 2, 3).reshape(self.group, -1, rows * cols)


class PatchMoments:
    """Running moments of a layer's input patches, image by image: their mean and, for AdaRound, their covariance."""

    def __init__(self, second_order: bool) -> None:
        self.count = 0
        self.second_order = second_order
        self._sum = self._outer = np.zeros(0)

    def add(self, patches: np.ndarray) -> None:
        """patches: [groups, d, positions] of one image."""
        if not self.count:
            groups, d, _ = patches.shape
            self._sum = np.zeros((groups, d))
            self._outer = np.zeros((groups, d, d) if self.second_order else 0)
        self._sum += patches.sum(axis=2)
        if self.second_order:
            self._outer += patches @ patches.transpose(0, 2, 1)
        self.count += patches.shape[2]

    @property
    def mean(self) -> np.ndarray:
        return self._sum / self.count

    def covariance(self) -> np.ndarray:
        if not self.second_order:
            raise ValueError("these moments were collected for bias correction only")
        return self._outer / self.count - self.mean[:, :, None] * self.mean[:, None, :]


@dataclass
class IntegerGrid:
    """Per output channel: real weight = scale · (integer - zero_point), integer in [qmin, qmax]."""

    scale: np.ndarray  # [groups, outputs per group, 1]
    zero_point: np.ndarray  # same shape
    qmin: float
    qmax: float

    def nearest(self, weights: np.ndarray) -> np.ndarray:
        return np.clip(np.round(weights / self.scale) + self.zero_point, self.qmin, self.qmax)

    def real(self, integers: np.ndarray) -> np.ndarray:
        return self.scale * (integers - self.zero_point)


def reconstruction_error(weights: np.ndarray, rounded: np.ndarray, quantized_input: PatchMoments) -> float:
    """E||(W - Ŵ)·x̂||² summed over the layer's outputs, means removed (the bias correction takes them)."""
    delta = weights - rounded
    return float(np.einsum("god,gde,goe->", delta, quantized_input.covariance(), delta))


def adaround(
    weights: np.ndarray, grid: IntegerGrid, quantized_input: PatchMoments, iterations: int = ITERATIONS
) -> np.ndarray:
    """The integers for `weights` ([groups, outputs per group, d]) that reproduce the float layer best.

    Returns the nearest-rounded integers instead when the optimised rounding is not better on the moments (it
    never makes a layer worse on the calibration data).
    """
    qq = quantized_input.covariance()
    scaled = weights / grid.scale
    floor = np.floor(scaled)
    rest = np.clip(scaled - floor, 1e-4, 1 - 1e-4)
    v = -np.log((ZETA - GAMMA) / (rest - GAMMA) - 1)  # h(v) = rest: start from the float weights
    # The error's size differs by orders of magnitude between layers; measure it in units of what random rounding
    # would cost, so that one REG_WEIGHT suits every layer.
    unit = float(np.sum(grid.scale**2 / 12 * np.trace(qq, axis1=1, axis2=2)[:, None, None])) or 1.0
    adam = _Adam(v.shape)
    warm_up = int(WARM_UP * iterations)
    for step in range(1, iterations + 1):
        sig = 1 / (1 + np.exp(-v))
        stretched = sig * (ZETA - GAMMA) + GAMMA
        h = np.clip(stretched, 0, 1)
        unclipped = floor + grid.zero_point + h
        integers = np.clip(unclipped, grid.qmin, grid.qmax)
        rounded = grid.real(integers)
        grad_w = 2 * ((rounded - weights) @ qq) / unit
        dh_dv = sig * (1 - sig) * (ZETA - GAMMA) * ((stretched > 0) & (stretched < 1))
        in_range = (unclipped >= grid.qmin) & (unclipped <= grid.qmax)
        grad = grad_w * grid.scale * in_range * dh_dv
        if step > warm_up:
            beta = BETA[0] + (BETA[1] - BETA[0]) * (step - warm_up) / max(iterations - warm_up, 1)
            u = 2 * h - 1
            grad = grad - REG_WEIGHT * 2 * beta * np.abs(u) ** (beta - 1) * np.sign(u) * dh_dv
        v -= adam.step(grad)
    adaptive = np.clip(floor + grid.zero_point + (v >= 0), grid.qmin, grid.qmax)
    nearest = grid.nearest(weights)
    if reconstruction_error(weights, grid.real(adaptive), quantized_input) < reconstruction_error(
        weights, grid.real(nearest), quantized_input
    ):
        return adaptive
    return nearest


def corrected_bias(
    weights: np.ndarray, rounded: np.ndarray, bias: np.ndarray, float_mean: np.ndarray, quantized_mean: np.ndarray
) -> np.ndarray:
    """The float bias plus the mean output error of the quantized layer, so that the error averages to zero.
    `float_mean`, `quantized_mean`: the mean input patch of the float and of the quantized model, [groups, d]."""
    shift = np.einsum("god,gd->go", weights, float_mean) - np.einsum("god,gd->go", rounded, quantized_mean)
    return bias + shift.reshape(-1)


class _Adam:
    def __init__(self, shape: tuple[int, ...], beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.m, self.v, self.t = np.zeros(shape), np.zeros(shape), 0
        self.beta1, self.beta2 = beta1, beta2

    def step(self, grad: np.ndarray) -> np.ndarray:
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        m_hat = self.m / (1 - self.beta1**self.t)
        v_hat = self.v / (1 - self.beta2**self.t)
        return LEARNING_RATE * m_hat / (np.sqrt(v_hat) + 1e-8)


@dataclass
class _QuantizedConv:
    """A QDQ Conv and its float twin: where its integers, scales and biases live in the two graphs."""

    node: Any
    float_node: Any
    geometry: ConvGeometry
    weight_init: Any  # the integer weights
    grid: IntegerGrid
    float_weights: np.ndarray  # [groups, outputs per group, d]
    bias_init: Any | None  # the int32 bias (or a float bias the quantizer left float)
    bias_scale: np.ndarray | None  # None: the bias is float
    float_bias: np.ndarray | None


@dataclass
class RoundingReport:
    layers: int
    skipped: list[str]  # Convs whose geometry this module does not model: left as the quantizer made them
    rerounded: int  # layers whose AdaRound integers differ from the quantizer's


def refine_rounding(
    float_model: Any,
    quantized: Any,
    tensors: list[np.ndarray],
    input_name: str,
    weight_range: tuple[int, int],
    session_factory: Callable[[bytes], Any],
    adaptive: bool,
    iterations: int = ITERATIONS,
    progress: bool = True,
) -> RoundingReport:
    """Bias correction, after AdaRound when `adaptive`, on `quantized` (a QDQ ModelProto, changed in place) against
    `float_model`, the model it was quantized from (node names intact). `weight_range`: the integers a weight may
    take. `session_factory`: serialized model -> an ONNX Runtime session."""
    from onnx import numpy_helper

    convs, skipped = _quantized_convs(float_model, quantized, weight_range)
    float_means = _float_input_means(convs, float_model, tensors, input_name, session_factory)
    rerounded = 0
    label = "AdaRound" if adaptive else "bias correction"
    with tqdm(convs, desc=label, unit="layer", disable=not progress, leave=False) as bar:
        for conv, float_mean in zip(bar, float_means, strict=True):
            moments = _quantized_input_moments(conv, quantized, tensors, input_name, session_factory, adaptive)
            quantizers = numpy_helper.to_array(conv.weight_init).astype(np.float64).reshape(conv.float_weights.shape)
            integers = adaround(conv.float_weights, conv.grid, moments, iterations) if adaptive else quantizers
            if not np.array_equal(integers, quantizers):
                rerounded += 1
                _write_weights(conv, integers)
            if conv.bias_init is not None and conv.float_bias is not None:
                rounded = conv.grid.real(integers)
                bias = corrected_bias(conv.float_weights, rounded, conv.float_bias, float_mean, moments.mean)
                _write_bias(conv, bias)
    return RoundingReport(layers=len(convs), skipped=skipped, rerounded=rerounded)


def _quantized_convs(
    float_model: Any, quantized: Any, weight_range: tuple[int, int]
) -> tuple[list[_QuantizedConv], list[str]]:
    from onnx import numpy_helper

    float_nodes = {n.name: n for n in float_model.graph.node if n.op_type == "Conv"}
    float_inits = {i.name: i for i in float_model.graph.initializer}
    inits = {i.name: i for i in quantized.graph.initializer}
    producer = {out: n for n in quantized.graph.node for out in n.output}
    found: list[_QuantizedConv] = []
    skipped: list[str] = []
    for node in quantized.graph.node:
        if node.op_type != "Conv":
            continue
        weight_dq = producer.get(node.input[1])
        if weight_dq is None or weight_dq.op_type != "DequantizeLinear" or weight_dq.input[0] not in inits:
            continue  # left float by the recipe
        twin = float_nodes.get(node.name)
        geometry = ConvGeometry.of(node)
        if twin is None or geometry is None or twin.input[1] not in float_inits:
            skipped.append(node.name)
            continue
        weights = numpy_helper.to_array(float_inits[twin.input[1]]).astype(np.float64)
        outputs = weights.shape[0]
        per_group = outputs // geometry.group
        scale = _per_channel(inits, weight_dq, 1, outputs).reshape(geometry.group, per_group, 1)
        zero_point = _per_channel(inits, weight_dq, 2, outputs).reshape(geometry.group, per_group, 1)
        bias_init, bias_scale, float_bias = _bias_of(node, twin, inits, float_inits, producer, outputs)
        found.append(
            _QuantizedConv(
                node=node,
                float_node=twin,
                geometry=geometry,
                weight_init=inits[weight_dq.input[0]],
                grid=IntegerGrid(scale, zero_point, float(weight_range[0]), float(weight_range[1])),
                float_weights=weights.reshape(geometry.group, per_group, -1),
                bias_init=bias_init,
                bias_scale=bias_scale,
                float_bias=float_bias,
            )
        )
    return found, skipped


def _per_channel(inits: dict[str, Any], dq: Any, index: int, outputs: int) -> np.ndarray:
    """A DequantizeLinear's scale (index 1) or zero point (index 2) for every output channel (default zero point 0)."""
    from onnx import numpy_helper

    if len(dq.input) <= index or not dq.input[index]:
        return np.zeros(outputs)
    value = numpy_helper.to_array(inits[dq.input[index]]).astype(np.float64).reshape(-1)
    return np.broadcast_to(value, (outputs,)).copy()


def _bias_of(
    node: Any, twin: Any, inits: dict[str, Any], float_inits: dict[str, Any], producer: dict[str, Any], outputs: int
) -> tuple[Any | None, np.ndarray | None, np.ndarray | None]:
    from onnx import numpy_helper

    if len(node.input) < 3 or len(twin.input) < 3 or twin.input[2] not in float_inits:
        return None, None, None
    float_bias = numpy_helper.to_array(float_inits[twin.input[2]]).astype(np.float64)
    if node.input[2] in inits:
        return inits[node.input[2]], None, float_bias
    dq = producer.get(node.input[2])
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
        return None, None, None
    return inits[dq.input[0]], _per_channel(inits, dq, 1, outputs), float_bias


def _float_input_means(
    convs: list[_QuantizedConv],
    float_model: Any,
    tensors: list[np.ndarray],
    input_name: str,
    session_factory: Callable[[bytes], Any],
) -> list[np.ndarray]:
    """Each layer's mean input patch in the float model, all in one pass: the float model does not change."""
    names = sorted({conv.float_node.input[0] for conv in convs} - {input_name})
    session = session_factory(with_outputs(float_model, names)) if names else None
    moments = [PatchMoments(second_order=False) for _ in convs]
    for tensor in tensors:
        values = {input_name: tensor}
        if session is not None:
            values.update(zip(names, session.run(None, {input_name: tensor}), strict=True))
        for conv, moment in zip(convs, moments, strict=True):
            moment.add(conv.geometry.patches(values[conv.float_node.input[0]]))
    return [moment.mean for moment in moments]


def _quantized_input_moments(
    conv: _QuantizedConv,
    quantized: Any,
    tensors: Iterable[np.ndarray],
    input_name: str,
    session_factory: Callable[[bytes], Any],
    second_order: bool,
) -> PatchMoments:
    """The layer's input in the quantized model as it is now, with the layers before it already refined."""
    name = conv.node.input[0]
    session = None if name == input_name else session_factory(with_outputs(quantized, [name]))
    moments = PatchMoments(second_order)
    for tensor in tensors:
        value = tensor if session is None else session.run(None, {input_name: tensor})[0]
        moments.add(conv.geometry.patches(value))
    return moments


def _write_weights(conv: _QuantizedConv, integers: np.ndarray) -> None:
    from onnx import numpy_helper

    old = numpy_helper.to_array(conv.weight_init)
    new = integers.reshape(old.shape).astype(old.dtype)
    conv.weight_init.CopyFrom(numpy_helper.from_array(new, conv.weight_init.name))


def _write_bias(conv: _QuantizedConv, bias: np.ndarray) -> None:
    from onnx import numpy_helper

    assert conv.bias_init is not None
    old = numpy_helper.to_array(conv.bias_init)
    if conv.bias_scale is None:
        new = bias.astype(old.dtype)
    else:
        limits = np.iinfo(old.dtype)
        new = np.clip(np.round(bias / conv.bias_scale), limits.min, limits.max).astype(old.dtype)
    conv.bias_init.CopyFrom(numpy_helper.from_array(new.reshape(old.shape), conv.bias_init.name))
