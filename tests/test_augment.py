"""Training crops: a label lands on the pixels it names, at every jittered scale and window, in mosaics too.

For a person 2 pixels wide, a label a pixel off is a different object at IoU 0.5: what the crops teach about where
a box goes must be exact, not merely on average."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from edged.factory.train.augment import PAD_VALUE, AugmentConfig, BatchMaker
from edged.factory.train.data import TrainCache

SPOT = (70, 60, 73, 66)  # a 3 x 6 pixel bright spot (x0, y0, x1, y1) in a dark 160-pixel frame


def one_spot_cache(scale_range: tuple[float, float]) -> TrainCache:
    frame = np.zeros((160, 160, 3), np.uint8)
    x0, y0, x1, y1 = SPOT
    frame[y0:y1, x0:x1] = 255
    return TrainCache(
        images=[frame],
        boxes=[np.asarray([SPOT], np.float32)],
        classes=[np.zeros(1, np.int64)],
        weights=[np.ones(1, np.float32)],
        supervised=np.ones((1, 5), bool),
        base_scale=np.ones(1, np.float32),
        scale_range=np.asarray([scale_range], np.float32),
        sample_weight=np.ones(1),
        group=np.zeros(1, np.int64),
        sources=["drone"],
    )


def label_offsets(scale_range: tuple[float, float], mosaic: float) -> np.ndarray:
    """(label centre - its spot's centre of brightness on the canvas) / the label's scale, in source pixels, for
    every label whose spot the crop left whole (a mosaic holds up to four)."""
    maker = BatchMaker(one_spot_cache(scale_range), AugmentConfig(size=384, mosaic=mosaic), np.random.default_rng(0))
    offsets = []
    for _ in range(100):
        canvas, boxes, _, _ = maker.sample(0)
        brightness = np.where(canvas[..., 0] == PAD_VALUE, 0, canvas[..., 0]).astype(np.float64)  # padding is no spot
        _, spots = cv2.connectedComponents((brightness > 0).astype(np.uint8))
        for box in boxes:
            if abs((box[3] - box[1]) / (box[2] - box[0]) / 2 - 1) > 0.05:  # cut by the crop, its blur on one side
                continue
            x, y = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
            mass = brightness * (spots == spots[y, x])
            rows, cols = np.nonzero(mass)
            weight = mass[rows, cols]
            centre = np.asarray([(cols + 0.5) @ weight, (rows + 0.5) @ weight]) / weight.sum()
            scale = (box[2] - box[0]) / (SPOT[2] - SPOT[0])
            offsets.append((np.asarray([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]) - centre) / scale)
    assert len(offsets) >= 30  # enough whole spots to say something
    return np.asarray(offsets)


@pytest.mark.parametrize(
    ("scale_range", "mosaic"), [((1.4, 2.6), 0.0), ((1.4, 2.6), 1.0), ((0.6, 1.0), 0.0)], ids=["up", "mosaic", "down"]
)
def test_a_label_lands_on_its_pixels_at_every_scale_and_window(scale_range: tuple[float, float], mosaic: float):
    offsets = label_offsets(scale_range, mosaic)
    # the crops before commit 905076a spread labels 0.18-0.41 source pixels about their spots (this test on them)
    assert offsets.std(axis=0).max() < 0.05
    assert np.abs(offsets).max() < 0.2  # the centre of brightness of a resampled spot is itself a little off
