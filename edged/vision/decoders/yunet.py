"""YuNet (OpenCV's face detector, 2023 layout): per stride cls, obj [1, cells, 1], bbox [1, cells, 4] and
landmarks [1, cells, 10]. Score is sqrt(cls * obj); boxes are offsets from the cell corner and log sizes."""

from __future__ import annotations

from typing import Literal

import numpy as np

from edged.vision.decoders.base import (
    Candidates,
    Decoder,
    DecoderMismatch,
    DecoderSpec,
    grid_centers,
    squeeze_batch,
)
from edged.vision.engines.base import Shape


class YunetSpec(DecoderSpec):
    type: Literal["yunet"]
    strides: tuple[int, ...] = (8, 16, 32)

    def build(self, input_size: tuple[int, int], num_classes: int) -> Decoder:
        return YunetDecoder(self, input_size, num_classes)


class YunetDecoder(Decoder):
    def __init__(self, spec: YunetSpec, input_size: tuple[int, int], num_classes: int) -> None:
        super().__init__(input_size, num_classes)
        self.strides = spec.strides
        self.grids = [grid_centers(self.width, self.height, s) for s in spec.strides]
        self._order: list[tuple[int, int, int]] = []  # per stride: (cls, obj, bbox) output indices

    def check_outputs(self, shapes: list[Shape]) -> None:
        if self.num_classes != 1:
            raise DecoderMismatch(f"yunet detects one class (face); the manifest gives {self.num_classes} labels")
        flat = [squeeze_batch(s) for s in shapes]
        order = []
        for stride, grid in zip(self.strides, self.grids):
            cells = len(grid)
            scores = [i for i, s in enumerate(flat) if s == (cells, 1)]
            boxes = [i for i, s in enumerate(flat) if s == (cells, 4)]
            if len(scores) != 2 or len(boxes) != 1:
                raise DecoderMismatch(
                    f"yunet expects for stride {stride} two [1, {cells}, 1] outputs (cls, obj) and one "
                    f"[1, {cells}, 4] box output; the model gives {[list(s) for s in shapes]}"
                )
            order.append((scores[0], scores[1], boxes[0]))
        self._order = order

    def decode(self, outputs: list[np.ndarray], score_threshold: float) -> Candidates:
        rows, all_scores = [], []
        for (ci, oi, bi), stride, grid in zip(self._order, self.strides, self.grids):
            cls = np.clip(outputs[ci].reshape(-1), 0, 1)
            obj = np.clip(outputs[oi].reshape(-1), 0, 1)
            scores = np.sqrt(cls * obj)
            keep = scores >= score_threshold
            bbox = outputs[bi].reshape(-1, 4)[keep]
            cxcy = (grid[keep] + bbox[:, :2]) * stride
            wh = np.exp(np.minimum(bbox[:, 2:], 10.0)) * stride
            rows.append(np.concatenate([cxcy, wh], axis=1))
            all_scores.append(scores[keep])
        scores = np.concatenate(all_scores)
        return Candidates.from_cxcywh(np.concatenate(rows), scores, np.zeros(len(scores), np.int64))
