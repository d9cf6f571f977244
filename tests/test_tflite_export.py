"""The factory's TFLite exports, float and full int8, of the family's network (YOLOX-nano with the COCO parent's
weights, ReLU sibling as int8 wants it): each file loads in edged's LiteRT engine, is checked against its torch
source, and detects what the ONNX export detects. Needs the [build] extra (torch, litert-torch)."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import require_or_skip

torch = require_or_skip("torch", reason="torch is in the [build] extra, not in `make test`'s install")
require_or_skip("litert_torch", reason="litert-torch is in the [build] extra")

from edged.factory.tflite import check_against_torch, export_tflite  # noqa: E402
from edged.factory.train.data import LABELS  # noqa: E402
from edged.factory.train.student import export_onnx  # noqa: E402
from edged.factory.train.yolox import from_onnx, with_activation  # noqa: E402
from edged.factory.train.zoo_writer import input_spec  # noqa: E402
from edged.vision.decoders import DECODERS  # noqa: E402
from edged.vision.detector import Detector  # noqa: E402
from edged.vision.postprocess import PostprocessOptions  # noqa: E402

SIZE = 320


@pytest.fixture(scope="module")
def parent(shared: Path):
    names = (shared / "models" / "coco" / "coco.names").read_text().splitlines()
    return from_onnx(shared / "models" / "coco" / "yolox_nano_416.onnx", names, LABELS).fuse_focus()


@pytest.fixture(scope="module")
def images(val_dev: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p)) for p in sorted((val_dev / "images").iterdir())[:12]]


def _tensor(images: list[np.ndarray]) -> torch.Tensor:
    from edged.vision.preprocess import Preprocessor

    preprocess = Preprocessor(input_spec(SIZE))
    return torch.from_numpy(np.concatenate([preprocess(image)[0] for image in images]))


def _detector(path: Path, model_format: str) -> Detector:
    decoder = DECODERS["yolov8"].model_validate({"type": "yolov8"})
    return Detector.open(
        path, model_format, input_spec(SIZE), decoder, list(LABELS), postprocess=PostprocessOptions(score_threshold=0.3)
    )  # type: ignore[arg-type]


def test_float_tflite_is_the_torch_model_and_finds_what_the_onnx_finds(parent, images, tmp_path):
    path = export_tflite(parent, tmp_path / "float.tflite", (SIZE, SIZE))
    agreement = check_against_torch(parent, path, "tflite", _tensor(images[:1]))
    assert agreement.cells > 0 and agreement.within(box_px=0.05, score=1e-4)
    onnx_path = export_onnx(copy.deepcopy(parent), tmp_path / "float.onnx", (SIZE, SIZE))
    tflite, onnx = _detector(path, "tflite"), _detector(onnx_path, "onnx")
    try:
        for image in images:
            a, b = tflite.detect(image), onnx.detect(image)
            assert len(a.scores) == len(b.scores)
            assert np.abs(a.boxes - b.boxes).max(initial=0) < 0.5
    finally:
        tflite.close()
        onnx.close()


def test_int8_tflite_of_the_relu_sibling_stays_close_to_its_float_source(parent, images, tmp_path):
    relu = with_activation(copy.deepcopy(parent), torch.nn.ReLU).eval()  # int8 wants ReLU (it folds into the conv)
    path = export_tflite(relu, tmp_path / "int8.tflite", (SIZE, SIZE), [_tensor(images)])
    assert path.stat().st_size < 0.4 * export_tflite(relu, tmp_path / "f.tflite", (SIZE, SIZE)).stat().st_size
    agreement = check_against_torch(relu, path, "tflite", _tensor(images[:1]))
    assert agreement.max_score_error < 0.15  # one rounding per layer, not garbage (an unquantized decode: boxes in px)
    detector = _detector(path, "tflite")
    try:
        assert detector.engine.input_dtype == "float32"  # edged feeds it the same floats as the ONNX file
        found = detector.detect(images[0])
        assert found.boxes.shape[1] == 4
    finally:
        detector.close()
