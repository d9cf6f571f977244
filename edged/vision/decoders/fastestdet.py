"""FastestDet: one grid output, (obj, dx, dy, w, h, classes...) per cell; channels first (ONNX) or last (TFLite).

Score is obj^0.6 * cls^0.4, offsets tanh, sizes sigmoid of the whole input, as in the reference runtime."""

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
    sigmoid,
)
from edged.vision.engines.base import Shape


class FastestdetSpec(DecoderSpec):
    type: Literal["fastestdet"]
    stride: int = 16

    def build(self, input_size: tuple[int, int], num_classes: int) -> Decoder:
        return FastestdetDecoder(self, input_size, num_classes)


class FastestdetDecoder(Decoder):
    def __init__(self, spec: FastestdetSpec, input_size: tuple[int, int], num_classes: int) -> None:
        super().__init__(input_size, num_classes)
        self.gw, self.gh = self.width // spec.stride, self.height // spec.stride
        ys, xs = np.mgrid[0 : self.gh, 0 : self.gw]
        self.cells = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
        self.channels_first = True

    def check_outputs(self, shapes: list[Shape]) -> None:
        c = 5 + self.num_classes
        if len(shapes) == 1 and shapes[0] == (1, c, self.gh, self.gw):
            self.channels_first = True
        elif len(shapes) == 1 and shapes[0] == (1, self.gh, self.gw, c):
            self.channels_first = False
        else:
            raise DecoderMismatch(
                f"fastestdet expects one output [1, {c}, {self.gh}, {self.gw}] or [1, {self.gh}, {self.gw}, {c}] "
                f"({self.num_classes} labels), the model gives {[list(s) for s in shapes]}"
            )

    def decode(self, outputs: list[np.ndarray], score_threshold: float) -> Candidates:
        out = outputs[0][0]
        pred = out.reshape(out.shape[0], -1).T if self.channels_first else out.reshape(-1, out.shape[-1])
        cls_score, class_ids = class_maxima(pred[:, 5:])
        scores = np.power(np.clip(pred[:, 0], 0, 1), 0.6) * np.power(np.clip(cls_score, 0, 1), 0.4)
        rows, scores, class_ids = confident_rows(pred[:, 5:], scores, class_ids, score_threshold)
        pred, cells = pred[rows], self.cells[rows]
        cx = (cells[:, 0] + np.tanh(pred[:, 1])) / self.gw * self.width
        cy = (cells[:, 1] + np.tanh(pred[:, 2])) / self.gh * self.height
        w = sigmoid(pred[:, 3]) * self.width
        h = sigmoid(pred[:, 4]) * self.height
        return Candidates.from_cxcywh(np.stack([cx, cy, w, h], axis=1), scores, class_ids)
