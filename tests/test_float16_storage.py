"""Convolution weights stored in float16 (edged.factory.onnx_graph.store_weights_float16): the file halves, the
graph ONNX Runtime runs is the same float32 one, and what it finds on a real photo does not move."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edged.vision.detector import Detector
from edged.vision.postprocess import PostprocessOptions
from tests.helpers import iou

onnx = pytest.importorskip("onnx")
PEOPLE_IMAGE = "000000002153"  # four people and a bicycle


@pytest.fixture(scope="module")
def stored(coco_zoo, tmp_path_factory) -> tuple[Path, Path, int]:
    from edged.factory.onnx_graph import store_weights_float16

    source = coco_zoo.file_of(coco_zoo.variant("yolox-nano-416"))
    model = onnx.load(str(source))
    saved = store_weights_float16(model)
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("float16") / "yolox-nano-416-f16.onnx"
    onnx.save(model, str(path))
    return source, path, saved


def test_the_file_halves(stored):
    source, path, saved = stored
    assert path.stat().st_size < 0.55 * source.stat().st_size
    assert saved > 0.45 * source.stat().st_size


def test_a_file_stored_so_is_left_as_it_is(stored):
    from edged.factory.onnx_graph import store_weights_float16

    assert store_weights_float16(onnx.load(str(stored[1]))) == 0


def test_detections_on_a_real_photo_do_not_move(coco_zoo, val_dev: Path, stored):
    source, path, _ = stored
    variant = coco_zoo.variant("yolox-nano-416")
    image = cv2.imread(str(val_dev / "images" / f"{PEOPLE_IMAGE}.jpg"))
    found = []
    for file in (source, path):
        labels = coco_zoo.labels_of(variant)
        options = PostprocessOptions(score_threshold=0.3)
        detector = Detector.open(file, "onnx", variant.input, variant.decoder, labels, postprocess=options)
        try:
            found.append(detector.detect(image))
        finally:
            detector.close()
    full, half = found
    assert len(full.boxes) >= 1 and len(half.boxes) == len(full.boxes)
    assert list(half.class_ids) == list(full.class_ids)
    assert np.abs(half.scores - full.scores).max() < 0.01
    assert min(iou(a, b) for a, b in zip(full.boxes, half.boxes)) > 0.98
