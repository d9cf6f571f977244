"""The training loop shared by every variant: AdamW, linear warm-up then cosine decay, an EMA of the weights,
a checkpoint every epoch (resumable), tqdm progress, and optional distillation from a frozen teacher model."""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edged.factory.train.augment import AugmentConfig, BatchMaker
from edged.factory.train.data import TrainCache
from edged.factory.train.loss import LossConfig, compute_loss
from edged.factory.train.student import anchor_grid


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    samples_per_epoch: int
    batch: int = 16
    lr: float = 3e-3
    final_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    ema_decay: float = 0.999
    ema_warmup_steps: int = 500
    seed: int = 0
    threads: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)


class ModelEma:
    """Exponential moving average of the weights (and BN statistics); what gets exported."""

    def __init__(self, model: nn.Module, decay: float, warmup_steps: int):
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.warmup_steps, self.updates = decay, warmup_steps, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = self.decay * (1 - math.exp(-self.updates / self.warmup_steps))
        live = model.state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(decay).add_(live[name].detach(), alpha=1 - decay)
            else:
                value.copy_(live[name])


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on BN and biases (1-D tensors): decaying them only hurts."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def learning_rate(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    floor = cfg.lr * cfg.final_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def train(
    model: nn.Module,
    cache: TrainCache,
    cfg: TrainConfig,
    workdir: Path,
    teacher: nn.Module | None = None,
    desc: str = "train",
) -> nn.Module:
    """Train (or resume) in `workdir`; return the EMA model. Checkpoint: workdir/last.pt; log: workdir/log.jsonl."""
    torch.set_num_threads(cfg.threads)
    workdir.mkdir(parents=True, exist_ok=True)
    rng = seed_everything(cfg.seed)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.99))
    ema = ModelEma(model, cfg.ema_decay, cfg.ema_warmup_steps)
    steps_per_epoch = cfg.samples_per_epoch // cfg.batch
    total, warmup = cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)
    start_epoch = _resume(workdir / "last.pt", model, ema, optimizer, rng)
    done = workdir / "done.pt"
    if done.exists():
        ema.model.load_state_dict(torch.load(done, weights_only=True))
        return ema.model
    maker = BatchMaker(cache, cfg.augment, rng)
    centres, strides = anchor_grid(cfg.augment.size, cfg.augment.size)
    if teacher is not None:
        teacher.eval()
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = maker.epoch_order(steps_per_epoch * cfg.batch).reshape(steps_per_epoch, cfg.batch)
        bar = tqdm(order, desc=f"{desc} {epoch + 1}/{cfg.epochs}", unit="batch", leave=False, mininterval=10.0)
        sums = np.zeros(4)
        started = time.perf_counter()
        for i, anchors in enumerate(bar):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(epoch * steps_per_epoch + i, total, warmup, cfg)
            batch = maker.batch(anchors)
            raw = model(batch.images)
            teacher_raw = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_raw = teacher(batch.images)
            parts = compute_loss(raw, centres, strides, batch, cfg.loss, teacher_raw)
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            ema.update(model)
            sums += [float(parts.total), parts.cls, parts.box, parts.kd]
            bar.set_postfix(  # refresh=False: the bar redraws at its own interval, not once a batch into the log
                loss=f"{sums[0] / (i + 1):.3f}",
                cls=f"{sums[1] / (i + 1):.3f}",
                box=f"{sums[2] / (i + 1):.3f}",
                refresh=False,
            )
        record = {
            "epoch": epoch + 1,
            "loss": sums[0] / steps_per_epoch,
            "cls": sums[1] / steps_per_epoch,
            "box": sums[2] / steps_per_epoch,
            "kd": sums[3] / steps_per_epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - started, 1),
        }
        with (workdir / "log.jsonl").open("a") as log:
            log.write(json.dumps(record) + "\n")
        print(
            f"{desc} epoch {epoch + 1}/{cfg.epochs}: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items()),
            flush=True,
        )
        _checkpoint(workdir / "last.pt", epoch + 1, model, ema, optimizer, rng)
    torch.save(ema.model.state_dict(), done)
    (workdir / "config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))
    return ema.model


def _checkpoint(
    path: Path, epoch: int, model: nn.Module, ema: ModelEma, optimizer: torch.optim.Optimizer, rng: np.random.Generator
) -> None:
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "ema": ema.model.state_dict(),
        "ema_updates": ema.updates,
        "optimizer": optimizer.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _resume(
    path: Path, model: nn.Module, ema: ModelEma, optimizer: torch.optim.Optimizer, rng: np.random.Generator
) -> int:
    if not path.exists():
        return 0
    state = torch.load(path, weights_only=False)
    model.load_state_dict(state["model"])
    ema.model.load_state_dict(state["ema"])
    ema.updates = state["ema_updates"]
    optimizer.load_state_dict(state["optimizer"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    print(f"resumed from {path} at epoch {state['epoch']}", flush=True)
    return int(state["epoch"])
