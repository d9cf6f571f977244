"""TFLite forms of a torch detector, for LiteRT (with XNNPACK on phones, Pis and Jetsons): float32, or full int8.

Converted by litert-torch (no TensorFlow on the build machine); a float file may keep its weights in float16
(ai-edge-quantizer's float casting: half the size, the same float32 compute). The int8 form is static quantization
by PyTorch 2 export (PT2E) with litert-torch's quantizer: a ReLU network's channel ranges equalized first
(edged.factory.equalize), per-channel symmetric int8 weights, activations calibrated on real images, then
(`Finetune`) fine-tuned with the quantizer in the loop, distilled from the float model. The network
runs in int8 up to the head's last convolutions, each output with its own scale, and the box decoding after them
in float, so the file gives the float twin's output layout.
The file takes the same NCHW 0..1 floats as its ONNX twin (its first op rounds them to int8), so one manifest
`input` block serves both files.

Every export is held to its torch source's outputs on real images before it is kept (`require_agreement`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edged.errors import MissingExtraError, ModelError
from edged.factory.equalize import Chain, equalize_ranges
from edged.factory.train.student import ExportModel
from edged.factory.train.yolox import MAX_LOG_SIZE, STRIDES
from edged.vision.engines import EngineOptions, open_engine


def _litert_torch():  # type: ignore[no-untyped-def]
    try:
        import litert_torch
    except ImportError:
        raise MissingExtraError("litert-torch", "build", "Exporting to TFLite") from None
    return litert_torch


@dataclass(frozen=True)
class Finetune:
    """Quantization-aware fine-tuning of the int8 form (fake-quantized forward pass, straight-through rounding),
    distilled from the float model's own head outputs on the calibration images and their mirrors: no labels.

    Why: post-training calibration alone (PT2E histogram observers) cost the ReLU sibling at 256 0.026 mAP50-95
    on family-heldout, and on the tune split 0.041; 4 epochs on the 128 calibration images brought the tune-split
    drop to 0.017 (exploratory runs, 2026-12-06: 8 epochs at 3x the rate, or 512 augmented training crops, did
    worse on the tune split: 128 images and a low rate move the ranges, not the net), and the factory's build
    of that file loses 0.009 on family-heldout (MODEL_CARD.md)."""

    epochs: int = 4
    batch: int = 8
    learning_rate: float = 1e-5  # Adam
    seed: int = 0


def export_tflite(
    model: nn.Module,
    path: Path,
    input_size: tuple[int, int],
    calibration: Iterable[Tensor] | None = None,
    finetune: Finetune = Finetune(),
    float16_weights: bool = False,
) -> Path:
    """Write `model` (decoded in-graph, as export_onnx does) as a .tflite for one input size (width, height):
    float, or full int8 calibrated on `calibration` batches when given, then fine-tuned with the quantizer in
    the loop as `finetune` says (0 epochs: calibration only). A float file may store its weights in float16
    (`float16_weights`): half the size, and XNNPACK widens them to float32 once, at load, so it computes and
    runs as the float32 file does (scores within 0.004 of it on the family's network)."""
    litert_torch = _litert_torch()
    width, height = input_size
    example = (torch.zeros(1, 3, height, width),)
    path.parent.mkdir(parents=True, exist_ok=True)
    if calibration is None:
        edge = litert_torch.convert(ExportModel(model, input_size).eval(), example)
        edge.export(str(path))
        if float16_weights:
            _store_weights_in_float16(path)
        return path
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    quantizer, quantized = _quantize(model, torch.cat(list(calibration)), finetune)
    allow_exported_model_train_eval(quantized)  # ExportModel(...).eval() reaches it
    wrapped = _FloatDecoding(quantized, input_size).eval()
    edge = litert_torch.convert(wrapped, example, quant_config=QuantConfig(pt2e_quantizer=quantizer))
    edge.export(str(path))
    return path


def _store_weights_in_float16(path: Path) -> None:
    """The convolutions' weights of a float .tflite in float16, in place (ai-edge-quantizer's float casting)."""
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    recipe = recipe_manager.RecipeManager()
    recipe.add_weight_only_config(
        regex=".*",
        operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
        num_bits=16,
        algorithm_key=AlgorithmName.FLOAT_CASTING,
    )
    casting = quantizer.Quantizer(str(path))
    casting.load_quantization_recipe(recipe.get_quantization_recipe())
    casting.quantize().export_model(str(path), overwrite=True)


def _quantize(model: nn.Module, images: Tensor, finetune: Finetune) -> tuple[Any, nn.Module]:
    """The head outputs (`_HeadOutputs`) in int8 by PT2E: per-channel symmetric weights, activations observed on
    `images`, then fine-tuned. A model that names its `equalization_chains` (a ReLU network) has its channel
    ranges equalized first (edged.factory.equalize: without it the ReLU sibling's int8 file lost 0.04 mAP50-95
    at 416 on highway-heldout, with it nothing measurable; exploratory run, 2026-12-06). int8 ends at the head's
    last convolutions: each of their outputs keeps its own scale, and everything after them (sigmoids, the box /
    score concatenation, the box decoding) runs in float."""
    from torchao.quantization.pt2e import quantize_pt2e

    quantizer = _quantizer()
    copied = copy.deepcopy(model)  # the exported graph trains the module's own tensors
    chains: list[Chain] = getattr(copied, "equalization_chains", list)()
    if chains:
        equalize_ranges(copied, chains, images)  # the same function, ranges one int8 scale serves
    network = _HeadOutputs(copied).eval()
    batch = torch.export.Dim("batch", max=max(64, len(images)))
    graph = torch.export.export(network, (images[:2],), dynamic_shapes=({0: batch},)).module()
    prepared = quantize_pt2e.prepare_qat_pt2e(graph, quantizer)
    with torch.no_grad():
        for chunk in images.split(8):
            prepared(chunk)
    if finetune.epochs:
        _finetune(prepared, _HeadOutputs(model).eval(), torch.cat([images, images.flip(3)]), finetune)
    return quantizer, quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)


def _finetune(prepared: nn.Module, teacher: nn.Module, images: Tensor, cfg: Finetune) -> None:
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        targets = [torch.cat(t) for t in zip(*(teacher(chunk) for chunk in images.split(16)))]
    optimizer = torch.optim.Adam(prepared.parameters(), lr=cfg.learning_rate)
    steps = cfg.epochs * -(-len(images) // cfg.batch)
    with tqdm(total=steps, desc="int8 fine-tuning", unit="step", leave=False) as bar:
        for _ in range(cfg.epochs):
            for index in torch.randperm(len(images), generator=generator).split(cfg.batch):
                loss = _distance(prepared(images[index]), [t[index] for t in targets])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                bar.set_postfix(loss=f"{loss.item():.4f}")
                bar.update()


def _distance(outputs: tuple[Tensor, ...], targets: list[Tensor]) -> Tensor:
    """Box offsets by a smooth L1; objectness and class logits by cross-entropy against the float model's
    probabilities (the per-level (box, objectness, classes) order of `_HeadOutputs`)."""
    loss = torch.zeros(())
    for i, (output, target) in enumerate(zip(outputs, targets)):
        if i % 3 == 0:
            loss = loss + F.smooth_l1_loss(output, target, beta=0.1)
        else:
            loss = loss + F.binary_cross_entropy_with_logits(output, target.sigmoid())
    return loss


def _quantizer() -> Any:
    """litert-torch's PT2E quantizer for training: per-channel symmetric int8 weights, per-tensor affine int8
    activations (moving min / max, fake-quantized)."""
    from litert_torch.quantize import pt2e_quantizer

    class WithoutBatchNorm(pt2e_quantizer.PT2EQuantizer):  # type: ignore[misc]
        """Without its conv + BatchNorm patterns for training, which fail to build under torch 2.13 ('Expected
        `mod` to be an instance of `torch.nn.Module`') and have nothing to match here: the factory's networks
        carry their BatchNorms folded into the convolutions."""

        STATIC_QAT_ONLY_OPS: ClassVar[list[str]] = []

    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_qat=True)
    return WithoutBatchNorm().set_global(config)


class _HeadOutputs(nn.Module):
    """The head's raw (box, objectness, classes) per level, flattened to [B, C, H x W]: what is quantized.

    Quantizing `predict` instead rounds its one concatenation of box offsets (-1..10 strides) and scores (0..1) to
    one scale shared with the scores: every box offset was clipped to 0..0.9 and the file scored 0 mAP."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        levels = cast(Any, self.model).levels(x)
        return tuple(t.flatten(2) for level in levels for t in level)


class _FloatDecoding(nn.Module):
    """`ExportModel`'s output, decoded in float from the quantized `_HeadOutputs`.

    Not `ExportModel` itself: it concatenates box offsets and scores before decoding, and the TFLite converter gives
    a concatenation of int8 inputs one int8 scale (a step of 0.02 on every score)."""

    def __init__(self, head: nn.Module, input_size: tuple[int, int]):
        super().__init__()
        self.head = head
        width, height = input_size
        for i, stride in enumerate(STRIDES):  # each cell's corner, in cells, in the flattened order
            rows, columns = torch.meshgrid(torch.arange(height // stride), torch.arange(width // stride), indexing="ij")
            self.register_buffer(f"columns{i}", columns.flatten().float())
            self.register_buffer(f"rows{i}", rows.flatten().float())

    def forward(self, x: Tensor) -> Tensor:
        # A float op ahead of the quantized network keeps the file's input float32: its rounding to int8 then runs
        # inside XNNPACK, not in numpy in edged's engine (0.4 ms a frame at 416 on 2 vCPUs, 7 % of the int8 file's
        # p50; exploratory timing, 2026-12-06). The clamp is to the 0..1 the pre-processing gives: it changes nothing.
        flat, outputs = self.head(x.clamp(0.0, 1.0)), []
        for i, stride in enumerate(STRIDES):
            box, obj, cls = flat[3 * i : 3 * i + 3]
            cx = ((box[:, 0] + getattr(self, f"columns{i}")) * float(stride)).unsqueeze(1)
            cy = ((box[:, 1] + getattr(self, f"rows{i}")) * float(stride)).unsqueeze(1)
            wh = torch.exp(box[:, 2:4].clamp(max=MAX_LOG_SIZE)) * float(stride)
            outputs.append(torch.cat([cx, cy, wh, obj.sigmoid() * cls.sigmoid()], dim=1))
        return torch.cat(outputs, dim=2)


@dataclass(frozen=True)
class Agreement:
    """How closely an exported file's outputs follow its torch source's on real images: scores over every cell,
    boxes over the cells either side scores at or above the threshold (an empty cell's box means nothing)."""

    max_box_error_px: float  # over the confident cells
    max_score_error: float  # over every cell
    cells: int  # confident cells compared
    score_cells: int = 0  # every cell of every image
    p99_score_error: float = 0.0
    median_box_error: float = 0.0  # |coordinate error| / the box's longer side, the median confident cell

    def within(self, box_px: float, score: float) -> bool:
        return self.max_box_error_px <= box_px and self.max_score_error <= score


@dataclass(frozen=True)
class Tolerance:
    """What an export must keep of its source's outputs to be kept; None bounds nothing."""

    min_cells: int  # confident cells at least: a check that compared nothing cannot pass
    max_box_px: float | None = None
    max_score: float | None = None
    p99_score: float | None = None
    median_box: float | None = None

    def violations(self, a: Agreement) -> list[str]:
        bounds = [
            ("confident cells compared", a.cells, self.min_cells, "<"),
            ("worst box error (px)", a.max_box_error_px, self.max_box_px, ">"),
            ("worst score error", a.max_score_error, self.max_score, ">"),
            ("99th-percentile score error", a.p99_score_error, self.p99_score, ">"),
            ("median box error (share of the box)", a.median_box_error, self.median_box, ">"),
        ]
        return [
            f"{name} {value:.4g} (allowed {'>=' if op == '<' else '<='} {bound:.4g})"
            for name, value, bound, op in bounds
            if bound is not None and (value < bound if op == "<" else value > bound)
        ]


# A float file computes what its source does, to float rounding. An int8 file rounds every layer: one cell's score
# may move by 0.5 (the fixed PT2E export of the ReLU sibling at 416: 0.59 at worst over 16 calibration images, 0.004
# at the 99th percentile, boxes off by 6 % of their size at the median); the broken export that clipped every box
# offset kept those scores but put its boxes off by 133 % at the median.
FLOAT_TOLERANCE = Tolerance(min_cells=10, max_box_px=0.05, max_score=1e-4)
# float16 weights move the 99th-percentile score by 1e-4 and boxes by 0.1 % of their size at the median, but one
# cell near a decision may move by 0.03 (the ReLU sibling at 320 on 12 COCO images; the parent at 416 on 16 tune
# images: 0.0034): the bound on the worst cell only catches a broken file, the percentiles hold the rest.
FLOAT16_TOLERANCE = Tolerance(min_cells=10, max_box_px=1.0, max_score=0.05, p99_score=1e-3, median_box=0.005)
INT8_TOLERANCE = Tolerance(min_cells=10, p99_score=0.02, median_box=0.15)


def check_against_torch(
    model: nn.Module, path: Path, model_format: str, images: Tensor, score_threshold: float = 0.25
) -> Agreement:
    """Run the exported file and the torch model on `images` [B, 3, H, W] and compare their outputs."""
    with torch.no_grad():
        expected = ExportModel(model, (images.shape[3], images.shape[2])).eval()(images).numpy()
    engine = open_engine(path, model_format, EngineOptions(threads=1, warmup_runs=0))  # type: ignore[arg-type]
    try:
        actual = np.stack([engine.run(image[None].numpy())[0][0] for image in images])
    finally:
        engine.close()
    if actual.shape != expected.shape:
        raise ModelError(f"{path}: output {list(actual.shape[1:])}, its torch source gives {list(expected.shape[1:])}")
    score_error = np.abs(actual[:, 4:] - expected[:, 4:])
    cells = np.maximum(expected[:, 4:].max(axis=1), actual[:, 4:].max(axis=1)) >= score_threshold  # [B, N]
    box_error = np.abs(actual[:, :4] - expected[:, :4]).transpose(0, 2, 1)[cells]  # [confident cells, 4]
    sides = np.maximum(expected[:, 2:4].transpose(0, 2, 1)[cells].max(axis=1), 1.0)
    return Agreement(
        max_box_error_px=float(box_error.max(initial=0.0)),
        max_score_error=float(score_error.max()),
        cells=int(cells.sum()),
        score_cells=int(cells.size),
        p99_score_error=float(np.percentile(score_error, 99)),
        median_box_error=float(np.median(box_error.max(axis=1) / sides)) if len(sides) else 0.0,
    )


def require_agreement(
    model: nn.Module, path: Path, model_format: str, images: Tensor, tolerance: Tolerance
) -> Agreement:
    """`check_against_torch`, and a ModelError naming the file and what is off when it is past `tolerance`."""
    agreement = check_against_torch(model, path, model_format, images)
    if problems := tolerance.violations(agreement):
        raise ModelError(f"{path} disagrees with its torch source on {len(images)} images: {'; '.join(problems)}")
    return agreement
