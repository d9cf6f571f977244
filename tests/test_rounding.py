"""Weight rounding beyond nearest (edged/factory/rounding.py) and mixed precision (outliers.py).

The maths is checked against ONNX Runtime itself (patches x weights == its Conv) and against sampled data (the
moments, the corrected bias); the end-to-end checks quantize the real FastestDet and compare it with its float
parent on images it was neither calibrated nor evaluated on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edged.factory.calibration import CalibrationSet  # noqa: E402
from edged.factory.int8 import Int8Recipe, prepare_for_quantization, quantize_int8, weight_range  # noqa: E402
from edged.factory.outliers import InputNoise, conv_input_noise, outliers  # noqa: E402
from edged.factory.rounding import (  # noqa: E402
    ConvGeometry,
    IntegerGrid,
    PatchMoments,
    adaround,
    corrected_bias,
    reconstruction_error,
)
from edged.sources import read_image  # noqa: E402
from edged.vision.preprocess import Preprocessor  # noqa: E402


def conv_model(channels: int, outputs: int, kernel: int, stride: int, pad: int, group: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((outputs, channels // group, kernel, kernel)).astype(np.float32)
    bias = rng.standard_normal(outputs).astype(np.float32)
    node = helper.make_node(
        "Conv", ["x", "w", "b"], ["y"], kernel_shape=[kernel, kernel], strides=[stride, stride],
        pads=[pad] * 4, group=group, name="conv",
    )  # fmt: skip
    graph = helper.make_graph(
        [node],
        "one-conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 11, 13])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), weight, bias


@pytest.mark.parametrize(
    "channels, outputs, kernel, stride, pad, group",
    [(3, 8, 3, 2, 1, 1), (6, 6, 5, 1, 2, 6), (8, 4, 1, 1, 0, 1), (4, 6, 3, 1, 1, 2)],
    ids=["3x3-stride-2", "depthwise-5x5", "pointwise", "grouped"],
)
def test_patches_times_weights_is_onnx_runtimes_conv(channels, outputs, kernel, stride, pad, group):
    model, weight, bias = conv_model(channels, outputs, kernel, stride, pad, group)
    x = np.random.default_rng(1).standard_normal((1, channels, 11, 13)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[
        0
    ]

    geometry = ConvGeometry.of(model.graph.node[0])
    assert geometry is not None
    patches = geometry.patches(x)  # [groups, d, positions]
    grouped = weight.reshape(group, outputs // group, -1).astype(np.float64)
    ours = (grouped @ patches).reshape(outputs, -1) + bias[:, None]
    np.testing.assert_allclose(ours, expected.reshape(outputs, -1), rtol=1e-4, atol=1e-4)


def test_dilated_convolutions_are_not_modelled():
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], dilations=[2, 2])
    assert ConvGeometry.of(node) is None


def sampled_layer(seed: int = 0, groups: int = 2, outputs: int = 6, d: int = 12, samples: int = 4000):
    """A layer with correlated inputs (as real activations are): weights, the float and quantized input patches."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((groups, d, d))
    x = mixing @ rng.standard_normal((groups, d, samples)) + rng.standard_normal((groups, d, 1))
    x_hat = np.round(x * 8) / 8  # the input as an earlier quantized layer would deliver it
    weights = rng.standard_normal((groups, outputs, d))
    return weights, x, x_hat


def moments_of(patches: np.ndarray, second_order: bool = True, chunks: int = 4) -> PatchMoments:
    moments = PatchMoments(second_order)
    for part in np.array_split(patches, chunks, axis=2):
        moments.add(part)  # image by image, as the build accumulates them
    return moments


def test_moments_accumulated_in_parts_are_the_samples_means_and_covariance():
    _, x, x_hat = sampled_layer()
    np.testing.assert_allclose(moments_of(x, second_order=False).mean, x.mean(axis=2))
    moments = moments_of(x_hat)
    np.testing.assert_allclose(moments.mean, x_hat.mean(axis=2))
    for group in range(x.shape[0]):
        np.testing.assert_allclose(moments.covariance()[group], np.cov(x_hat[group], bias=True), atol=1e-9)
    with pytest.raises(ValueError, match="bias correction only"):
        moments_of(x_hat, second_order=False).covariance()


def grid_for(weights: np.ndarray, qmin: int = -127, qmax: int = 127) -> IntegerGrid:
    scale = np.abs(weights).max(axis=2, keepdims=True) / 8  # a coarse grid: rounding matters
    return IntegerGrid(scale, np.zeros_like(scale), float(qmin), float(qmax))


def test_adaround_reproduces_the_layer_better_than_nearest_rounding_and_only_rounds_up_or_down():
    weights, _, x_hat = sampled_layer()
    moments = moments_of(x_hat)
    grid = grid_for(weights)
    nearest = grid.nearest(weights)
    adaptive = adaround(weights, grid, moments, iterations=300)

    assert reconstruction_error(weights, grid.real(adaptive), moments) < 0.8 * reconstruction_error(
        weights, grid.real(nearest), moments
    )
    scaled = weights / grid.scale
    assert np.all((adaptive == np.floor(scaled)) | (adaptive == np.ceil(scaled)))
    assert not np.array_equal(adaptive, nearest)


def test_adaround_respects_the_integer_range():
    weights, _, x_hat = sampled_layer(seed=3)
    grid = grid_for(weights, qmin=-6, qmax=6)  # the largest weights sit at 8: they must clip to 6
    integers = adaround(weights, grid, moments_of(x_hat), iterations=100)
    assert integers.min() >= -6 and integers.max() <= 6


def test_corrected_bias_leaves_no_mean_error_on_the_calibration_data():
    weights, x, x_hat = sampled_layer(seed=5)
    grid = grid_for(weights)
    rounded = grid.real(grid.nearest(weights))
    bias = np.arange(12, dtype=np.float64)
    float_mean, quantized_mean = moments_of(x, False).mean, moments_of(x_hat, False).mean
    corrected = corrected_bias(weights, rounded, bias, float_mean, quantized_mean)

    float_out = weights @ x + bias.reshape(2, 6, 1)
    plain_error = (rounded @ x_hat + bias.reshape(2, 6, 1) - float_out).mean(axis=2)
    corrected_error = (rounded @ x_hat + corrected.reshape(2, 6, 1) - float_out).mean(axis=2)
    assert np.abs(plain_error).max() > 1e-3
    np.testing.assert_allclose(corrected_error, 0, atol=1e-9)


def test_weight_ranges_are_onnx_runtimes():
    assert weight_range(Int8Recipe(calibration="minmax", weights="s8")) == (-127, 127)
    assert weight_range(Int8Recipe(calibration="minmax", weights="s8-7bit")) == (-64, 64)
    assert weight_range(Int8Recipe(calibration="minmax", weights="u8")) == (0, 255)


# --- mixed precision ---------------------------------------------------------------------------------------------


def test_outliers_are_the_inputs_far_below_the_median():
    noise = [InputNoise(f"conv{i}", f"t{i}", snr) for i, snr in enumerate([38, 41, 18.1, 36, 25.3, 37, 40, 28.3])]
    assert [n.conv for n in outliers(noise)] == ["conv2", "conv4"]  # median 36.5: 28.3 is not 10 dB below
    assert outliers([]) == []


def chain_model(loud_channel_gain: float):
    """x -> conv -> relu -> conv -> conv -> conv: one output channel of the second conv `loud_channel_gain` x louder
    than the rest, so that the third conv's input is badly served by one 8-bit scale."""
    rng = np.random.default_rng(7)
    nodes, inits = [], []
    previous = "x"
    for index in range(4):
        weight = rng.standard_normal((8, 8 if index else 3, 3, 3)).astype(np.float32) / 6
        if index == 1:
            weight[0] *= loud_channel_gain
        inits.append(numpy_helper.from_array(weight, f"w{index}"))
        nodes.append(
            helper.make_node("Conv", [previous, f"w{index}"], [f"c{index}"], pads=[1] * 4, name=f"Conv_{index}")
        )
        previous = f"c{index}"
        if index == 0:
            nodes.append(helper.make_node("Relu", [previous], ["r0"], name="Relu_0"))
            previous = "r0"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, 8, 16, 16])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_conv_behind_a_loud_channel_is_kept_float(tmp_path: Path):
    onnx.save(chain_model(loud_channel_gain=300.0), tmp_path / "chain.onnx")
    prepared, input_name = prepare_for_quantization(tmp_path / "chain.onnx", tmp_path)
    tensors = [np.random.default_rng(i).random((1, 3, 16, 16), dtype=np.float32) for i in range(8)]
    recipe = Int8Recipe(calibration="minmax", weights="s8-7bit", float_outliers=True)
    quantized = quantize_int8(prepared, tmp_path / "int8.onnx", recipe, tensors, input_name, tmp_path, False)

    assert len(quantized.notes) == 1 and "Conv_2" in quantized.notes[0] and "Conv_1" not in quantized.notes[0]
    convs = [n for n in onnx.load(tmp_path / "int8.onnx").graph.node if n.op_type == "Conv"]
    producers = {o: n.op_type for n in onnx.load(tmp_path / "int8.onnx").graph.node for o in n.output}
    float_weights = [n for n in convs if producers.get(n.input[1]) != "DequantizeLinear"]
    assert len(float_weights) == 1  # exactly one conv left float: the one whose input has the loud channel

    onnx.save(chain_model(loud_channel_gain=1.0), tmp_path / "even.onnx")
    (tmp_path / "even").mkdir()
    even, _ = prepare_for_quantization(tmp_path / "even.onnx", tmp_path / "even")
    evenly = quantize_int8(even, tmp_path / "even-int8.onnx", recipe, tensors, input_name, tmp_path / "even", False)
    assert evenly.notes == []  # no loud channel, no outlier: every conv quantized
    assert conv_input_noise(onnx.load(even), onnx.load(even), tensors, input_name, _cpu_session) == []  # float


def _cpu_session(model_bytes: bytes):
    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


# --- the real FastestDet -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fastestdet_inputs(coco_zoo, shared: Path, tmp_path_factory):
    """The prepared float model, 8 calibration tensors, and 12 held-out street photos (neither calibration nor eval)."""
    parent = coco_zoo.variant("fastestdet-352")
    work = tmp_path_factory.mktemp("fastestdet-rounding")
    prepared, input_name = prepare_for_quantization(coco_zoo.file_of(parent), work)
    calibration = CalibrationSet(shared / "data" / "coco128-train" / "images", 8, seed=0).tensors(parent.input, False)
    photos = sorted((shared / "data" / "distill" / "street-photos").rglob("*.jpg"))[:12]
    preprocess = Preprocessor(parent.input)
    held_out = [preprocess(read_image(path))[0] for path in photos]
    assert len(held_out) == 12
    return work, prepared, input_name, calibration, held_out


def output_error(model: Path, reference: Path, inputs: list[np.ndarray], input_name: str) -> tuple[float, float]:
    """Mean squared and mean signed difference of the raw outputs from the reference model's."""
    ours, theirs = _cpu_session(str(model)), _cpu_session(str(reference))
    diffs = [ours.run(None, {input_name: x})[0] - theirs.run(None, {input_name: x})[0] for x in inputs]
    return float(np.mean([np.mean(d**2) for d in diffs])), float(np.mean([np.mean(d) for d in diffs]))


def test_bias_correction_brings_fastestdet_int8_closer_to_its_float_parent(fastestdet_inputs):
    work, prepared, input_name, calibration, held_out = fastestdet_inputs
    plain, corrected = work / "nearest.onnx", work / "corrected.onnx"
    recipe = Int8Recipe(calibration="minmax", weights="s8-7bit", float_first_conv=True)
    quantize_int8(prepared, plain, recipe, calibration, input_name, work, False)
    result = quantize_int8(
        prepared, corrected, recipe.model_copy(update={"rounding": "bias-correction"}), calibration, input_name,
        work, False,
    )  # fmt: skip

    assert any("biases of" in note for note in result.notes)
    plain_mse, _ = output_error(plain, prepared, held_out, input_name)
    corrected_mse, _ = output_error(corrected, prepared, held_out, input_name)
    assert corrected_mse < plain_mse
    assert corrected.stat().st_size == pytest.approx(plain.stat().st_size, rel=0.02)  # same graph, same size
