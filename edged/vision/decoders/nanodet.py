"""NanoDet (GFL head): per stride a [cells, nc] sigmoid score output and a [cells, 4 * (reg_max + 1)]
distance-distribution output. Outputs are matched by shape, not by name: the reference export's names are
shuffled (its `bbox_pred0` holds class scores)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from edged.vision.decoders.base import (
    Candidates,
    Decoder,
    DecoderMismatch,
    DecoderSpec,
    best_class,
    grid_centers,
    squeeze_batch,
)
from edged.vision.engines.base import Shape


class NanodetSpec(DecoderSpec):
    type: Literal["nanodet"]
    strides: tuple[int, ...] = (8, 16, 32)
    reg_max: int = 7

    def build(self, input_size: tuple[int, int], num_classes: int) -> Decoder:
        return NanodetDecoder(self, input_size, num_classes)


class NanodetDecoder(Decoder):
    def __init__(self, spec: NanodetSpec, input_size: tuple[int, int], num_classes: int) -> None:
        super().__init__(input_size, num_classes)
        self.strides = spec.strides
        self.bins = spec.reg_max + 1
        self.centers = [(grid_centers(self.width, self.height, s, 0.5) * s) for s in spec.strides]
        self._order: list[tuple[int, int]] = []  # per stride: (score output index, box output index)
        self._project = np.arange(self.bins, dtype=np.float32)

    def check_outputs(self, shapes: list[Shape]) -> None:
        flat = [squeeze_batch(s) for s in shapes]
        order = []
        for stride, centers in zip(self.strides, self.centers):
            cells = len(centers)
            score = [i for i, s in enumerate(flat) if s == (cells, self.num_classes)]
            box = [i for i, s in enumerate(flat) if s == (cells, 4 * self.bins) and i not in score]
            if not score or not box:
                raise DecoderMismatch(
                    f"nanodet expects for stride {stride} a [{cells}, {self.num_classes}] score output and a "
                    f"[{cells}, {4 * self.bins}] box output; the model gives {[list(s) for s in shapes]}"
                )
            order.append((score[0], box[-1]))
        self._order = order

    def decode(self, outputs: list[np.ndarray], score_threshold: float) -> Candidates:
        boxes, scores, ids = [], [], []
        for (si, bi), stride, centers in zip(self._order, self.strides, self.centers):
            rows, score, class_ids = best_class(outputs[si].reshape(len(centers), -1), score_threshold)
            if not len(rows):
                continue
            dist = outputs[bi].reshape(len(centers), 4, self.bins)[rows]
            dist = np.exp(dist - dist.max(axis=2, keepdims=True))
            dist = (dist / dist.sum(axis=2, keepdims=True)) @ self._project * stride  # (k, 4): l, t, r, b
            c = centers[rows]
            boxes.append(np.concatenate([c - dist[:, :2], c + dist[:, 2:]], axis=1))
            scores.append(score)
            ids.append(class_ids)
        if not boxes:
            return Candidates.empty()
        return Candidates(
            np.concatenate(boxes).astype(np.float32),
            np.concatenate(scores),
            np.concatenate(ids).astype(np.int64),
        )
