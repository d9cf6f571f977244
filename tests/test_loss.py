"""The detection loss's L1 term on the raw box encoding: what it adds, and why the drone specialist wants it.

GIoU alone, when where a 2-pixel person is stands in doubt by a pixel, is least on a box wider than the person
(it trades a sure overlap for area); an L1 term on (centre in strides, log size) is least on the person's own
size. That wide box is what the drone specialist drew around tiny people before it had the term."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edged.factory.train.augment import Batch  # noqa: E402
from edged.factory.train.loss import LossConfig, cxcywh_to_xyxy, detection_loss, encode_boxes, giou_loss  # noqa: E402
from edged.factory.train.student import anchor_grid, decode_boxes  # noqa: E402

PERSON = (30.0, 20.0, 32.0, 26.0)  # a 2 x 6 pixel person (xyxy) in a 64-pixel crop


def one_person_batch() -> Batch:
    return Batch(
        images=torch.zeros(1, 3, 64, 64),
        boxes=torch.tensor([[PERSON]]),
        classes=torch.zeros(1, 1, dtype=torch.long),
        weights=torch.ones(1, 1),
        supervised=torch.ones(1, 5),
    )


def every_cell_predicting(box: tuple[float, float, float, float], dx: float = 0.0) -> torch.Tensor:
    """Raw outputs [1, N, 4 + 5] whose every cell draws `box` (shifted by dx strides) and scores person 0.5."""
    centres, strides = anchor_grid(64, 64)
    encoded = encode_boxes(torch.tensor([[box]]).expand(1, len(centres), 4), centres, strides)
    encoded[..., 0] += dx
    return torch.cat([encoded, torch.zeros(1, len(centres), 5)], dim=-1)


def test_encoding_is_the_inverse_of_the_decoder() -> None:
    centres, strides = anchor_grid(64, 64)
    raw = torch.randn(2, len(centres), 4)
    boxes = cxcywh_to_xyxy(decode_boxes(raw, centres, strides))
    assert torch.allclose(encode_boxes(boxes, centres, strides), raw, atol=1e-4)


@pytest.mark.parametrize("dx", [0.0, 0.25, -0.5])
def test_l1_term_adds_its_gain_times_the_raw_distance_of_each_foreground_box(dx: float) -> None:
    centres, strides = anchor_grid(64, 64)
    raw = every_cell_predicting(PERSON, dx)
    without = LossConfig(l1_gain=0.0)
    with_l1 = LossConfig(l1_gain=1.5)
    total_0, _, box_0 = detection_loss(raw, centres, strides, one_person_batch(), without)
    total_1, _, box_1 = detection_loss(raw, centres, strides, one_person_batch(), with_l1)
    # each foreground cell is off by |dx| strides in x only, so the term is l1_gain * |dx| on the total
    assert float(total_1 - total_0) == pytest.approx(1.5 * abs(dx), abs=1e-5)
    assert box_1 - box_0 == pytest.approx(1.5 / with_l1.box_gain * abs(dx), abs=1e-6)


def test_default_config_leaves_the_loss_as_giou_alone() -> None:
    assert LossConfig().l1_gain == 0.0


def best_width(l1_gain: float) -> float:
    """The width that minimises the loss of one box against the person at either of two places a pixel apart."""
    centres = torch.tensor([[31.0, 23.0]])
    strides = torch.tensor([[8.0]])
    shift = torch.tensor([[-0.5, 0.0, -0.5, 0.0], [0.5, 0.0, 0.5, 0.0]])
    targets = torch.tensor([PERSON]) + shift
    log_w = torch.tensor(0.0, requires_grad=True)
    optimiser = torch.optim.Adam([log_w], lr=0.02)
    for _ in range(600):
        raw = torch.stack([torch.tensor(0.0), torch.tensor(0.0), log_w, torch.log(torch.tensor(6.0 / 8))])
        box = cxcywh_to_xyxy(decode_boxes(raw.view(1, 4), centres, strides)).expand(2, 4)
        loss = giou_loss(box, targets).mean()
        loss = loss + l1_gain * (raw.view(1, 4) - encode_boxes(targets, centres, strides)).abs().sum(-1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return float(torch.exp(log_w.detach()) * 8)


def test_giou_alone_draws_a_doubtful_tiny_person_wider_and_the_l1_term_draws_it_its_size() -> None:
    giou_only, with_l1 = best_width(0.0), best_width(1.0)
    assert giou_only == pytest.approx(3.0, abs=0.2)  # 2-pixel person: GIoU's best box under a pixel of doubt
    assert abs(with_l1 - 2.0) < abs(giou_only - 2.0)
    assert with_l1 == pytest.approx(2.0, abs=0.2)
