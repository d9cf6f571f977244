"""Per-channel activation statistics of a network's convolutions over calibration images: what pruning chooses and
compensates with, and what a binarised layer's restored BatchNorm starts from."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import Tensor, nn


def channel_statistics(
    model: nn.Module, convs: Iterable[nn.Conv2d], images: Iterable[Tensor], side: Literal["input", "output"]
) -> dict[nn.Conv2d, tuple[Tensor, Tensor]]:
    """Per convolution, the mean and standard deviation of each `side` channel over `images` (all positions)."""
    sums: dict[nn.Conv2d, list[Tensor]] = {}

    def record(conv: nn.Conv2d, tensor: Tensor) -> None:
        x = tensor.detach().double().transpose(0, 1).reshape(tensor.shape[1], -1)
        total = sums.setdefault(conv, [torch.zeros(x.shape[0], dtype=torch.float64)] * 2 + [torch.zeros(1)])
        total[0], total[1], total[2] = total[0] + x.sum(dim=1), total[1] + x.pow(2).sum(dim=1), total[2] + x.shape[1]

    targets = list(convs)
    if side == "input":
        handles = [c.register_forward_pre_hook(lambda m, args: record(m, args[0])) for c in targets]
    else:
        handles = [c.register_forward_hook(lambda m, _, out: record(m, out)) for c in targets]
    try:
        with torch.no_grad():
            for batch in images:
                model(batch)
    finally:
        for handle in handles:
            handle.remove()
    if len(sums) != len(targets):
        raise ValueError("no calibration images: the statistics come from the activations they produce")
    stats: dict[nn.Conv2d, tuple[Tensor, Tensor]] = {}
    for conv, (total, squares, count) in sums.items():
        mean = total / count
        stats[conv] = (mean.float(), (squares / count - mean.pow(2)).clamp(min=0).sqrt().float())
    return stats
