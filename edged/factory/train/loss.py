"""Detection loss (task-aligned assignment, quality-aware class targets, GIoU boxes) and distillation loss.

Assignment follows TOOD/YOLOv8 (score^a x IoU^b, top-k per object), with one change for tiny objects: a cell
is a candidate when its centre is inside the box OR within `radius` strides of the box centre (as YOLOX), because
a 3-pixel-wide person contains no stride-8 cell centre at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from edged.factory.train.augment import Batch
from edged.factory.train.student import decode_boxes

EPS = 1e-9


@dataclass(frozen=True)
class LossConfig:
    topk: int = 10
    alpha: float = 0.5  # weight of the class score in the alignment metric
    beta: float = 6.0  # weight of the IoU in the alignment metric
    radius: float = 2.5  # centre-sampling radius, in strides
    box_gain: float = 3.0
    kd_gain: float = 1.0
    kd_box_gain: float = 1.0
    # L1 on the raw box encoding (centre offset in strides, log size), YOLOX's own localisation term beside its IoU
    # loss; 0 leaves GIoU alone, whose optimum under doubt about a box's place is a larger box
    l1_gain: float = 0.0
    # distil only the classes an image has no labels for: a COCO teacher keeps what it knew (vehicles in the
    # drone views, everything in general scenes) without overruling real labels where it is blind (aerial people)
    kd_unlabelled_only: bool = False


@dataclass
class LossParts:
    total: Tensor
    cls: float
    box: float
    kd: float = 0.0


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    half = b[..., 2:4] / 2
    return torch.cat([b[..., :2] - half, b[..., :2] + half], dim=-1)


def encode_boxes(boxes: Tensor, centres: Tensor, strides: Tensor) -> Tensor:
    """xyxy boxes [B, N, 4] -> the raw (dx, dy, log w, log h) that `decode_boxes` turns back into them."""
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=EPS)
    xy = (boxes[..., :2] + boxes[..., 2:]) / 2
    return torch.cat([(xy - centres) / strides, torch.log(wh / strides)], dim=-1)


def pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of broadcastable xyxy boxes a [..., 4] and b [..., 4]."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter + EPS)


def giou_loss(pred: Tensor, target: Tensor) -> Tensor:
    iou = pairwise_iou(pred, target)
    hull = (torch.maximum(pred[..., 2:], target[..., 2:]) - torch.minimum(pred[..., :2], target[..., :2])).prod(-1)
    lt = torch.maximum(pred[..., :2], target[..., :2])
    rb = torch.minimum(pred[..., 2:], target[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = (pred[..., 2:] - pred[..., :2]).prod(-1) + (target[..., 2:] - target[..., :2]).prod(-1) - inter
    return 1 - iou + (hull - union) / (hull + EPS)


@dataclass
class Assignment:
    foreground: Tensor  # [B, N] bool
    gt_index: Tensor  # [B, N] long
    quality: Tensor  # [B, N] float: the class target of a foreground cell (normalised alignment x weight)


@torch.no_grad()
def assign(
    scores: Tensor, boxes: Tensor, centres: Tensor, strides: Tensor, batch: Batch, cfg: LossConfig
) -> Assignment:
    """scores [B, N, C] (sigmoid), boxes [B, N, 4] xyxy, centres [N, 2], strides [N, 1]."""
    gt, valid = batch.boxes, batch.weights > 0  # [B, G, 4], [B, G]
    b, g = valid.shape
    n = centres.shape[0]
    if g == 0 or not bool(valid.any()):
        empty = torch.zeros(b, n, dtype=torch.bool)
        return Assignment(empty, torch.zeros(b, n, dtype=torch.long), torch.zeros(b, n))
    cx, cy = centres[:, 0].view(1, 1, n), centres[:, 1].view(1, 1, n)
    x1, y1, x2, y2 = (gt[..., i : i + 1] for i in range(4))
    in_box = (cx > x1) & (cx < x2) & (cy > y1) & (cy < y2)
    reach = cfg.radius * strides.view(1, 1, n)
    in_centre = ((cx - (x1 + x2) / 2).abs() < reach) & ((cy - (y1 + y2) / 2).abs() < reach)
    candidate = (in_box | in_centre) & valid.unsqueeze(-1)  # [B, G, N]

    iou = pairwise_iou(gt.unsqueeze(2), boxes.unsqueeze(1)).clamp(min=0)  # [B, G, N]
    class_scores = scores.transpose(1, 2).gather(1, batch.classes.unsqueeze(-1).expand(b, g, n))
    metric = class_scores.pow(cfg.alpha) * iou.pow(cfg.beta)
    # a tie-breaker that prefers cells near the centre while every IoU is still ~0
    distance = ((cx - (x1 + x2) / 2) ** 2 + (cy - (y1 + y2) / 2) ** 2).sqrt() / strides.view(1, 1, n)
    ranked = torch.where(candidate, metric + 1e-6 * torch.exp(-distance), torch.full_like(metric, -1.0))
    top = ranked.topk(min(cfg.topk, n), dim=-1).indices
    chosen = torch.zeros_like(candidate).scatter_(-1, top, True) & candidate

    # a cell claimed by several objects goes to the one it overlaps most
    overlap = torch.where(chosen, iou, torch.full_like(iou, -1.0))
    gt_index = overlap.argmax(dim=1)  # [B, N]
    foreground = chosen.any(dim=1)
    owner = F.one_hot(gt_index, g).transpose(1, 2).bool() & chosen  # [B, G, N]

    aligned = metric * owner
    best_metric = aligned.amax(dim=-1, keepdim=True)
    best_iou = (iou * owner).amax(dim=-1, keepdim=True)
    normalised = (aligned / (best_metric + EPS) * best_iou).amax(dim=1)  # [B, N]
    weight = batch.weights.gather(1, gt_index)
    return Assignment(foreground, gt_index, normalised * weight * foreground)


def detection_loss(
    raw: Tensor, centres: Tensor, strides: Tensor, batch: Batch, cfg: LossConfig
) -> tuple[Tensor, float, float]:
    """raw [B, N, 4 + C] from the student. Returns (loss, class part, box part)."""
    logits = raw[..., 4:]
    boxes = cxcywh_to_xyxy(decode_boxes(raw[..., :4], centres, strides))
    found = assign(logits.detach().sigmoid(), boxes.detach(), centres, strides, batch, cfg)
    num_classes = logits.shape[-1]
    target = torch.zeros_like(logits)
    gt_classes = batch.classes.gather(1, found.gt_index)
    target.scatter_(-1, gt_classes.unsqueeze(-1), found.quality.unsqueeze(-1))
    target = target * found.foreground.unsqueeze(-1)
    mask = batch.supervised.unsqueeze(1)  # [B, 1, C]: no negatives for classes an image was not labelled for
    mask = torch.maximum(mask, F.one_hot(gt_classes, num_classes) * found.foreground.unsqueeze(-1))
    normaliser = max(float(found.foreground.sum()), 1.0)
    cls = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * mask).sum() / normaliser
    if bool(found.foreground.any()):
        gt_boxes = batch.boxes.gather(1, found.gt_index.unsqueeze(-1).expand(-1, -1, 4))
        box_weight = batch.weights.gather(1, found.gt_index)[found.foreground]
        per_box = giou_loss(boxes[found.foreground], gt_boxes[found.foreground])
        if cfg.l1_gain:
            encoded = encode_boxes(gt_boxes, centres, strides)[found.foreground]
            per_box = per_box + cfg.l1_gain / cfg.box_gain * (raw[..., :4][found.foreground] - encoded).abs().sum(-1)
        box = (per_box * box_weight).sum() / normaliser
    else:
        box = raw.sum() * 0.0
    return cls + cfg.box_gain * box, float(cls.detach()), float(box.detach())


def distillation_loss(raw: Tensor, teacher_raw: Tensor, batch: Batch, cfg: LossConfig) -> Tensor:
    """Match a teacher of the same layout: its class probabilities, and its boxes where it sees something."""
    soft = teacher_raw[..., 4:].sigmoid()
    mask = (1 - batch.supervised).unsqueeze(1) if cfg.kd_unlabelled_only else torch.ones_like(soft[:1, :1])
    confidence = (soft * mask).amax(dim=-1)  # [B, N]
    normaliser = confidence.sum().clamp(min=1.0)
    # BCE minus the teacher's own entropy: the Bernoulli KL, zero when matched (same gradient, readable logs)
    entropy = F.binary_cross_entropy(soft, soft, reduction="none")
    kl = F.binary_cross_entropy_with_logits(raw[..., 4:], soft, reduction="none") - entropy
    cls = (kl * mask).sum() / normaliser
    box = ((raw[..., :4] - teacher_raw[..., :4]).abs().sum(-1) * confidence).sum() / normaliser
    return cfg.kd_gain * cls + cfg.kd_box_gain * box


def compute_loss(
    raw: Tensor,
    centres: Tensor,
    strides: Tensor,
    batch: Batch,
    cfg: LossConfig,
    teacher_raw: Tensor | None = None,
) -> LossParts:
    total, cls, box = detection_loss(raw, centres, strides, batch, cfg)
    if teacher_raw is None:
        return LossParts(total, cls, box)
    kd = distillation_loss(raw, teacher_raw, batch, cfg)
    return LossParts(total + kd, cls, box, float(kd.detach()))
