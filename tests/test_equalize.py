"""Cross-layer range equalization (edged.factory.equalize) on the family's shipped ReLU sibling and on small nets:
the network computes the same function, and the activations one int8 scale must cover get even. Needs torch (the
[build] extra). The shipped sibling is stored equalized already, so the tests skew it first (the same function)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import require_or_skip
from tests.helpers import with_a_loud_stem_channel

torch = require_or_skip("torch", reason="torch is in the [build] extra, not in `make test`'s install")

from torch import nn  # noqa: E402

from edged.factory.equalize import Chain, equalize_ranges  # noqa: E402
from edged.factory.train.data import LABELS  # noqa: E402
from edged.factory.train.yolox import YoloxNano, from_family_onnx, with_activation  # noqa: E402
from edged.factory.train.zoo_writer import input_spec  # noqa: E402

SIZE = 320
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def relu():
    template = with_activation(YoloxNano(len(LABELS)).fuse_focus(), nn.ReLU)
    return from_family_onnx(REPO / "model_zoo" / "yolox-relu.onnx", template).eval()


@pytest.fixture(scope="module")
def images(val_dev: Path):
    from edged.vision.preprocess import Preprocessor

    preprocess = Preprocessor(input_spec(SIZE))
    files = sorted((val_dev / "images").iterdir())[:12]
    return torch.from_numpy(np.concatenate([preprocess(cv2.imread(str(f)))[0] for f in files]))


def int8_channel_snr_db(activation: torch.Tensor) -> float:
    """The mean over live channels of signal / noise once the tensor is rounded to one 8-bit grid over its range
    (what an int8 activation gets), in dB."""
    low, high = min(float(activation.min()), 0.0), float(activation.max())
    step = (high - low) / 255
    rounded = torch.round((activation - low) / step) * step + low
    signal = activation.square().sum(dim=(0, 2, 3))
    noise = (activation - rounded).square().sum(dim=(0, 2, 3))
    alive = signal > 0
    return float(-10 * torch.log10((noise[alive] / signal[alive]).mean()))


def stem_output(model: YoloxNano, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.backbone.stem(images)


def test_equalization_keeps_the_function_and_evens_the_stems_output(relu, images):
    loud = with_a_loud_stem_channel(relu)
    chains = loud.equalization_chains()
    assert equalize_ranges(loud, chains, images) == len(chains) > 40
    with torch.no_grad():
        before, after = relu(images), loud(images)
    assert (after - before).abs().max() < 1e-4 * before.abs().max()  # float rounding, not a new function
    snr_loud = int8_channel_snr_db(stem_output(with_a_loud_stem_channel(relu), images))
    snr_after = int8_channel_snr_db(stem_output(loud, images))
    assert snr_after > snr_loud + 10, (snr_loud, snr_after)
    assert snr_after >= int8_channel_snr_db(stem_output(relu, images)) - 0.5  # as even as the shipped file


def test_a_silu_network_offers_no_chains_and_a_silu_chain_is_refused(images):
    silu = YoloxNano(len(LABELS)).fuse_focus().eval()
    assert silu.equalization_chains() == []
    stem = silu.backbone.stem
    with pytest.raises(ValueError, match="needs a Conv2d \\+ ReLU producer"):
        equalize_ranges(silu, [Chain(stem, (silu.backbone.dark2[0][0][0],))], images[:2])


def test_dense_consumers_move_part_of_the_way_and_dead_channels_stay():
    torch.manual_seed(0)
    producer = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
    consumer = nn.Conv2d(4, 2, 1)
    with torch.no_grad():
        producer[0].weight[1] *= 50  # one loud channel
        producer[0].weight[3].zero_()  # one that never fires
        producer[0].bias[3] = -1.0
    net = nn.Sequential(producer, consumer)
    x = torch.rand(8, 3, 16, 16)
    with torch.no_grad():
        expected, ranges_before = net(x), producer(x).amax(dim=(0, 2, 3))
    dead_weights = producer[0].weight[3].clone()
    equalize_ranges(net, [Chain(producer, (consumer,))], x, dense_strength=0.5)
    with torch.no_grad():
        assert torch.allclose(net(x), expected, atol=1e-5)
        ranges_after = producer(x).amax(dim=(0, 2, 3))
    live = [0, 1, 2]
    spread_before = ranges_before[live].max() / ranges_before[live].min()
    spread_after = ranges_after[live].max() / ranges_after[live].min()
    assert spread_after == pytest.approx(float(spread_before) ** 0.5, rel=1e-3)  # half way, in log scale
    assert torch.equal(producer[0].weight[3], dead_weights)


def test_a_chain_outside_the_model_is_a_clear_error(relu, images):
    stray = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
    with pytest.raises(ValueError, match="never ran"):
        equalize_ranges(relu, [Chain(stray, (nn.Conv2d(4, 4, 3, groups=4),))], images[:2])
