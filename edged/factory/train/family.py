"""Rebuild edged's demo family (`python -m edged.factory.train.family --out model_zoo`; `make zoo`).

The family is derived from a pretrained COCO detector (yolox-nano-416 in ../shared), not learnt from scratch:
fine-tuned to the family's classes and domain, then compressed. Stages, each resumable (checkpoints and caches
under --work, which is git-ignored):
  data     held-out / tune sets as YOLO folders, teacher pseudo-labels, the decoded-image cache
  parent   yolox-nano-416 fine-tuned to person / car / motorbike / bus / truck on drone, road and street
           images (real labels where they exist), distilled from itself on the classes an image has no labels for
  relu     the parent with ReLU for SiLU, distilled from it: cheaper in float, and int8 end to end (a ReLU folds
           into its convolution's output range; SiLU leaves a float island after every layer)
  prune    structured pruning of the fine-tuned parent's free channels at two ratios, each distilled from it
  lowrank  the fine-tuned parent's large 1x1 convolutions factorized (rank fitted to their responses), distilled
  binary   1-bit pointwise weights in the fine-tuned parent's deep stages and neck, BatchNorms restored after
           them, straight-through estimator, distilled, BatchNorms re-measured
  small    the fine-tuned parent trained on at half the scale, for 192-224 pixel inputs (the cheap end)
  drone    the fine-tuned parent trained on, mostly, drone views, for whole frames at 1280-1600
  export   ONNX files and zoo.yaml
  derive   from the exported ONNX files alone (no checkpoint): the int8 siblings through `edged zoo build
           --technique int8`, and TFLite forms (the file read back into torch, converted, checked against it)
  measure  `edged zoo eval --record`, `edged zoo profile`, `edged zoo report`, per-domain figures, MODEL_CARD.md
  card     MODEL_CARD.md again from what measure saved (no re-measuring)
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from edged.errors import ModelError
from edged.factory.equalize import equalize_ranges
from edged.factory.train.augment import AugmentConfig, BatchMaker
from edged.factory.train.binary import (
    binarize_with_batchnorm,
    binary_convs,
    binary_share,
    export_binary_onnx,
    recalibrate_batchnorm,
)
from edged.factory.train.data import (
    LABELS,
    SOURCES,
    TrainCache,
    load_or_build_cache,
    materialise_calibration_set,
    materialise_eval_sets,
    materialise_family_sets,
    materialise_video_agreement_set,
    open_teacher,
)
from edged.factory.train.loss import LossConfig
from edged.factory.train.lowrank import factorize
from edged.factory.train.measure import Guard
from edged.factory.train.prune import channel_summary, prune_model
from edged.factory.train.student import count_macs, count_params, export_onnx
from edged.factory.train.trainer import TrainConfig, train
from edged.factory.train.yolox import SiluToRelu, YoloxNano, from_family_onnx, from_onnx, with_activation
from edged.factory.train.zoo_writer import Entry, provenance, run_edged, write_zoo
from edged.zoo.manifest import Provenance

REPO_ROOT = Path(__file__).resolve().parents[3]
SEED = 0
STAGES = (
    "data", "parent", "relu", "prune", "lowrank", "binary", "small", "drone", "export", "derive", "measure", "card"
)  # fmt: skip
COMMAND = "python -m edged.factory.train.family --out model_zoo --shared ../shared"
PARENT_FILE = "models/coco/yolox_nano_416.onnx"
PARENT_LABELS = "models/coco/coco.names"
PARENT_LICENSE = "Apache-2.0 (YOLOX, Megvii; derived by edged's factory); trained on CC BY 4.0 / COCO data"

PARENT_TRAINING = TrainConfig(
    epochs=30,
    samples_per_epoch=1600,
    batch=16,
    lr=1e-4,  # measured: 3e-4 loses 0.05 tune mAP in 60 steps (no BatchNorm left to steady it), 1e-4 gains
    warmup_epochs=1.0,
    ema_decay=0.999,
    ema_warmup_steps=200,
    seed=SEED,
    augment=AugmentConfig(size=384),
    loss=LossConfig(kd_unlabelled_only=True),
)
# the siblings learn from the fine-tuned parent on every class (it knows the domain now), on top of the labels
SIBLING_TRAINING = replace(PARENT_TRAINING, epochs=8, lr=2e-4, warmup_epochs=0.5, loss=LossConfig())
RELU_TRAINING = replace(SIBLING_TRAINING, epochs=20)
RELU_RAMP_EPOCHS = 3  # SiLU blends into ReLU over these first epochs (an abrupt swap did not recover in two)
PRUNE_RATIOS = (0.25, 0.5)
PRUNE_TRAINING = replace(SIBLING_TRAINING, epochs=6)
LOWRANK_RATIO = 0.375  # rank / min(in, out): below 3/8 a square layer's two halves cost 25 % less than it
LOWRANK_TRAINING = replace(SIBLING_TRAINING, epochs=6)
BINARY_TRAINING = replace(SIBLING_TRAINING, epochs=8, lr=5e-4)
# Where the 1-bit weights go: the stride-16 and -32 stages and the neck, 82 % of the convolution weights. Each
# pointwise layer binarized alone in the fine-tuned parent (`python -m edged.factory.train.binary_sensitivity`:
# BatchNorm re-measured, no training, family-tune, where the parent scores 0.521): the stride-2 transitions into
# stages 2-4, the CSP outputs of stages 2 and 3 and the coarsest head branch cost 0.14-0.46 mAP50-95 each, so
# they stay float with the stem and the rest of the head; every layer in the scope costs 0.00-0.12 alone (dark5's
# transition costs 0.02 and stays float too: the scope was first drawn on the ReLU sibling, where it cost more).
# Every pointwise layer at once, as the first binary sibling had it, kept 0.01x after 8 epochs of distillation.
BINARY_SCOPE = ("backbone.dark4.1", "backbone.dark5.1", "backbone.dark5.2", "neck")
# The drone specialist: the fine-tuned parent trained on, mostly, drone-people crops (the parent drew them for 39 %
# of its samples). The parent scores no better on its own drone training images than on held-out ones (person AP50
# 0.07 on 43 training images, 0.10 on drone-people-tune, whole frame at 1280, 500 detections: an exploratory
# measurement of 2026-12-06 with `edged zoo eval`): it underfits them, so they get more of the steps. The other
# sources keep a quarter, and the parent teaches the classes a drone image has no labels for.
# Tried and not kept (commit 8170c58, reverted): its people learnt at 2-3.6x instead of 1.4-2.6x, the scale of a
# 1600-1920 point, with drone views turned a quarter half the time (lying and swimming people), 26 epochs from the
# parent as here: drone-people-tune AP50 0.143 at 1920 and 0.108 at 1280, against 0.138 and 0.125 for this recipe
# (drone-people-heldout at 1920: 0.179 against 0.194). Nor (commit bff0c76, reverted): a second round of 12 epochs
# with a stride-4 level (tune 0.137 at 1280 and 0.157 at 1600 against 0.125 and 0.149; held-out 0.193 at 1600
# against 0.190, for 1.74x the multiplies). Nor (commit 48da69a, reverted): its drone frames despeckled, Roboflow's
# salt-and-pepper noise removed from 266 of them (tune 0.137 at 1600 against 0.149; held-out 0.192 against 0.190).
# Retrained with the crops' labels exact (commit 905076a) it scored within the noise of the file it would have
# replaced (tune 0.151 at 1600, held-out 0.192, against 0.149 and 0.190).
# What did move it: an L1 term on the raw box encoding beside GIoU (`LossConfig.l1_gain`, YOLOX's own localisation
# term). Without it the specialist drew tiny people too wide (GIoU alone is least on a wider box where a 2-pixel
# person's place is in doubt: tests/test_loss.py), and IoU 0.5 missed them. With it at gain 1 (26 epochs from the
# parent, 45 min here): person AP50 0.167 on the tune split at 1600 and 0.150 at 1280 (without: 0.151, 0.129; 1920
# scored 0.150), held-out 0.203 and 0.173 (0.192, 0.159).
# Then the gain at 3 and the drone views drawn at 1.8-3.2x (DRONE_SCALE, around the 1600-1920 points) instead of the
# parent's 1.4-2.6x, each alone and both, 26 epochs from the parent (three runs side by side, 2026-12-07; each
# checkpoint exported into a copy of the zoo and scored with `edged zoo eval --max-detections 500`). Person AP50 on
# the tune split at 1280 / 1600 / 1920, then held-out at 1280 / 1600:
#   gain 1, 1.4-2.6x (the file this replaced)   0.150 / 0.167 / 0.150   0.173 / 0.203
#   gain 3                                      0.158 / 0.179 / 0.156   0.182 / 0.203
#   gain 1, 1.8-3.2x                            0.141 / 0.170 / 0.171   0.168 / 0.208
#   gain 3, 1.8-3.2x                            0.155 / 0.176 / 0.184   0.172 / 0.212 (0.213 at 1920)
# Each step is within the noise of 43 and 77 images; the gain helped at every size on the tune split, the scale
# moved the best size up to 1920, which the tune split picked (DRONE_POINTS). Then each further (two runs side by
# side, 2026-12-08, the same way), tune then held-out at 1280 / 1600 / 1920 (the larger scale: 1600 / 1920 / 2240):
#   gain 6, 1.8-3.2x (this recipe)              0.153 / 0.186 / 0.194   0.184 / 0.220 / 0.227
#   gain 3, 2.2-3.8x                            0.193 / 0.183 / 0.178   0.229 / 0.229 / 0.211 (at 1600-2240)
# The tune split scores the two alike at their best (0.194 at 1920, 0.193 at 1600); the gain kept the points the
# family had and moved each by about its noise, the same way on both splits; the larger scale moved the best size
# down to 1600. Not tried yet: both at once.
DRONE_SHARE = 0.75
DRONE_SCALE = (1.8, 3.2)
DRONE_TRAINING = replace(
    PARENT_TRAINING, epochs=26, lr=2e-4, warmup_epochs=0.5, loss=replace(PARENT_TRAINING.loss, l1_gain=6.0)
)

# The small specialist: the fine-tuned parent trained again at the scale a 192-224 pixel network sees a frame. The
# parent learnt most images at 0.4-1.25x of a 640-pixel frame (256-800 pixels on their longest side; SOURCES), so
# at 224 it runs below the smallest scale it was taught; here the scales are halved (128-400), centred on those
# inputs. On family-tune (mAP50-95, `edged zoo eval` of the checkpoint exported beside the zoo, exploratory,
# 2026-12-07): 10 epochs scored 0.433 at 192 and 0.456 at 224, 20 epochs 0.437 and 0.473, the fine-tuned parent
# 0.415 and 0.442.
SMALL_SCALE = 0.5
SMALL_TRAINING = replace(
    PARENT_TRAINING, epochs=20, lr=2e-4, warmup_epochs=0.5, augment=replace(PARENT_TRAINING.augment, size=224)
)

CALIBRATION_BATCHES = 8  # batches of training crops the low-rank fit and the pruning read (128 images)

# Operating points. One fine-tuned network serves several input sizes (its file leaves the size free).
SIZE = 416
PARENT_ONNX, RELU_ONNX = "yolox-ft.onnx", "yolox-relu.onnx"  # the files the two any-size networks ship in
PARENT_ID = "yolox-ft-416"  # the fine-tuned parent every compressed variant is measured against
PARENT_POINTS = {f"yolox-ft-{size}": size for size in (416, 320, 256, 224, 192)}  # id -> input size
# The drone points: the drone specialist on the whole frame at 2x, 2.5x and 3x its size (a 640-pixel frame at 1280,
# 1600 and 1920); its 3-pixel-wide people are learnt at 1.8-3.2x. Chosen on drone-people-tune (person AP50 at 500
# detections, `edged zoo eval` of its checkpoint or file with the input size set, exploratory, 2026-12-06/08). For
# this file: 1920 0.194, 1600 0.186 at two-thirds of its cost, 1280 0.153 at under half. For the first specialist
# (learnt at 1.4-2.6x): 1600 0.149; 1920 0.138 at 1.7x the cost of 1600; 1280 0.125; 1120 0.111; 960 0.089; 2x2
# tiles of the frame at 640 (plus the frame) 0.110 at 1.3x the cost of 1280; 3x3 tiles at 416 0.105. The fine-tuned
# parent's own 2x2-tiled point, dominated by the specialist on drones and by yolox-ft-416 everywhere else, no longer
# ships; tiles (`input.tiles`) remain for cameras whose frames are much larger than the network's input.
DRONE_NETWORK = "yolox-drone"  # its file: one network, any size (the export leaves the size free)
DRONE_POINTS = {"yolox-drone-1280": 1280, "yolox-drone-1600": 1600, "yolox-drone-1920": 1920}
# The small specialist's points: the cheap end of the family, where the fine-tuned parent runs below the scales it
# learnt (SMALL_SCALE). Each is held to the parent's point at the same size: a specialist that does not beat the
# network it would replace is not worth its file.
SMALL_NETWORK = "yolox-small"
SMALL_POINTS = {"yolox-small-224": 224, "yolox-small-192": 192}
TRAIN_DATA = [s.name for s in SOURCES]
# The accuracy guard, on family-heldout, against the variant each was derived from (its provenance parent: int8 ->
# its float parent; the ReLU sibling -> the fine-tuned parent at the same input size; the others -> the fine-tuned
# parent). A variant past its guard is not shipped. int8 is held to an absolute drop, as `edged zoo build` holds it;
# the other compressions to the share of the parent's accuracy they keep. The ReLU swap plateaued at 0.79x of the
# parent on the tune split (0.41 vs 0.52; the held-out sets were not looked at), so its guard is 0.75x, and what
# derives from it carries that loss too; binary is the extreme small point: its guard only keeps it from shipping
# broken.


INT8_GUARD = Guard(max_drop=0.02)
GUARDS = {
    "yolox-relu-416": Guard(min_kept=0.75),
    "yolox-relu-320": Guard(min_kept=0.75),
    "yolox-relu-256": Guard(min_kept=0.75),
    "pruned25-416": Guard(min_kept=0.70),
    "pruned50-416": Guard(min_kept=0.60),
    "lowrank-416": Guard(min_kept=0.60),
    "binary-416": Guard(min_kept=0.30),
    "yolox-small-224": Guard(min_kept=1.0),
    "yolox-small-192": Guard(min_kept=1.0),
    "yolox-relu-416-int8": INT8_GUARD,
    "yolox-relu-320-int8": INT8_GUARD,
    "yolox-relu-256-int8": INT8_GUARD,
    "pruned25-416-int8": INT8_GUARD,  # for when a pruned sibling passes and gets one (INT8_PARENTS)
}
# An int8 variant ships only at <= this share of its float parent's p50 on the build machine (both on their fastest
# engine, one profile run): int8 exists to cost less, so one that is not clearly faster is not offered. The margin
# is the profile's noise, not a saving it must reach: with its ranges equalized the ReLU sibling's int8 loses
# nothing measurable (-0.004 and -0.002 mAP50-95 on family-heldout, MODEL_CARD.md), so any real saving is a free
# Pareto point for the governor. Issue 20 asks for <= 0.70x; where int8 reaches it depends on the CPU and its load:
# on a 2-vCPU Xeon (Ice Lake), where XNNPACK's float32 kernels are strong, the int8 file at 416 ran at 0.61x-0.77x
# its float TFLite over four profile runs of 2026-12-06 (README), on a 2-vCPU AMD EPYC (Zen 4) at 0.60x. The card
# and the report give each variant's ratio.
INT8_MAX_LATENCY_RATIO = 0.90


@dataclass
class BuildContext:
    shared: Path
    out: Path
    work: Path

    @property
    def eval_dir(self) -> Path:
        return self.work / "eval-sets"

    def stage_dir(self, name: str) -> Path:
        return self.work / name


def cache_for(ctx: BuildContext) -> tuple[TrainCache, str]:
    return load_or_build_cache(ctx.shared, REPO_ROOT, ctx.work / "cache")


def stage_data(ctx: BuildContext) -> None:
    materialise_eval_sets(ctx.shared, ctx.eval_dir)
    materialise_family_sets(ctx.shared, ctx.eval_dir)
    materialise_calibration_set(ctx.shared, ctx.eval_dir)
    teacher, _ = open_teacher(ctx.shared, REPO_ROOT)
    try:
        materialise_video_agreement_set(ctx.shared, ctx.eval_dir, teacher)
    finally:
        teacher.close()
    cache, teacher_sha = cache_for(ctx)
    summary: dict[str, dict[str, int]] = {}
    for source, boxes in zip(cache.sources, cache.boxes):
        entry = summary.setdefault(source, {"images": 0, "boxes": 0})
        entry["images"] += 1
        entry["boxes"] += len(boxes)
    (ctx.work / "cache-summary.json").write_text(json.dumps(summary, indent=2))
    print(f"data: {len(cache)} training images, teacher sha256 {teacher_sha[:12]}", flush=True)


def coco_parent(ctx: BuildContext) -> YoloxNano:
    """The COCO parent as a torch module, reduced to the family's classes (its scores for them unchanged)."""
    names = (ctx.shared / PARENT_LABELS).read_text(encoding="utf-8").splitlines()
    return from_onnx(ctx.shared / PARENT_FILE, names, LABELS)


def stage_parent(ctx: BuildContext) -> None:
    cache, _ = cache_for(ctx)
    torch.manual_seed(SEED)
    teacher = coco_parent(ctx)
    model = coco_parent(ctx).train()
    train(model, cache, PARENT_TRAINING, ctx.stage_dir("parent"), teacher=teacher, desc="parent")


def load_trained(ctx: BuildContext, stage: str, model: nn.Module) -> nn.Module:
    """`model` (the stage's architecture) with the weights the stage ended with."""
    done = ctx.stage_dir(stage) / "done.pt"
    if not done.exists():
        raise SystemExit(f"{done} is missing: run the {stage} stage first")
    model.load_state_dict(torch.load(done, weights_only=True))
    return model.eval()


def load_parent(ctx: BuildContext) -> YoloxNano:
    """The fine-tuned parent, its Focus stem as the one convolution it is equivalent to (what everything derived
    from it is built on and what is exported)."""
    if shipped := _shipped_instead(ctx, "parent", PARENT_ONNX):
        return from_family_onnx(shipped, YoloxNano(len(LABELS)).fuse_focus())
    model = load_trained(ctx, "parent", YoloxNano(len(LABELS)))
    assert isinstance(model, YoloxNano)
    return model.fuse_focus()


def _shipped_instead(ctx: BuildContext, stage: str, file: str) -> Path | None:
    """The exported file in --out, where the stage's checkpoint is not in --work (a fresh checkout: the work folder
    is not in git) but the file is: the same weights, read back to float precision (`from_family_onnx`), so one
    sibling can be rebuilt without first retraining the parent and the ReLU sibling."""
    if (ctx.stage_dir(stage) / "done.pt").exists() or not (ctx.out / file).exists():
        return None
    print(f"{stage}: no checkpoint in {ctx.work}; reading the shipped {file} back", flush=True)
    return ctx.out / file


def relu_blend(model: YoloxNano) -> YoloxNano:
    steps = RELU_RAMP_EPOCHS * RELU_TRAINING.samples_per_epoch // RELU_TRAINING.batch
    return with_activation(model, lambda: SiluToRelu(steps))


def load_relu(ctx: BuildContext) -> YoloxNano:
    if shipped := _shipped_instead(ctx, "relu", RELU_ONNX):
        return from_family_onnx(shipped, with_activation(YoloxNano(len(LABELS)).fuse_focus(), nn.ReLU))
    model = load_trained(ctx, "relu", relu_blend(YoloxNano(len(LABELS)).fuse_focus()))
    assert isinstance(model, YoloxNano)
    unfinished = [m.share for m in model.modules() if isinstance(m, SiluToRelu) and m.share < 1.0]
    if unfinished:
        raise SystemExit(f"the relu stage ended with SiLU still blended in ({min(unfinished):.2f} ReLU): rerun it")
    return with_activation(model, nn.ReLU)


def train_sibling(
    ctx: BuildContext,
    stage: str,
    model: nn.Module,
    cfg: TrainConfig,
    draw: Callable[[TrainCache], TrainCache] | None = None,
) -> nn.Module:
    """Fine-tune a sibling (compressed or specialised), distilled from the fine-tuned parent (on the classes `cfg`'s
    loss says); the module is saved whole (its architecture is what compression made of it). `draw`: how a
    specialist draws the training images instead (a source's share of them, their scale)."""
    cache, _ = cache_for(ctx)
    if draw is not None:
        cache = draw(cache)
    torch.manual_seed(SEED)
    trained = train(model, cache, cfg, ctx.stage_dir(stage), teacher=load_parent(ctx), desc=stage)
    torch.save(trained, ctx.stage_dir(stage) / "model.pt")
    return trained


def load_sibling(ctx: BuildContext, stage: str) -> nn.Module:
    path = ctx.stage_dir(stage) / "model.pt"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run the {stage.split('/')[0]} stage first")
    model: nn.Module = torch.load(path, weights_only=False)
    return model.eval()


def stage_relu(ctx: BuildContext) -> None:
    train_sibling(ctx, "relu", relu_blend(copy.deepcopy(load_parent(ctx))).train(), RELU_TRAINING)


def stage_prune(ctx: BuildContext) -> None:
    """The fine-tuned parent pruned, not the ReLU sibling: pruned from the sibling, a quarter of the channels
    left 0.66x of the parent's held-out mAP50-95 after distillation (the sibling itself keeps 0.76x), below the
    0.70x guard; the parent starts the pruned network 0.10 mAP50-95 higher."""
    parent = load_parent(ctx)
    summary = {}
    for ratio in PRUNE_RATIOS:
        stage = f"prune/ratio-{ratio}"
        pruned = prune_model(parent, ratio, training_crops(ctx, CALIBRATION_BATCHES))
        model = train_sibling(ctx, stage, pruned.train(), PRUNE_TRAINING)
        summary[stage] = {
            "ratio": ratio,
            "params": count_params(model),
            "macs": count_macs(model, (SIZE, SIZE)),
            "channels": channel_summary(model),
        }
    (ctx.stage_dir("prune") / "summary.json").write_text(json.dumps(summary, indent=2))


def training_crops(ctx: BuildContext, batches: int) -> Iterator[Tensor]:
    """Augmented training crops, as the trainer makes them (seeded): what a calibration sees."""
    cache, _ = cache_for(ctx)
    maker = BatchMaker(cache, replace(PARENT_TRAINING.augment, mosaic=0.0), np.random.default_rng(SEED))
    for anchors in maker.epoch_order(batches * PARENT_TRAINING.batch).reshape(batches, -1):
        yield maker.batch(anchors).images


def stage_lowrank(ctx: BuildContext) -> None:
    """The fine-tuned parent factorized, not the ReLU sibling: factorized from the sibling, which keeps 0.76x of
    the parent itself, it kept 0.50x after distillation (guard 0.60x); pruning showed the same (stage_prune)."""
    model = copy.deepcopy(load_parent(ctx))
    with torch.no_grad():
        layers = factorize(
            model,
            LOWRANK_RATIO,
            [*model.head.predictors(), model.first_layer()],
            training_crops(ctx, CALIBRATION_BATCHES),
        )
    ctx.stage_dir("lowrank").mkdir(parents=True, exist_ok=True)
    (ctx.stage_dir("lowrank") / "layers.json").write_text(json.dumps([asdict(f) for f in layers], indent=2))
    train_sibling(ctx, "lowrank", model.train(), LOWRANK_TRAINING)


def stage_binary(ctx: BuildContext) -> None:
    """The fine-tuned parent with 1-bit pointwise weights in BINARY_SCOPE, distilled from it; then its BatchNorms
    re-measured for the signs it ends with (`recalibrate_batchnorm`)."""
    crops = list(training_crops(ctx, CALIBRATION_BATCHES))
    model = binarize_with_batchnorm(copy.deepcopy(load_parent(ctx)), crops, pointwise_only=True, scope=BINARY_SCOPE)
    summary = {"scope": list(BINARY_SCOPE), "layers": len(binary_convs(model)), "share": binary_share(model)}
    print(f"binary: {summary['layers']} layers, {summary['share']:.0%} of the convolution weights 1-bit", flush=True)
    trained = train_sibling(ctx, "binary", model.train(), BINARY_TRAINING)
    (ctx.stage_dir("binary") / "summary.json").write_text(json.dumps(summary, indent=2))
    torch.save(recalibrate_batchnorm(trained, crops), ctx.stage_dir("binary") / "model.pt")


def stage_small(ctx: BuildContext) -> None:
    """Every source drawn at SMALL_SCALE; the fine-tuned parent teaches, at the same scale, only the classes an
    image has no labels for (PARENT_TRAINING's loss): at 224 pixels it is the weaker of the two."""
    draw = partial(TrainCache.at_scale, factor=SMALL_SCALE)
    train_sibling(ctx, "small", load_parent(ctx).train(), SMALL_TRAINING, draw)


def stage_drone(ctx: BuildContext) -> None:
    train_sibling(ctx, "drone", load_parent(ctx).train(), DRONE_TRAINING, drone_draw)


def drone_draw(cache: TrainCache) -> TrainCache:
    """Drone views make DRONE_SHARE of the samples, drawn at DRONE_SCALE: the drone points' scale, not the parent's."""
    return cache.focused("drone-people", DRONE_SHARE).rescaled("drone-people", DRONE_SCALE)


def stage_export(ctx: BuildContext) -> None:
    """ONNX files and zoo.yaml. The parent's and the ReLU sibling's files leave the input size free: one file,
    several operating points."""
    _, teacher_sha = cache_for(ctx)
    ctx.out.mkdir(parents=True, exist_ok=True)
    for path in [*ctx.out.glob("*-int8.onnx"), *ctx.out.glob("*.tflite"), *ctx.work.glob("int8-*.json")]:
        path.unlink()  # the derive stage's, made from the files written here
    parent_file = export_onnx(load_parent(ctx), ctx.out / PARENT_ONNX, (SIZE, SIZE), any_size=True)
    notes = (
        f"{PARENT_TRAINING.epochs} epochs fine-tuning of {Path(PARENT_FILE).name} (its class rows for the family's "
        "labels kept), real labels + its own soft labels on unlabelled classes"
    )
    entries = [
        Entry(vid, "fine-tuned+distilled", parent_file, size, _provenance(teacher_sha, notes))
        for vid, size in PARENT_POINTS.items()
    ]
    relu = load_relu(ctx)
    if (ctx.stage_dir("relu") / "done.pt").exists():  # from its checkpoint. A shipped file read back is stored
        relu = equalized(relu, ctx)  # equalized: a second pass would move its dense readers further (a new file)
    relu_file = export_onnx(relu, ctx.out / RELU_ONNX, (SIZE, SIZE), any_size=True)
    note = "SiLU -> ReLU, distilled from the parent"
    for size in RELU_SIZES:
        provenance_ = _provenance(teacher_sha, note, parent=f"yolox-ft-{size}")
        entries.append(Entry(f"yolox-relu-{size}", "fine-tuned+distilled", relu_file, size, provenance_))
    siblings = {
        **{
            f"pruned{round(r * 100)}-416": (
                "fine-tuned+distilled+pruned",
                f"prune/ratio-{r}",
                f"{r:.0%} of the fine-tuned parent's free channels removed (chosen and mean-compensated on "
                "activations), distilled",
            )
            for r in PRUNE_RATIOS
        },
        "lowrank-416": (
            "fine-tuned+distilled+low-rank",
            "lowrank",
            f"1x1 convolutions of the fine-tuned parent at rank {LOWRANK_RATIO} x min(in, out), fitted to their "
            "responses, distilled",
        ),
    }
    for vid, (technique, stage, note) in siblings.items():
        sibling = _sibling_file(ctx, stage, vid, lambda model, path: export_onnx(model, path, (SIZE, SIZE)))
        if sibling is not None:
            entries.append(Entry(vid, technique, sibling, SIZE, _provenance(teacher_sha, note, parent=PARENT_ID)))
    binary = _sibling_file(
        ctx, "binary", "binary-416", lambda model, path: export_binary_onnx(model, path, (SIZE, SIZE))[0]
    )
    note = "1-bit weights in the fine-tuned parent's deep pointwise layers, packed in the ONNX; STE + KD"
    if binary is not None:
        entries.append(
            Entry("binary-416", "fine-tuned+distilled+binary", binary, SIZE, _provenance(teacher_sha, note, PARENT_ID))
        )
    drone_note = (
        f"the fine-tuned parent trained {DRONE_TRAINING.epochs} epochs more, {DRONE_SHARE:.0%} of them on drone views"
    )
    entries += _specialist_entries(ctx, "drone", DRONE_NETWORK, DRONE_POINTS, _provenance(teacher_sha, drone_note))
    small_note = (
        f"the fine-tuned parent trained {SMALL_TRAINING.epochs} epochs more with every image at {SMALL_SCALE}x the "
        "scale it learnt, for inputs of 192-224 pixels"
    )
    entries += _specialist_entries(ctx, "small", SMALL_NETWORK, SMALL_POINTS, _provenance(teacher_sha, small_note))
    for entry in entries:
        if entry.file != relu_file:  # ONNX Runtime's int8 build reads it back: its quantizer wants float32 weights
            store_float16(entry.file)
    write_zoo(ctx.out, list(LABELS), entries, default=PARENT_ID)
    (ctx.out / "NOTICE").write_text(NOTICE, encoding="utf-8")
    for path in set(ctx.out.glob("*.onnx")) - {e.file for e in entries}:
        path.unlink()  # a variant this build no longer makes


def _specialist_entries(
    ctx: BuildContext, stage: str, network: str, points: dict[str, int], provenance_: Provenance
) -> list[Entry]:
    """A specialist's one any-size file at each of its operating points. Each point's provenance parent is the
    fine-tuned parent's point at the same input size where there is one (the small specialist: what it would
    replace), else the fine-tuned parent at its own size (the drone points)."""
    file = _sibling_file(ctx, stage, network, lambda m, path: export_onnx(m, path, (SIZE, SIZE), any_size=True))
    if file is None:
        return []
    return [
        Entry(vid, "fine-tuned+distilled", file, size, provenance_.model_copy(update={"parent": _ft_point(size)}))
        for vid, size in points.items()
    ]


def _ft_point(size: int) -> str:
    return next((vid for vid, at in PARENT_POINTS.items() if at == size), PARENT_ID)


def store_float16(path: Path) -> None:
    """The file's convolution weights in float16 (edged.factory.onnx_graph.store_weights_float16): half its size."""
    from edged.factory.onnx_graph import load_onnx, onnx_module, store_weights_float16

    model = load_onnx(path)
    if store_weights_float16(model):
        onnx_module().save(model, str(path))


def equalized(model: YoloxNano, ctx: BuildContext) -> YoloxNano:
    """The ReLU sibling with its channel ranges equalized across layers (edged.factory.equalize) on training crops:
    the same function, stored so that every int8 build of it (ONNX Runtime's, PT2E's) starts from activations one
    8-bit scale serves."""
    equalize_ranges(model, model.equalization_chains(), torch.cat(list(training_crops(ctx, CALIBRATION_BATCHES))))
    return model


def _sibling_file(ctx: BuildContext, stage: str, vid: str, export: Callable[[nn.Module, Path], Path]) -> Path | None:
    """The sibling exported from its stage's model, or, where --work has none (a fresh checkout) but --out has the
    file, the file already shipped: a sibling is rebuilt by rerunning its stage, not by every export. None where
    there is neither (its guard turned it away in an earlier build and this work folder never ran its stage)."""
    path = ctx.out / f"{vid}.onnx"
    if not (ctx.stage_dir(stage) / "model.pt").exists():
        if path.exists():
            print(f"export: no {stage} model in {ctx.work}; keeping the shipped {path.name}", flush=True)
            return path
        print(f"export: no {stage} model in {ctx.work} and no shipped {path.name}: {vid} left out", flush=True)
        return None
    return export(copy.deepcopy(load_sibling(ctx, stage)), path)


def stage_derive(ctx: BuildContext) -> None:
    """The int8 siblings through `edged zoo build` (ONNX Runtime QDQ) and the TFLite files, all from the ONNX files
    the export stage wrote: what ships is their one source, and this stage can be rerun from a checkout alone."""
    from edged.zoo.manifest import load_zoo
    from edged.zoo.manifest_writer import save_zoo

    zoo = load_zoo(ctx.out)  # what an earlier derive added goes: the int8 variants, every TFLite alternate
    exported = [v.model_copy(update={"alternates": []}) for v in zoo.variants if "int8" not in v.technique]
    save_zoo(zoo, zoo.manifest.model_copy(update={"variants": exported}))
    for path in [*ctx.out.glob("*-int8.onnx"), *ctx.out.glob("*.tflite"), *ctx.work.glob("int8-*.json")]:
        path.unlink()
    for source in [vid for vid in INT8_PARENTS if vid in {v.id for v in zoo.variants}]:  # parents shipped
        report = run_edged(
            "zoo", "build", "--zoo", str(ctx.out), "--variant", source, "--technique", "int8",
            "--calib", str(ctx.eval_dir / "calibration"), "--eval", str(ctx.eval_dir / "family-heldout"),
            "--out", str(ctx.out), "--seed", str(SEED), "--ops", "all", "--float-first-conv", "yes", "--json",
            capture_json=True, refusal_ok=True,
        )  # fmt: skip
        (ctx.work / f"int8-{source}.json").write_text(json.dumps(report, indent=2))
    export_tflite_alternates(ctx)


def export_tflite_alternates(ctx: BuildContext) -> None:
    """.tflite files beside some ONNX ones (float, and int8 calibrated on the int8 builds' own images). Each ONNX
    source is read back into torch (and must agree with its file to float precision); each TFLite is held to
    that module's outputs on real images (edged.factory.tflite's tolerances): a float file past its tolerance stops
    the build, an int8 one is refused and left out."""
    from edged.errors import MissingExtraError
    from edged.factory.tflite import FLOAT16_TOLERANCE, INT8_TOLERANCE, Finetune, export_tflite, require_agreement
    from edged.zoo.manifest import load_zoo

    try:
        import litert_torch  # noqa: F401
    except ImportError:
        print(f"export: no TFLite files ({MissingExtraError('litert-torch', 'build', 'TFLite export')})", flush=True)
        return
    zoo = load_zoo(ctx.out)
    agreement, alternates = {}, {}
    for vid, source in {**TFLITE_FLOAT, **TFLITE_INT8}.items():
        if vid not in {v.id for v in zoo.variants}:
            continue  # e.g. an int8 sibling its build refused
        int8 = vid in TFLITE_INT8
        size = zoo.variant(vid).input.size[0]
        probe = check_images(ctx, size)
        model = from_exported(ctx.out / source, probe)
        calibration = calibration_tensors(ctx, CALIBRATION_IMAGES, 8, size) if int8 else None
        path = export_tflite(
            model, ctx.out / f"{vid}.tflite", (size, size), calibration, Finetune(seed=SEED), float16_weights=True
        )
        try:
            check = require_agreement(model, path, "tflite", probe, INT8_TOLERANCE if int8 else FLOAT16_TOLERANCE)
        except ModelError as exc:
            if not int8:
                raise SystemExit(f"the float TFLite export is broken: {exc}") from None
            print(f"export: refused {path.name}: {exc}", flush=True)  # int8 may round past its tolerance: not kept
            path.unlink()
            agreement[vid] = {"refused": str(exc)}
            continue
        agreement[vid] = asdict(check)
        alternates[vid] = path
    (ctx.work / "tflite-agreement.json").write_text(json.dumps(agreement, indent=2))
    add_alternates(zoo, alternates)


def from_exported(path: Path, probe: Tensor) -> nn.Module:
    """The family member exported to `path` (the fine-tuned parent's file, or the ReLU sibling's), back as a torch
    module, proven equal to the file on `probe`."""
    from edged.factory.tflite import Tolerance, require_agreement

    template = YoloxNano(len(LABELS)).fuse_focus()
    if path.name == RELU_ONNX:
        template = with_activation(template, nn.ReLU)
    model = from_family_onnx(path, template)
    try:
        require_agreement(model, path, "onnx", probe, Tolerance(min_cells=10, max_box_px=0.01, max_score=1e-4))
    except ModelError as exc:
        raise SystemExit(f"read back into torch, the file disagrees with itself: {exc}") from None
    return model


def add_alternates(zoo: Any, files: dict[str, Path]) -> None:
    from edged.zoo.manifest import ModelFile, sha256_of
    from edged.zoo.manifest_writer import replace_variant, save_zoo

    manifest = zoo.manifest
    for vid, path in files.items():
        variant = zoo.variant(vid)
        extra = ModelFile(format="tflite", file=path.name, sha256=sha256_of(path))
        manifest = replace_variant(manifest, variant.model_copy(update={"alternates": [extra]}))
    save_zoo(zoo, manifest)


def check_images(ctx: BuildContext, size: int) -> Tensor:
    """Real images an export is held to its source on: tune images (not the calibration ones), spread over the
    sources the tune split is sorted by."""
    files = sorted((ctx.eval_dir / "family-tune" / "images").iterdir())
    files = files[:: max(1, len(files) // CHECK_IMAGES)][:CHECK_IMAGES]
    return torch.cat(list(image_tensors(files, len(files), size)))


def calibration_tensors(ctx: BuildContext, count: int, batch: int, size: int = SIZE) -> Iterator[Tensor]:
    """The calibration folder's images (the int8 builds' own), pre-processed as the variants' manifest says."""
    return image_tensors(sorted((ctx.eval_dir / "calibration").iterdir())[:count], batch, size)


def image_tensors(files: list[Path], batch: int, size: int) -> Iterator[Tensor]:
    """`files` pre-processed as the variants' manifest says, in batches."""
    from edged.factory.train.zoo_writer import input_spec
    from edged.sources import read_image
    from edged.vision.preprocess import Preprocessor

    preprocess = Preprocessor(input_spec(size))
    for start in range(0, len(files), batch):
        tensors = [preprocess(read_image(f))[0] for f in files[start : start + batch]]
        yield torch.from_numpy(np.concatenate(tensors))


# int8 of the ReLU sibling (ONNX Runtime, --ops all: int8 from the first convolution's output to the decoding).
# The convolution on the pixels stays float: in int8 (3 input channels) the whole net ran slower on the 2-vCPU
# Xeon (`edged zoo build ... --float-first-conv no --force`, then `edged zoo profile`: exploratory, not recorded).
# The pruned siblings have none: they are pruned from the SiLU parent, and SiLU int8 loses too much (TFLITE_INT8).
INT8_PARENTS = ("yolox-relu-416", "yolox-relu-320", "yolox-relu-256")
RELU_SIZES = (416, 320, 256)
# TFLite forms shipped beside the ONNX (LiteRT + XNNPACK: what phones and Pis run best). A TFLite file has one input
# size, at 2.1 MB each in float (float16 weights): the best variant, the small specialist at 192 (the cheap end,
# where a third of the best one's cost is), and the ReLU sibling at 416, the float parent of an int8 form (an int8
# variant is measured against its parent on the parent's fastest engine). The other sizes can be exported the same
# way (edged.factory.tflite) but would push model_zoo/ past its 25 MB budget. The small specialist at 224 had one in
# the first build with it (2026-12-07, 2-vCPU AMD EPYC; that build's card was not committed): 2.48 ms against 1.92
# at 192 for 0.357 against 0.353 family-heldout mAP50-95, and the zoo at 25.1 MB. The ReLU sibling at 256 had one in
# a build of 2026-12-06 (3.28 ms on LiteRT, its int8 form 2.29 ms, 0.70x, in the same profile run on a 2-vCPU Xeon,
# Ice Lake): its own int8 form dominates it wherever LiteRT runs, so the 2.1 MB went to the low-rank sibling.
TFLITE_FLOAT = {"yolox-ft-416": PARENT_ONNX, "yolox-small-192": f"{SMALL_NETWORK}.onnx", "yolox-relu-416": RELU_ONNX}
# int8 in LiteRT of the ReLU sibling, its channel ranges equalized first (edged.factory.equalize; without that the
# file at 416 lost 0.028 mAP50-95 on family-heldout and was not shipped). SiLU int8 was tried: the fine-tuned parent
# at 256 lost 0.10 mAP50-95 on the tune split (exploratory run, 2026-12-06), and equalization needs a ReLU.
TFLITE_INT8 = {"yolox-relu-416-int8": RELU_ONNX, "yolox-relu-256-int8": RELU_ONNX}
CALIBRATION_IMAGES = 128  # the int8 builds' calibration folder, all of it, for the TFLite int8 files
CHECK_IMAGES = 16  # family-tune images each TFLite file is held to its source on


NOTICE = """\
edged-aerial-road model family
Copyright 2026 the edged authors. Licensed under the Apache License, Version 2.0 (see LICENSE at the top of edged).

Every model file in this folder is a derivative work of YOLOX-nano:
  YOLOX, Copyright (c) 2021-2022 Megvii Inc. All rights reserved.
  Licensed under the Apache License, Version 2.0 (https://github.com/Megvii-BaseDetection/YOLOX).
The weights were changed by edged's factory (python -m edged.factory.train.family): fine-tuned, distilled, pruned,
factorized, binarized and quantized; MODEL_CARD.md and zoo.yaml say how, with the parent's sha256.

Fine-tuning data: drone-people (Roboflow Universe "resq/tiny-people-detection-rpi", CC BY 4.0), highway (Roboflow
Universe "universitas-tidar/highway-object-detection", CC BY 4.0), COCO train2017 images (annotations CC BY 4.0,
images under Flickr terms), OpenCV sample video vtest.avi (BSD), intel-iot-devkit sample videos (CC BY 4.0),
street photos from Detectron (Apache-2.0) and jetson-inference (MIT) samples.
"""


def _provenance(teacher_sha: str, notes: str, parent: str | None = None) -> Provenance:
    return provenance(
        COMMAND,
        list(TRAIN_DATA),
        SEED,
        teacher_sha256=teacher_sha,
        parent=parent,
        notes=notes,
        license=PARENT_LICENSE,
    )


def stage_measure(ctx: BuildContext) -> None:
    from edged.factory.train.measure import measure_family

    measure_family(ctx, COMMAND)


def stage_card(ctx: BuildContext) -> None:
    from edged.factory.train.measure import rewrite_card

    rewrite_card(ctx, COMMAND)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "model_zoo", help="where zoo.yaml and models go")
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared", help="models and data")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "out" / "zoo-build", help="checkpoints, caches")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {', '.join(STAGES)}")
    args = parser.parse_args(argv)
    ctx = BuildContext(args.shared.resolve(), args.out.resolve(), args.work.resolve())
    wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        parser.error(f"unknown stages: {', '.join(unknown)} (known: {', '.join(STAGES)})")
    missing = [
        rel for rel in (PARENT_FILE, PARENT_LABELS, *(s.path for s in SOURCES)) if not (ctx.shared / rel).exists()
    ]
    if missing:
        parser.error(
            f"--shared {ctx.shared}: missing {', '.join(missing)} (the COCO parent and the training data; point "
            "--shared at the shared folder, ../shared by default)"
        )
    started = time.perf_counter()
    for stage in STAGES:
        if stage in wanted:
            stage_started = time.perf_counter()
            STAGE_FUNCTIONS[stage](ctx)
            _record_duration(ctx, stage, time.perf_counter() - stage_started)
    print(f"family build: {', '.join(wanted)} done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    return 0


def _record_duration(ctx: BuildContext, stage: str, seconds: float) -> None:
    path = ctx.work / "durations.json"
    durations = json.loads(path.read_text()) if path.exists() else {}
    durations[stage] = durations.get(stage, 0.0) + round(seconds, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(durations, indent=2))


STAGE_FUNCTIONS = {
    "data": stage_data,
    "parent": stage_parent,
    "relu": stage_relu,
    "prune": stage_prune,
    "lowrank": stage_lowrank,
    "binary": stage_binary,
    "small": stage_small,
    "drone": stage_drone,
    "export": stage_export,
    "derive": stage_derive,
    "measure": stage_measure,
    "card": stage_card,
}

if __name__ == "__main__":
    raise SystemExit(main())
