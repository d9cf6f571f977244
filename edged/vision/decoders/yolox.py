"""YOLOX: one [1, N, 5 + nc] output; rows are (dx, dy, log w, log h, obj, classes...) over strides 8/16/32."""

from __future__ import annotations

from typing import Literal

import numpy as np

from edged.vision.decoders.base import (
    Candidates,
    Decoder,
    DecoderMismatch,
    DecoderSpec,
    class_maxima,
    confident_rows,
    grid_centers,
    squeeze_batch,
)
from edged.vision.engines.base import Shape


class YoloxSpec(DecoderSpec):
    type: Literal["yolox"]
    strides: tuple[int, ...] = (8, 16, 32)
    decoded: bool = False  # True for exports made with decode_in_inference (boxes already in pixels)

    def build(self, input_size: tuple[int, int], num_classes: int) -> Decoder:
        return YoloxDecoder(self, input_size, num_classes)


class YoloxDecoder(Decoder):
    def __init__(self, spec: YoloxSpec, input_size: tuple[int, int], num_classes: int) -> None:
        super().__init__(input_size, num_classes)
        self.decoded = spec.decoded
        grids = [grid_centers(self.width, self.height, s) for s in spec.strides]
        self.grid = np.concatenate(grids)
        self.stride = np.concatenate([np.full((len(g), 1), s, np.float32) for g, s in zip(grids, spec.strides)])

    def check_outputs(self, shapes: list[Shape]) -> None:
        shape = squeeze_batch(shapes[0]) if shapes else ()
        if len(shapes) != 1 or shape != (len(self.grid), 5 + self.num_classes):
            raise DecoderMismatch(
                f"yolox expects one output of shape [1, {len(self.grid)}, {5 + self.num_classes}] "
                f"({self.num_classes} labels), the model gives {[list(s) for s in shapes]}"
            )

    def decode(self, outputs: list[np.ndarray], score_threshold: float) -> Candidates:
        pred = outputs[0].reshape(-1, 5 + self.num_classes)
        class_score, class_ids = class_maxima(pred[:, 5:])
        rows, scores, class_ids = confident_rows(pred[:, 5:], pred[:, 4] * class_score, class_ids, score_threshold)
        pred = pred[rows]
        if self.decoded:
            return Candidates.from_cxcywh(pred[:, :4], scores, class_ids)
        stride, grid = self.stride[rows], self.grid[rows]
        cxcy = (pred[:, :2] + grid) * stride
        wh = np.exp(np.minimum(pred[:, 2:4], 10.0)) * stride
        return Candidates.from_cxcywh(np.concatenate([cxcy, wh], axis=1), scores, class_ids)
