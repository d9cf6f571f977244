"""The training cache's draws: a source can be given a share of the samples (the drone specialist's recipe), and
every image another scale (the small specialist's), a source another scale jitter (the drone specialist's)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

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


def test_a_cache_at_another_scale_draws_every_image_that_much_larger_and_leaves_the_original():
    original = cache(["drone", "road"], [1.0, 1.0])
    smaller = original.at_scale(0.5)
    assert smaller.base_scale == pytest.approx([0.5, 0.5])
    assert original.base_scale == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("factor", [0.0, -1.0, float("nan")])
def test_a_scale_that_is_not_positive_is_refused(factor: float):
    with pytest.raises(ValueError, match="positive"):
        cache(["drone"], [1.0]).at_scale(factor)


def test_a_rescaled_source_is_drawn_at_its_own_jitter_and_the_others_and_the_original_keep_theirs():
    original = cache(["drone", "road", "drone"], [1.0, 1.0, 1.0])
    rescaled = original.rescaled("drone", (1.8, 3.2))
    np.testing.assert_allclose(rescaled.scale_range, [[1.8, 3.2], [1.0, 1.0], [1.8, 3.2]], rtol=1e-6)
    np.testing.assert_array_equal(original.scale_range, [[1.0, 1.0]] * 3)


def test_a_source_the_cache_lacks_is_refused_by_name():
    with pytest.raises(ValueError, match="boat"):
        cache(["drone"], [1.0]).rescaled("boat", (1.0, 2.0))


@pytest.mark.parametrize("scale_range", [(0.0, 2.0), (-1.0, 2.0), (3.0, 2.0), (float("nan"), 2.0)])
def test_a_scale_range_that_is_not_positive_and_ordered_is_refused(scale_range: tuple[float, float]):
    with pytest.raises(ValueError, match="positive and ordered"):
        cache(["drone"], [1.0]).rescaled("drone", scale_range)
