"""TFLite forms of a torch detector, for LiteRT (with XNNPACK on phones, Pis and Jetsons): float32, or full int8.

Converted by litert-torch (no TensorFlow on the build machine). The int8 form is post-training static
quantization by PyTorch 2 export (PT2E) with litert-torch's quantizer: per-channel symmetric int8 weights,
activations calibrated on real images; convolutions with their ReLU, additions and max-pools run in int8, the
in-graph box decoding stays float. The input stays NCHW float 0..1, as the ONNX twin's, so one manifest `input`
block serves both files.

Every export is checked against its torch source on a real image before it is kept (`check_against_torch`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from edged.errors import MissingExtraError, ModelError
from edged.factory.train.student import ExportModel
from edged.vision.engines import EngineOptions, open_engine


def _litert_torch():  # type: ignore[no-untyped-def]
    try:
        import litert_torch
    except ImportError:
        raise MissingExtraError("litert-torch", "build", "Exporting to TFLite") from None
    return litert_torch


def export_tflite(
    model: nn.Module, path: Path, input_size: tuple[int, int], calibration: Iterable[Tensor] | None = None
) -> Path:
    """Write `model` (decoded in-graph, as export_onnx does) as a .tflite for one input size (width, height):
    float32, or full int8 calibrated on `calibration` batches when given."""
    litert_torch = _litert_torch()
    width, height = input_size
    example = (torch.zeros(1, 3, height, width),)
    path.parent.mkdir(parents=True, exist_ok=True)
    if calibration is None:
        edge = litert_torch.convert(ExportModel(model, input_size).eval(), example)
    else:
        from litert_torch.quantize import pt2e_quantizer
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e import allow_exported_model_train_eval, quantize_pt2e

        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
        )
        # the network alone is quantized; the box decoding around it (cell grids, exp, strides) stays float
        network = _Predictions(model).eval()
        prepared = quantize_pt2e.prepare_pt2e(torch.export.export(network, example).module(), quantizer)
        with torch.no_grad():
            for batch in calibration:
                for image in batch.split(1):
                    prepared(image)
        quantized = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
        allow_exported_model_train_eval(quantized)  # ExportModel(...).eval() reaches it
        probabilities = hasattr(model, "predict")
        wrapped = ExportModel(quantized, input_size, probabilities=probabilities).eval()
        edge = litert_torch.convert(wrapped, example, quant_config=QuantConfig(pt2e_quantizer=quantizer))
    edge.export(str(path))
    return path


class _Predictions(nn.Module):
    """The network's per-cell predictions, as `ExportModel` decodes them (scores where the model gives them)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        predict = getattr(self.model, "predict", None)
        return predict(x) if predict is not None else self.model(x)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Agreement:
    """How closely an exported file's outputs follow its torch source's on one image."""

    max_box_error_px: float  # over cells either scores above the threshold
    max_score_error: float
    cells: int  # cells compared

    def within(self, box_px: float, score: float) -> bool:
        return self.max_box_error_px <= box_px and self.max_score_error <= score


def check_against_torch(
    model: nn.Module, path: Path, model_format: str, image: Tensor, score_threshold: float = 0.1
) -> Agreement:
    """Run the exported file and the torch model on `image` [1, 3, H, W] and compare the cells that matter."""
    with torch.no_grad():
        expected = ExportModel(model, (image.shape[3], image.shape[2])).eval()(image)[0].numpy()
    engine = open_engine(path, model_format, EngineOptions(threads=1, warmup_runs=0))  # type: ignore[arg-type]
    try:
        actual = engine.run(image.numpy())[0][0]
    finally:
        engine.close()
    if actual.shape != expected.shape:
        raise ModelError(f"{path}: output {list(actual.shape)}, its torch source gives {list(expected.shape)}")
    scores = np.maximum(expected[4:].max(axis=0), actual[4:].max(axis=0))
    cells = scores >= score_threshold
    box_error = float(np.abs(actual[:4, cells] - expected[:4, cells]).max()) if cells.any() else 0.0
    return Agreement(box_error, float(np.abs(actual[4:] - expected[4:]).max()), int(cells.sum()))
