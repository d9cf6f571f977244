"""The training cache's draws: a source can be given a share of the samples and its own scale, and its samples a
quarter turn (the drone specialist's recipe)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("torch")

from edged.factory.train.augment import AugmentConfig, BatchMaker, quarter_turn
from edged.factory.train.data import TrainCache


def cache(sources: list[str], weights: list[float]) -> TrainCache:
    n = len(sources)
    blank = np.zeros((8, 8, 3), np.uint8)
    return TrainCache(
        images=[blank] * n,
        boxes=[np.zeros((0, 4), np.float32)] * n,
        classes=[np.zeros(0, np.int64)] * n,
        weights=[np.zeros(0, np.float32)] * n,
        supervised=np.ones((n, 5), bool),
        base_scale=np.ones(n, np.float32),
        scale_range=np.ones((n, 2), np.float32),
        sample_weight=np.asarray(weights, np.float64),
        group=np.zeros(n, np.int64),
        sources=sources,
    )


def test_a_focused_source_gets_its_share_and_the_others_keep_their_ratios():
    original = cache(["drone", "drone", "road", "road", "video"], [1.5, 1.5, 1.0, 1.0, 0.5])
    focused = original.focused("drone", 0.75)
    w = focused.sample_weight
    assert w[:2].sum() / w.sum() == pytest.approx(0.75)
    assert w[2:] == pytest.approx(original.sample_weight[2:])  # the rest untouched: their ratios hold
    assert original.sample_weight[0] == 1.5  # a new cache; the one the other stages read is unchanged


@pytest.mark.parametrize(("source", "share"), [("boat", 0.5), ("drone", 1.0), ("drone", 0.0)])
def test_a_share_that_cannot_be_given_is_refused_by_name(source: str, share: float):
    with pytest.raises(ValueError, match=source):
        cache(["drone", "road"], [1.0, 1.0]).focused(source, share)


def test_a_rescaled_source_is_drawn_at_its_new_scale_and_the_others_keep_theirs():
    original = cache(["drone", "road", "drone"], [1.0, 1.0, 1.0])
    rescaled = original.rescaled("drone", (2.0, 3.6))
    assert rescaled.scale_range[[0, 2]] == pytest.approx(np.asarray([[2.0, 3.6], [2.0, 3.6]]))
    assert rescaled.scale_range[1].tolist() == [1.0, 1.0]
    assert original.scale_range[0].tolist() == [1.0, 1.0]  # a new cache, as `focused` makes


@pytest.mark.parametrize(("source", "scale"), [("boat", (2.0, 3.0)), ("drone", (0.0, 1.0)), ("drone", (3.0, 2.0))])
def test_a_scale_that_cannot_be_given_is_refused_by_name(source: str, scale: tuple[float, float]):
    with pytest.raises(ValueError, match=source):
        cache(["drone", "road"], [1.0, 1.0]).rescaled(source, scale)


def test_a_quarter_turn_turns_the_boxes_with_the_pixels():
    """Each box still frames the patch it framed (np.rot90's counter-clockwise turn)."""
    canvas = np.zeros((64, 64, 3), np.uint8)
    canvas[10:30, 40:46] = 255  # a standing person, 6 x 20
    turned, boxes = quarter_turn(canvas, np.asarray([[40, 10, 46, 30]], np.float32))
    ys, xs = np.nonzero(turned[..., 0])
    assert boxes.tolist() == [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]] == [[10, 18, 30, 24]]  # lying, 20 x 6


def test_only_the_named_sources_are_turned():
    images = [np.zeros((32, 32, 3), np.uint8) for _ in range(2)]
    for image in images:
        image[2:12, 20:24] = 255  # tall, thin: a standing person
    scene = replace(
        cache(["drone", "road"], [1.0, 1.0]),
        images=images,
        boxes=[np.asarray([[20, 2, 24, 12]], np.float32)] * 2,
        classes=[np.zeros(1, np.int64)] * 2,
        weights=[np.ones(1, np.float32)] * 2,
        scale_range=np.ones((2, 2), np.float32),
    )
    config = AugmentConfig(size=32, mosaic=0.0, flip=0.0, turn=1.0, turn_sources=("drone",))
    maker = BatchMaker(scene, config, np.random.default_rng(0))
    (_, drone_boxes, _, _), (_, road_boxes, _, _) = maker.sample(0), maker.sample(1)
    width, height = (drone_boxes[0, 2:] - drone_boxes[0, :2]).tolist()
    assert width > height  # turned: lying
    width, height = (road_boxes[0, 2:] - road_boxes[0, :2]).tolist()
    assert height > width  # still standing
