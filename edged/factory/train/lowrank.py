"""Low-rank factorization: each large 1x1 convolution W (out x in) replaced by two, in -> r -> out, from its SVD.

The survey's "filter compression and matrix factorization" family. In a depthwise-separable detector nearly every
multiply is in the 1x1 (pointwise) convolutions, so they are what is factorized; depthwise 3x3 filters have 9
weights per channel and nothing to factor, and the first layer and the predictors are left whole. A layer is
split only when the rank it keeps makes it cheaper by a real margin (two thin convolutions cost an extra pass over
the activations).

The rank-r pair is fitted to what the layer actually outputs on real images, not to its weights alone: the
outputs' principal subspace (the top-r eigenvectors U of their covariance) is kept, so first = U^T W and second
= U, which is the best rank-r reconstruction of the layer's responses (Zhang et al., "Accelerating Very Deep
Convolutional Networks", 2015). Plain SVD of the weights, at the ranks that make a layer cheaper here, left
YOLOX-nano with no detections at all before fine-tuning; fine-tuning with distillation then recovers what the
layers lost together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

RANK_MULTIPLE = 8  # channel counts in multiples of 8: what vectorised CPU kernels want
MIN_SAVING = 0.25  # split a layer only when it saves at least this share of its multiplies


@dataclass(frozen=True)
class Factorized:
    """What one layer became: its shape and the rank kept (for the model card)."""

    name: str
    in_channels: int
    out_channels: int
    rank: int
    energy_kept: float  # share of the squared singular values kept


def factorize(model: nn.Module, rank_ratio: float, keep: list[nn.Module], images: Iterable[Tensor]) -> list[Factorized]:
    """Replace, in place, every dense 1x1 convolution not in `keep` by a rank-r pair fitted to its outputs on
    `images` (batches [B, 3, H, W] as the model takes them), where r = rank_ratio x min(in, out) rounded up to a
    multiple of 8, and only where the split saves >= MIN_SAVING of the layer's multiplies."""
    if not 0 < rank_ratio < 1:
        raise ValueError(f"rank_ratio must be in (0, 1), got {rank_ratio}")
    kept_ids = {id(m) for m in keep}
    targets: dict[str, tuple[nn.Module, str, nn.Conv2d, int]] = {}
    for parent_name, parent in model.named_modules():
        for name, child in parent.named_children():
            if _factorizable(child) and id(child) not in kept_ids:
                assert isinstance(child, nn.Conv2d)
                cin, cout = child.in_channels, child.out_channels
                rank = min(cin, cout, -(-round(rank_ratio * min(cin, cout)) // RANK_MULTIPLE) * RANK_MULTIPLE)
                if rank * (cin + cout) <= (1 - MIN_SAVING) * cin * cout:
                    targets[f"{parent_name}.{name}".lstrip(".")] = (parent, name, child, rank)
    statistics = _output_statistics(model, {n: t[2] for n, t in targets.items()}, images)
    done = []
    for layer, (parent, name, conv, rank) in targets.items():
        pair, energy = _response_pair(conv, rank, *statistics[layer])
        setattr(parent, name, pair)
        done.append(Factorized(layer, conv.in_channels, conv.out_channels, rank, energy))
    return done


@torch.no_grad()
def _output_statistics(
    model: nn.Module, convs: dict[str, nn.Conv2d], images: Iterable[Tensor]
) -> dict[str, tuple[Tensor, Tensor]]:
    """Per layer: the mean [out] and covariance [out, out] of its outputs (before bias) over every position."""
    sums: dict[str, list[Tensor]] = {}

    def recorder(layer: str, conv: nn.Conv2d):  # type: ignore[no-untyped-def]
        def hook(_module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
            response = nn.functional.conv2d(inputs[0], conv.weight, None, conv.stride)
            flat = response.transpose(0, 1).reshape(conv.out_channels, -1).double()
            total = sums.setdefault(
                layer,
                [
                    torch.zeros(conv.out_channels, dtype=torch.float64),
                    torch.zeros(conv.out_channels, conv.out_channels, dtype=torch.float64),
                    torch.zeros((), dtype=torch.float64),
                ],
            )
            total[0] += flat.sum(dim=1)
            total[1] += flat @ flat.T
            total[2] += flat.shape[1]

        return hook

    handles = [conv.register_forward_hook(recorder(layer, conv)) for layer, conv in convs.items()]
    was_training = model.training
    model.eval()
    try:
        for batch in images:
            model(batch)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    statistics = {}
    for layer, (total, outer, count) in sums.items():
        mean = total / count
        statistics[layer] = (mean, outer / count - torch.outer(mean, mean))
    return statistics


def _factorizable(module: nn.Module) -> bool:
    return type(module) is nn.Conv2d and module.kernel_size == (1, 1) and module.groups == 1


@torch.no_grad()
def _response_pair(conv: nn.Conv2d, rank: int, mean: Tensor, covariance: Tensor) -> tuple[nn.Sequential, float]:
    """conv ~ second(first(x)): first = U^T W (in -> rank, no bias), second = U (rank -> out) with the bias that
    puts back the part of the mean response outside the kept subspace."""
    eigenvalues, vectors = torch.linalg.eigh(covariance)  # ascending
    basis = vectors[:, -rank:]  # [out, rank]
    weight = conv.weight.reshape(conv.out_channels, conv.in_channels).double()
    first = nn.Conv2d(conv.in_channels, rank, 1, conv.stride, bias=False)  # type: ignore[arg-type]
    second = nn.Conv2d(rank, conv.out_channels, 1, bias=True)
    first.weight.copy_((basis.T @ weight).reshape(rank, conv.in_channels, 1, 1).float())
    second.weight.copy_(basis.reshape(conv.out_channels, rank, 1, 1).float())
    bias = conv.bias.double() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)
    assert second.bias is not None
    second.bias.copy_((bias + mean - basis @ (basis.T @ mean)).float())
    energy = float(eigenvalues[-rank:].clamp(min=0).sum() / eigenvalues.clamp(min=0).sum().clamp(min=1e-30))
    return nn.Sequential(first, second), energy
