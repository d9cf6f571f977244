"""Structured channel pruning: whole channels removed (torch-pruning's dependency graph keeps residuals, the FPN
sums and depthwise groups consistent), so the exported ONNX is a smaller dense network, not a masked one.

Magnitude importance, the box and class predictors excluded, channel counts rounded to multiples of 16 (odd
counts lose most of the speed-up in ONNX Runtime's kernels).
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar, cast

import torch
import torch_pruning as tp
from torch import nn

ROUND_TO = 16
TRACE_SIZE = 320
Model = TypeVar("Model", bound=nn.Module)


def prune_model(model: Model, ratio: float) -> Model:
    """A pruned copy: `ratio` of each prunable layer's channels removed (deterministic for given weights).

    `model.head.predictors()` names the layers whose outputs are the detections: never pruned."""
    pruned = copy.deepcopy(model).eval()
    example = torch.zeros(1, 3, TRACE_SIZE, TRACE_SIZE)
    with torch.enable_grad():  # the dependency graph is traced through autograd
        pruner = tp.pruner.MetaPruner(
            pruned,
            example,
            importance=tp.importance.MagnitudeImportance(p=2),
            pruning_ratio=ratio,
            ignored_layers=list(cast(Any, pruned).head.predictors()),
            round_to=ROUND_TO,
        )
        pruner.step()
    return pruned


def channel_summary(model: nn.Module) -> list[int]:
    """Output channels of every convolution, in order: what a pruning ratio actually left."""
    return [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
