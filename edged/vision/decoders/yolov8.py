"""Ultralytics YOLOv8/v11 export: [1, 4 + nc, N] (or transposed [1, N, 4 + nc]); cx, cy, w, h in input pixels,
class scores already sigmoid, no objectness."""

from __future__ import annotations

from typing import Literal

import numpy as np

from edged.vision.decoders.base import (
    Candidates,
    Decoder,
    DecoderMismatch,
    DecoderSpec,
    best_class,
    squeeze_batch,
)
from edged.vision.engines.base import Shape


class Yolov8Spec(DecoderSpec):
    type: Literal["yolov8"]

    def build(self, input_size: tuple[int, int], num_classes: int) -> Decoder:
        return Yolov8Decoder(input_size, num_classes)


class Yolov8Decoder(Decoder):
    transposed = False  # True when rows are boxes ([1, N, 4 + nc])

    def check_outputs(self, shapes: list[Shape]) -> None:
        c = 4 + self.num_classes
        shape = squeeze_batch(shapes[0]) if len(shapes) == 1 else ()
        if len(shape) == 2 and shape[0] == c:
            self.transposed = False
        elif len(shape) == 2 and shape[1] == c:
            self.transposed = True
        else:
            raise DecoderMismatch(
                f"yolov8 expects one output [1, {c}, N] ({self.num_classes} labels), "
                f"the model gives {[list(s) for s in shapes]}"
            )

    def decode(self, outputs: list[np.ndarray], score_threshold: float) -> Candidates:
        out = outputs[0][0]
        pred = out if self.transposed else out.T  # (N, 4 + nc); a view either way
        rows, scores, class_ids = best_class(pred[:, 4:], score_threshold)
        return Candidates.from_cxcywh(pred[rows, :4], scores, class_ids)
