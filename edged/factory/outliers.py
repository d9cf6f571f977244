"""Mixed precision: the convolutions whose input one 8-bit scale serves badly stay float.

Why: ONNX Runtime quantizes an activation with one scale for the whole tensor. Where a few values are far larger
than the rest (a neck that joins branches of different ranges, a depthwise output with one loud channel), the
step that covers them is coarse for everything else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edged.factory.onnx_graph import with_outputs

MARGIN_DB = 10.0  # a conv input this far below the model's median SNR is an outlier
U8_RANGE = (0, 255)  # the recipes' activations are U8


@dataclass(frozen=True)
class InputNoise:
    conv: str
    tensor: str
    snr_db: float


def conv_input_noise(
    float_model: Any,
    quantized: Any,
    tensors: list[np.ndarray],
    input_name: str,
    session_factory: Callable[[bytes], Any],
) -> list[InputNoise]:
    """Per quantized conv input of `quantized` (a QDQ ModelProto, node names intact): the SNR of that tensor of
    the float model, quantized alone with the scale and zero point the quantizer calibrated for it, per channel."""
    ranges = _activation_quantizers(quantized)
    names = sorted({tensor for tensor, _, _ in ranges.values()} - {input_name})
    if not names:
        return []
    session = session_factory(with_outputs(float_model, names))
    quantizer_of = {tensor: (scale, zero_point) for tensor, scale, zero_point in ranges.values()}
    signal: dict[str, np.ndarray] = {}
    noise: dict[str, np.ndarray] = {}
    for image in tensors:
        for name, value in zip(names, session.run(None, {input_name: image}), strict=True):
            error = value - _fake_quantize(value, *quantizer_of[name])
            axes = tuple(i for i in range(value.ndim) if i != 1)  # per channel
            signal[name] = signal.get(name, 0) + np.sum(np.square(value, dtype=np.float64), axis=axes)
            noise[name] = noise.get(name, 0) + np.sum(np.square(error, dtype=np.float64), axis=axes)
    snr = {name: _channel_snr_db(signal[name], noise[name]) for name in names}
    return [InputNoise(conv, tensor, snr[tensor]) for conv, (tensor, _, _) in ranges.items() if tensor in snr]


def _channel_snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """SNR from the channels' mean noise-to-signal ratio: one loud channel must not hide the quiet ones it drowns
    (a whole-tensor SNR would be the loud channel's own). Silent channels (dead ReLUs) carry nothing to lose."""
    alive = signal > 0
    if not alive.any():
        return float("inf")
    return float(-10 * np.log10(max(np.mean(noise[alive] / signal[alive]), 1e-30)))


def outliers(noise: list[InputNoise], margin_db: float = MARGIN_DB) -> list[InputNoise]:
    """The conv inputs more than `margin_db` below the median: those an 8-bit per-tensor scale serves worst."""
    if not noise:
        return []
    median = float(np.median([n.snr_db for n in noise]))
    return [n for n in noise if n.snr_db < median - margin_db]


def _activation_quantizers(model: Any) -> dict[str, tuple[str, float, float]]:
    """Conv node name -> (its float input tensor, scale, zero point), for Convs whose input passes through a
    QuantizeLinear -> DequantizeLinear pair with a per-tensor scale."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producer = {out: n for n in model.graph.node for out in n.output}
    found: dict[str, tuple[str, float, float]] = {}
    for node in model.graph.node:
        dequantize = producer.get(node.input[0]) if node.op_type == "Conv" else None
        quantize = producer.get(dequantize.input[0]) if dequantize is not None else None
        if dequantize is None or dequantize.op_type != "DequantizeLinear" or quantize is None:
            continue
        if quantize.op_type != "QuantizeLinear" or quantize.input[1] not in inits:
            continue
        scale = numpy_helper.to_array(inits[quantize.input[1]])
        zero_point = numpy_helper.to_array(inits[quantize.input[2]]) if len(quantize.input) > 2 else np.zeros(1)
        if scale.size != 1:
            continue
        found[node.name] = (quantize.input[0], float(scale.reshape(-1)[0]), float(zero_point.reshape(-1)[0]))
    return found


def _fake_quantize(value: np.ndarray, scale: float, zero_point: float) -> np.ndarray:
    integers = np.clip(np.round(value / scale) + zero_point, *U8_RANGE)
    return (integers - zero_point) * scale
