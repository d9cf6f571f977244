"""Which layers of the fine-tuned parent survive 1-bit weights: each pointwise convolution binarized alone, its
BatchNorm measured on training crops, no training, scored on the family's tune split. What the binary stage's
scope (family.BINARY_SCOPE) was chosen from; run after the data stage:

    python -m edged.factory.train.binary_sensitivity --out model_zoo --work out/zoo-build

About 10 minutes on 2 cores. Writes binary-sensitivity.json into --work and prints one line per layer.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path
from typing import cast

import torch
from torch import nn

from edged.factory.train import family
from edged.factory.train.binary import (
    BinaryConv2d,
    binarize,
    binarize_with_batchnorm,
    fold_for_export,
    recalibrate_batchnorm,
)
from edged.factory.train.measure import tune_accuracy
from edged.factory.train.student import export_onnx
from edged.factory.train.yolox import YoloxNano


def candidate_layers(model: YoloxNano) -> list[str]:
    """The pointwise convolutions the binary stage may binarize: those `binarize` swaps with no scope."""
    binary = binarize(copy.deepcopy(model), pointwise_only=True)
    return [name for name, m in binary.named_modules() if isinstance(m, BinaryConv2d)]


def tune_map(model: nn.Module, tune_set: Path, scratch: Path) -> float:
    path = export_onnx(fold_for_export(copy.deepcopy(model)), scratch / "model.onnx", (family.SIZE, family.SIZE))
    return tune_accuracy({"model": path}, tune_set, family.SIZE)["model"]["map50_95"]


def sweep(ctx: family.BuildContext) -> list[dict[str, object]]:
    torch.set_num_threads(2)
    crops = list(family.training_crops(ctx, family.CALIBRATION_BATCHES))
    parent = family.load_parent(ctx)
    tune_set = ctx.eval_dir / "family-tune"
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as scratch:
        print(f"float: {tune_map(parent, tune_set, Path(scratch)):.4f}", flush=True)
        for name in candidate_layers(parent):
            model = binarize_with_batchnorm(copy.deepcopy(parent), crops[:2], pointwise_only=True, scope=(name,))
            score = tune_map(recalibrate_batchnorm(model, crops), tune_set, Path(scratch))
            weights = cast(nn.Conv2d, parent.get_submodule(name)).weight.numel()
            rows.append({"layer": name, "weights": weights, "map50_95": score})
            print(f"{name:36s} {weights:7d} weights  {score:.4f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=family.REPO_ROOT / "model_zoo", help="the shipped family")
    parser.add_argument("--shared", type=Path, default=family.REPO_ROOT.parent / "shared", help="models and data")
    parser.add_argument("--work", type=Path, default=family.REPO_ROOT / "out" / "zoo-build", help="the build's work")
    args = parser.parse_args(argv)
    ctx = family.BuildContext(shared=args.shared.resolve(), out=args.out, work=args.work)
    if not (ctx.eval_dir / "family-tune").is_dir():
        raise SystemExit(f"{ctx.eval_dir / 'family-tune'} is missing: run the family build's data stage first")
    rows = sweep(ctx)
    (ctx.work / "binary-sensitivity.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
