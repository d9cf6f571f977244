"""The training cache's draws: a source can be given a share of the samples (the drone specialist's recipe),
every image another scale (the small specialist's), and a source's speckled frames despeckled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from edged.factory.train.data import TrainCache
from edged.factory.train.despeckle import despeckle
from edged.sources import read_image


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


def speckled(image: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """`image` with `share` of its pixels set to pure black or white, as Roboflow's noise augmentation does."""
    rng = np.random.default_rng(seed)
    noisy = image.copy()
    hit = rng.random(image.shape[:2]) < share
    noisy[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255)[:, None]
    return noisy


def smooth_frame() -> np.ndarray:
    """A sea-and-sand gradient: no pixel is an outlier of its neighbourhood."""
    y, x = np.mgrid[0:120, 0:160]
    return np.stack([60 + x // 2, 90 + y // 2, 120 + (x + y) // 8], axis=-1).astype(np.uint8)


def test_despeckling_restores_a_speckled_frame_and_keeps_what_is_inside_a_labelled_box():
    clean = smooth_frame()
    clean[50:53, 70:72] = 20  # a person 2 pixels wide, dark on the sand: itself an outlier of its 3x3 median
    box = np.asarray([[70, 50, 72, 53]], np.float32)
    noisy = speckled(clean, 0.02)
    restored = despeckle(noisy, box)
    outside = np.ones(clean.shape[:2], bool)
    outside[49:54, 69:73] = False  # the box grown by its one-pixel margin
    assert np.abs(restored.astype(int) - clean)[outside].max() <= 8  # every noise pixel gone, the gradient intact
    assert (restored[49:54, 69:73] == noisy[49:54, 69:73]).all()  # the person (and any noise on it) as labelled


def test_a_frame_without_speckle_comes_back_as_it_is():
    clean = smooth_frame()
    clean[50:53, 70:72] = 20  # an unlabelled dark speck alone is no reason to filter a frame
    assert despeckle(clean, np.zeros((0, 4), np.float32)) is clean


def test_only_the_named_source_is_despeckled_and_the_original_cache_is_left_alone():
    noisy = speckled(smooth_frame(), 0.02)
    original = cache(["drone", "road"], [1.0, 1.0])
    original.images = [noisy, noisy]
    drawn = original.despeckled("drone")
    assert drawn.images[1] is noisy  # another source's frames are not touched
    assert not np.array_equal(drawn.images[0], noisy)
    assert original.images[0] is noisy


def test_despeckling_a_source_the_cache_lacks_is_refused_by_name():
    with pytest.raises(ValueError, match="boat"):
        cache(["drone"], [1.0]).despeckled("boat")


def test_the_speckled_roboflow_training_frames_are_told_from_the_clean_held_out_ones(shared: Path):
    """The real export: training frames carry the noise, the valid and test splits do not (despeckle's why)."""
    folder = shared / "data/distill/drone-people/images"
    frames = {split: sorted(folder.glob(f"{split}_*"))[:40] for split in ("train", "valid", "test")}
    images = {split: [read_image(p) for p in paths] for split, paths in frames.items()}
    filtered = {
        split: sum(despeckle(image, np.zeros((0, 4))) is not image for image in frames)
        for split, frames in images.items()
    }
    assert filtered["valid"] == filtered["test"] == 0
    assert filtered["train"] >= len(frames["train"]) // 3
