"""Tiled inference: the windows cover the frame with the promised overlap, truncated boxes are recognised, the
manifest says it and refuses nonsense, and a real detector finds small people only when the frame is tiled."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edged.errors import ConfigError
from edged.vision.detector import Detector
from edged.vision.postprocess import PostprocessOptions
from edged.vision.tiling import TileSpec, tile_windows, truncated
from edged.zoo.manifest import load_zoo
from tests.helpers import write_manifest


@pytest.mark.parametrize("size", [(640, 640), (768, 576), (1920, 1080), (333, 211)])
@pytest.mark.parametrize("grid", [(2, 2), (3, 2), (1, 3), (4, 4)])
def test_windows_cover_the_frame_with_equal_tiles_that_overlap(size, grid):
    width, height = size
    spec = TileSpec(grid=grid, overlap=0.2)
    windows = tile_windows(width, height, spec)
    assert len(windows) == grid[0] * grid[1]
    covered = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in windows:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert len({(x1 - x0, y1 - y0) for x0, y0, x1, y1 in windows}) == 1  # one size: one pre-processing placement
    tile_w, tile_h = windows[0][2] - windows[0][0], windows[0][3] - windows[0][1]
    if grid[0] > 1:  # neighbours across share at least the asked share of a tile
        assert windows[0][2] - windows[1][0] >= 0.2 * tile_w - 1
    if grid[1] > 1:
        assert windows[0][3] - windows[grid[0]][1] >= 0.2 * tile_h - 1


def test_a_box_cut_by_an_inner_edge_is_truncated_a_box_at_the_frame_border_is_not():
    window = (300, 0, 640, 340)  # the top-right tile of a 640x640 frame: its left and bottom edges are cuts
    boxes = np.array(
        [
            [300, 100, 330, 140],  # touches the left cut
            [500, 320, 540, 340],  # touches the bottom cut
            [600, 0, 640, 30],  # touches the frame's top and right borders only
            [400, 100, 450, 160],  # inside
        ],
        np.float32,
    )
    assert truncated(boxes, window, 640, 640).tolist() == [True, True, False, False]


@pytest.mark.parametrize(
    "tiles, message",
    [
        ("[1, 1]", "more than one tile"),
        ("[0, 2]", "1..8 tiles"),
        ("{grid: [2, 2], overlap: 0.7}", "overlap"),
        ("{grid: [2, 2], sideways: true}", "sideways"),
    ],
)
def test_a_bad_tiles_block_is_a_load_error_naming_the_field(tmp_path: Path, tiles: str, message: str):
    (tmp_path / "m.onnx").write_bytes(b"x")
    write_manifest(
        tmp_path,
        f"""\
schema: edged.zoo/v1
family: f
labels: [person]
variants:
  - id: tiled
    technique: fine-tuned
    format: onnx
    file: m.onnx
    sha256: "{"0" * 64}"
    input: {{size: [416, 416], tiles: {tiles}}}
    decoder: yolov8
""",
    )
    with pytest.raises(ConfigError) as err:
        load_zoo(tmp_path)
    text = str(err.value)
    assert "zoo.yaml:10" in text and "variants[0].input.tiles" in text and message in text


def test_the_shorthand_is_a_grid_with_the_defaults():
    assert TileSpec.model_validate([2, 3]) == TileSpec(grid=(2, 3), overlap=0.2, full_frame=True)
    with pytest.raises(ValidationError):
        TileSpec.model_validate([2])


@pytest.fixture(scope="module")
def crowd_of_small_people(shared: Path) -> np.ndarray:
    """A vtest frame shrunk 4x and repeated 4x4: the same 768x576 frame of 16 scenes, people ~20 pixels tall."""
    capture = cv2.VideoCapture(str(shared / "data" / "video" / "vtest.avi"))
    ok, frame = capture.read()
    capture.release()
    assert ok
    small = cv2.resize(frame, (frame.shape[1] // 4, frame.shape[0] // 4), interpolation=cv2.INTER_AREA)
    return np.tile(small, (4, 4, 1))


def test_small_people_are_found_only_when_the_frame_is_tiled(coco_zoo, crowd_of_small_people):
    variant = coco_zoo.variant("yolox-nano-416")
    options = PostprocessOptions(score_threshold=0.3)
    found = {}
    for name, tiles in (("whole", None), ("tiled", TileSpec(grid=(2, 2)))):
        spec = variant.input.model_copy(update={"tiles": tiles})
        detector = Detector.open(
            coco_zoo.file_of(variant), "onnx", spec, variant.decoder, coco_zoo.labels_of(variant), postprocess=options
        )
        try:
            result = detector.detect(crowd_of_small_people)
        finally:
            detector.close()
        people = result.boxes[result.class_ids == 0]
        found[name] = people
        assert result.width == 768 and result.height == 576
    assert len(found["whole"]) <= 2
    assert len(found["tiled"]) >= 20
    # every person found lies where people are: boxes inside the frame, person-shaped (taller than wide)
    boxes = found["tiled"]
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 768).all() and (boxes[:, 3] <= 576).all()
    assert np.median((boxes[:, 3] - boxes[:, 1]) / (boxes[:, 2] - boxes[:, 0])) > 1.2
