"""Static int8 quantization (ONNX Runtime QDQ, per-channel weights) of an ONNX detector.

Only static quantization is offered: `quantize_dynamic` re-computes activation ranges on every frame and leaves
convolutions in float, which made these conv nets 2-10x slower and wrecked YOLOX (mAP 0.0007).

Weights: U8 activations with S8 weights is ONNX Runtime's fast path, but on x86 CPUs without VNNI its kernels
(vpmaddubsw) saturate 16-bit sums of u8 x s8 products, which cost NanoDet 0.04 mAP here. There, either weights
keep 7 bits (`s8-7bit`, ORT's reduce_range) or they are unsigned (`u8`); the guard measures which is better.

Which ops: by default convolutions, with a ReLU or Clip right after one folded into its output's range (ONNX
Runtime's own QDQRemovableActivation): one rounding over [0, max]. Convolutions alone (`conv`) round the whole
output, negatives included, then round again after the ReLU, which spends half the grid on values the ReLU drops:
on FastestDet (47 ReLUs after convs) folding them brings the int8 model's detections much closer to the float
model's at every refinement (bench/INT8_RECIPES.md), and it runs faster, a node fewer per ReLU (README). Nets
whose activations are not ReLU/Clip (NanoDet's leaky ReLU, YOLOX's SiLU) quantize the same either way.

A recipe may also keep float the convolutions whose input one 8-bit scale serves badly (outliers.py), refine
the quantizer's weights layer by layer: bias correction, or AdaRound (rounding.py), and then fine-tune weights and
activation ranges with the quantized model in the loop, distilled from the float parent (qat.py, needs torch).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import logging
import platform
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from onnxruntime.quantization import CalibrationDataReader
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from edged.errors import ModelError
from edged.factory.onnx_graph import compact, load_onnx, onnx_module, strip_initializer_inputs, upgrade_opset
from edged.factory.outliers import InputNoise, conv_input_noise, outliers
from edged.factory.rounding import RoundingReport, refine_rounding

log = logging.getLogger(__name__)

Calibration = Literal["minmax", "entropy", "percentile"]
OpSet = Literal["conv-relu", "conv", "all"]
OP_TYPES: dict[OpSet, list[str] | None] = {"conv-relu": ["Conv", "Relu", "Clip"], "conv": ["Conv"], "all": None}
OP_NAMES: dict[OpSet, str] = {"conv-relu": "Conv (ReLU folded)", "conv": "Conv only", "all": "all ops"}
WeightType = Literal["s8", "s8-7bit", "u8"]
Rounding = Literal["nearest", "bias-correction", "adaround"]
Refinement = Literal["bias-correction", "adaround", "finetune"]  # what the guard may add to its best recipe
ROUNDING_NAMES = {
    "nearest": "nearest rounding",
    "bias-correction": "bias correction",
    "adaround": "AdaRound + bias correction",
}
PERCENTILE = 99.999  # of |activation|: clips the rare outliers that would otherwise set the whole range


class Int8Recipe(BaseModel):
    """One way to quantize: the guard tries several and keeps the most accurate."""

    model_config = ConfigDict(frozen=True)

    calibration: Calibration
    ops: OpSet = "conv-relu"
    weights: WeightType = "s8"
    float_first_conv: bool = False  # the layer that sees raw pixels: its error flows through every later layer
    float_outliers: bool = False  # convs whose input one 8-bit scale serves badly stay float (see outliers.py)
    rounding: Rounding = "nearest"  # or biases corrected, or weights re-rounded too (see rounding.py)
    finetune: bool = False  # then quantization-aware fine-tuning (see qat.py)

    def describe(self) -> str:
        parts = [
            f"{self.calibration} calibration",
            OP_NAMES[self.ops],
            {"s8": "U8/S8", "s8-7bit": "U8/S8 7-bit weights", "u8": "U8/U8"}[self.weights],
            "per-channel",
        ]
        if self.float_first_conv:
            parts.append("first conv float")
        if self.float_outliers:
            parts.append("outlier-input convs float")
        if self.rounding != "nearest":
            parts.append(ROUNDING_NAMES[self.rounding])
        if self.finetune:
            parts.append("fine-tuned (QAT)")
        return "QDQ " + ", ".join(parts)

    def refined(self, refinement: Refinement) -> Int8Recipe:
        """This recipe with one more refinement; fine-tuning starts from bias-corrected weights."""
        if refinement == "finetune":
            rounding = "bias-correction" if self.rounding == "nearest" else self.rounding
            return self.model_copy(update={"rounding": rounding, "finetune": True})
        return self.model_copy(update={"rounding": refinement})

    def flags(self) -> str:
        """The `edged zoo build` options that select exactly this recipe."""
        first = "yes" if self.float_first_conv else "no"
        spread = "yes" if self.float_outliers else "no"
        return (
            f"--calibration {self.calibration} --ops {self.ops} --weights {self.weights} --float-first-conv {first} "
            f"--float-outliers {spread} --rounding {self.rounding} --finetune {'yes' if self.finetune else 'no'}"
        )


def host_saturates_u8s8() -> bool:
    """True on x86 CPUs without VNNI, where full-range U8/S8 kernels saturate (see the module docstring)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # unknown x86: assume the common case
    return not any(flag in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def prepare_for_quantization(
    parent: Path, work_dir: Path, input_shape: tuple[int, ...] | None = None
) -> tuple[Path, str]:
    """Parent model -> a float model ready for the quantizer (opset >= 13, no weights as inputs, shapes inferred).
    `input_shape` pins an input whose size the file leaves free (the int8 model is for the variant's size).

    Returns its path and its one input's name.
    """
    onnx = onnx_module()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = load_onnx(parent)
    stripped = strip_initializer_inputs(model)
    if stripped:
        log.info("%s: %d initializers were also graph inputs; stripped", parent.name, stripped)
    if len(model.graph.input) != 1:
        names = ", ".join(i.name for i in model.graph.input)
        raise ModelError(f"{parent}: int8 calibration needs one image input, the model has {names}")
    model = upgrade_opset(model, parent)
    if input_shape is not None:
        for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, input_shape):
            if not dim.HasField("dim_value"):
                dim.Clear()
                dim.dim_value = value
    for index, node in enumerate(model.graph.node):
        node.name = node.name or f"{node.op_type}_{index}"  # the quantizer selects and excludes nodes by name
    upgraded = work_dir / "float-opset.onnx"
    prepared = work_dir / "float-prepared.onnx"
    onnx.save(model, str(upgraded))
    try:
        quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=not _has_sympy())
    except Exception as exc:
        raise ModelError(f"{parent}: ONNX Runtime's pre-processing for quantization failed: {exc}") from None
    return prepared, model.graph.input[0].name


class Quantized(BaseModel):
    """What quantizing one recipe produced besides the file."""

    warnings: list[str] = Field(default_factory=list, description="the quantizer's (e.g. biases clipped to int32)")
    notes: list[str] = Field(default_factory=list, description="what the recipe's refinements found and did")


def quantize_int8(
    prepared: Path,
    output: Path,
    recipe: Int8Recipe,
    tensors: list[np.ndarray],
    input_name: str,
    cache_dir: Path,
    progress: bool = True,
    threads: int = 2,
    training: list[np.ndarray] | None = None,
    seed: int = 0,
) -> Quantized:
    """Quantize `prepared` (from prepare_for_quantization) with `recipe`, calibrated on `tensors`; a fine-tuning
    recipe trains on `training` (default: `tensors`), in an order drawn from `seed`.

    The quantizer's warnings, which it would otherwise print on stdout and the root logger in the middle of our own
    output, are returned with the notes of the recipe's refinements (convs kept float, layers re-rounded).
    """
    onnx = onnx_module()
    float_model = onnx.load(str(prepared))
    sessions = _session_factory(threads)
    excluded = first_convs(prepared) if recipe.float_first_conv else []
    if recipe.ops == "all":
        excluded += decoding_nodes(prepared)
    result = Quantized()
    model = _quantize_static(prepared, output, recipe, tensors, input_name, cache_dir, excluded, progress, result)
    if recipe.float_outliers:
        noise = conv_input_noise(float_model, model, tensors, input_name, sessions)
        if spread := outliers(noise):
            result.notes.append(_outliers_note(spread, noise))
            excluded += [n.conv for n in spread]
            model = _quantize_static(
                prepared, output, recipe, tensors, input_name, cache_dir, excluded, progress, result
            )
    if recipe.rounding != "nearest":
        adaptive = recipe.rounding == "adaround"
        report = refine_rounding(
            float_model, model, tensors, input_name, weight_range(recipe), sessions, adaptive, progress=progress
        )
        result.notes += _rounding_notes(report, adaptive)
    if recipe.finetune:
        result.notes.append(
            _finetune(float_model, model, training or tensors, input_name, recipe, sessions, progress, seed)
        )
    compact(model)
    onnx.save(model, str(output))
    return result


def _finetune(
    float_model: Any,
    model: Any,
    training: list[np.ndarray],
    input_name: str,
    recipe: Int8Recipe,
    sessions: Callable[[bytes], Any],
    progress: bool,
    seed: int,
) -> str:
    from edged.factory.qat import finetune

    teacher = sessions(float_model.SerializeToString())
    report = finetune(teacher, model, training, input_name, weight_range(recipe), seed=seed, progress=progress)
    return (
        f"fine-tuned with the quantizer in the loop ({report.steps} steps on {report.images} images and their "
        f"mirrors; {report.ranges} activation ranges learnt, {report.changed} integer weights moved): distance to the "
        f"float parent's outputs {report.loss_before:.3g} -> {report.loss_after:.3g} on those images"
    )


def _outliers_note(spread: list[InputNoise], noise: list[InputNoise]) -> str:
    median = float(np.median([n.snr_db for n in noise]))
    listed = ", ".join(f"{n.conv} ({n.snr_db:.1f} dB)" for n in spread)
    return f"kept float, input too spread for one 8-bit scale: {listed}; median {median:.1f} dB"


def _rounding_notes(report: RoundingReport, adaptive: bool) -> list[str]:
    done = f"{report.rerounded} of {report.layers} layers re-rounded, " if adaptive else ""
    notes = [f"{done}biases of {report.layers} layers corrected"]
    if report.skipped:
        notes.append(f"left as quantized (geometry not modelled): {', '.join(report.skipped)}")
    return notes


def _quantize_static(
    prepared: Path,
    output: Path,
    recipe: Int8Recipe,
    tensors: list[np.ndarray],
    input_name: str,
    cache_dir: Path,
    excluded: list[str],
    progress: bool,
    result: Quantized,
) -> Any:
    """ONNX Runtime's quantize_static with `recipe`, `excluded` nodes left float; the QDQ ModelProto."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    options: dict[str, Any] = {}
    if "calibration_cache_path" in inspect.signature(quantize_static).parameters:  # ORT >= 1.2x: calibrate once
        digest = _calibration_key(tensors, excluded)
        options["calibration_cache_path"] = cache_dir / f"calibration-{recipe.calibration}-{recipe.ops}-{digest}.json"
    with _quantizer_chatter() as warnings:
        quantize_static(
            str(prepared),
            str(output),
            _Feeds(tensors, input_name, progress),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=OP_TYPES[recipe.ops],
            per_channel=True,
            reduce_range=recipe.weights == "s8-7bit",
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8 if recipe.weights == "u8" else QuantType.QInt8,
            nodes_to_exclude=excluded or None,
            calibrate_method=methods[recipe.calibration],
            extra_options={"CalibPercentile": PERCENTILE},
            **options,
        )
    result.warnings = warnings
    return onnx_module().load(str(output))


def _calibration_key(tensors: list[np.ndarray], excluded: list[str]) -> str:
    """Ranges cached under this key are valid only for these images and these float nodes."""
    digest = hashlib.sha256(",".join(sorted(excluded)).encode())
    for tensor in tensors:
        digest.update(np.ascontiguousarray(tensor).data)
    return digest.hexdigest()[:12]


def weight_range(recipe: Int8Recipe) -> tuple[int, int]:
    """The integers ONNX Runtime's quantizer lets a weight take under `recipe` (int8 weights are symmetric)."""
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

    if recipe.weights == "u8":
        qmin, qmax = get_qmin_qmax_for_qType(TensorProto.UINT8, reduce_range=False, symmetric=False)
    else:
        seven_bit = recipe.weights == "s8-7bit"
        qmin, qmax = get_qmin_qmax_for_qType(TensorProto.INT8, reduce_range=seven_bit, symmetric=True)
    return int(qmin), int(qmax)


def _session_factory(threads: int) -> Callable[[bytes], Any]:
    """Serialized model -> a CPU session, as the engines make them (no spinning: the box is shared)."""
    import onnxruntime as ort

    def session(model_bytes: bytes) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])

    return session


@contextlib.contextmanager
def _quantizer_chatter() -> Iterator[list[str]]:
    """Collect what ONNX Runtime's quantizer logs (on the root logger) and prints, instead of showing it."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                messages.append(record.getMessage())

    root = logging.getLogger()
    handler, saved_handlers, saved_level = Collect(), root.handlers[:], root.level
    root.handlers, root.level = [handler], logging.WARNING
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield messages
    finally:
        root.handlers, root.level = saved_handlers, saved_level


def first_convs(path: Path) -> list[str]:
    """Names of the Conv nodes that see the pixels: reached from the graph input without passing another Conv
    (YOLOX slices and concatenates the image first: its first Conv is behind that Focus block)."""
    model = load_onnx(path)
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: list[str] = []
    frontier, seen = [i.name for i in model.graph.input], set()
    while frontier:
        tensor = frontier.pop()
        for node in consumers.get(tensor, []):
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type == "Conv":
                found.append(node.name)
            else:
                frontier.extend(node.output)
    return found


def decoding_nodes(path: Path) -> list[str]:
    """Names of the nodes after the last convolution on every path to the outputs: a model's in-graph decoding.

    They stay float under `--ops all`: a decoded output holds pixel coordinates and 0..1 scores side by side, and
    one 8-bit scale across both rounds every score to a step of about 1.6 (YOLOX at 416 lost 0.31 of 0.32 mAP50-95
    that way); they are a sliver of the compute."""
    model = load_onnx(path)
    producers = {out: node for node in model.graph.node for out in node.output}
    feeds_conv: set[int] = set()  # nodes with a Conv downstream (or that are one)
    for node in reversed(model.graph.node):  # topological order: consumers come after producers
        if node.op_type == "Conv" or id(node) in feeds_conv:
            feeds_conv.update(id(producers[i]) for i in node.input if i in producers)
            feeds_conv.add(id(node))
    return [node.name for node in model.graph.node if id(node) not in feeds_conv]


class _Feeds(CalibrationDataReader):
    """Pre-processed tensors as ONNX Runtime's calibration reader, with a progress bar."""

    def __init__(self, tensors: list[np.ndarray], input_name: str, progress: bool) -> None:
        self._tensors = tensors
        self._input_name = input_name
        self._progress = progress
        self._iter: Iterator[np.ndarray] | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = iter(
                tqdm(self._tensors, desc="calibrating", unit="img", disable=not self._progress, leave=False)
            )
        tensor = next(self._iter, None)
        return None if tensor is None else {self._input_name: tensor}

    def rewind(self) -> None:
        self._iter = None

    def __len__(self) -> int:
        return len(self._tensors)


def _has_sympy() -> bool:
    """Symbolic shape inference needs sympy; without it ONNX's own shape inference (static shapes) is used."""
    try:
        import sympy  # noqa: F401
    except ImportError:
        return False
    return True


def candidate_recipes(
    calibrations: list[Calibration],
    ops: list[OpSet],
    weights: list[WeightType] | None = None,
    float_first_conv: list[bool] | None = None,
    float_outliers: list[bool] | None = None,
    rounding: Rounding = "nearest",
    finetune: bool = False,
) -> list[Int8Recipe]:
    """Every combination, cheapest first. Weights default to what is exact and fast on this host."""
    if weights is None:
        weights = ["u8", "s8-7bit"] if host_saturates_u8s8() else ["s8"]
    return [
        Int8Recipe(
            calibration=c, ops=o, weights=w, float_first_conv=f, float_outliers=x, rounding=rounding, finetune=finetune
        )
        for c in calibrations
        for o in ops
        for w in weights
        for f in (float_first_conv if float_first_conv is not None else [True, False])
        for x in (float_outliers if float_outliers is not None else [False, True])
    ]
