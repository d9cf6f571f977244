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
        self.grid = np.concatenate(self.grids)  # every stride's cells in output order, as decode reads them
        self.stride = np.concatenate([np.full((len(g), 1), s, np.float32) for g, s in zip(self.grids, self.strides)])
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
        """All strides in one pass over their concatenated cells: a dozen numpy calls a frame, not a dozen per
        stride (each costs microseconds, whatever its size, and most cells score nothing)."""
        cls, obj, bbox = (self._all_strides(outputs, kind) for kind in range(3))
        scores = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
        rows = np.flatnonzero(scores >= score_threshold)
        bbox, stride = bbox[rows], self.stride[rows]
        cxcy = (self.grid[rows] + bbox[:, :2]) * stride
        wh = np.exp(np.minimum(bbox[:, 2:], 10.0)) * stride
        return Candidates.from_cxcywh(np.concatenate([cxcy, wh], axis=1), scores[rows], np.zeros(len(rows), np.int64))

    def _all_strides(self, outputs: list[np.ndarray], kind: int) -> np.ndarray:
        """One kind of output (0 cls, 1 obj, 2 bbox) of every stride, as (cells, values), in stride order."""
        return np.concatenate([outputs[o[kind]].reshape(len(g), -1) for o, g in zip(self._order, self.grids)])
