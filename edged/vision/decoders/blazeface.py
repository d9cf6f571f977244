"""BlazeFace (MediaPipe face detection, short and full range): a [1, N, 16] regressor output and a [1, N, 1]
logit output over SSD anchors. Anchors follow MediaPipe's SsdAnchorsCalculator with fixed anchor size:
consecutive layers with the same stride share one grid."""

from __future__ import annotations

from typing import Literal

import numpy as np

from edged.vision.decoders.base import (
    Candidates,
    Decoder,
    DecoderMismatch,
    DecoderSpec,
    grid_centers,
    sigmoid,
    squeeze_batch,
)
from edged.vision.engines.base import Shape


class BlazefaceSpec(DecoderSpec):
    """Defaults are the short-range model (128x128); full range is strides [4], interpolated_scale 0."""

    type: Literal["blazeface"]
    strides: tuple[int, ...] = (8, 16, 16, 16)
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0
    anchor_offset: float = 0.5

    def build(self, input_size: tuple[int, int], num_classes: int) -> Decoder:
        return BlazefaceDecoder(self, input_size, num_classes)


class BlazefaceDecoder(Decoder):
    def __init__(self, spec: BlazefaceSpec, input_size: tuple[int, int], num_classes: int) -> None:
        super().__init__(input_size, num_classes)
        self.anchors = _anchors(spec, self.width, self.height)  # (N, 2) centres in input pixels
        self._regressor, self._logits = 0, 1

    def check_outputs(self, shapes: list[Shape]) -> None:
        if self.num_classes != 1:
            raise DecoderMismatch(f"blazeface detects one class (face); the manifest gives {self.num_classes} labels")
        flat = [squeeze_batch(s) for s in shapes]
        n = len(self.anchors)
        reg = [i for i, s in enumerate(flat) if len(s) == 2 and s[0] == n and (s[1] or 0) >= 4 and s[1] != 1]
        logit = [i for i, s in enumerate(flat) if s == (n, 1)]
        if len(reg) != 1 or len(logit) != 1:
            raise DecoderMismatch(
                f"blazeface expects a [1, {n}, 16] regressor and a [1, {n}, 1] score output for its {n} anchors; "
                f"the model gives {[list(s) for s in shapes]}"
            )
        self._regressor, self._logits = reg[0], logit[0]

    def decode(self, outputs: list[np.ndarray], score_threshold: float) -> Candidates:
        scores = sigmoid(outputs[self._logits].reshape(-1))
        keep = scores >= score_threshold
        raw = outputs[self._regressor].reshape(len(self.anchors), -1)[keep]
        cxcywh = np.concatenate([self.anchors[keep] + raw[:, :2], raw[:, 2:4]], axis=1)
        return Candidates.from_cxcywh(cxcywh, scores[keep], np.zeros(int(keep.sum()), np.int64))


def _anchors(spec: BlazefaceSpec, width: int, height: int) -> np.ndarray:
    per_layer = len(spec.aspect_ratios) + (1 if spec.interpolated_scale_aspect_ratio > 0 else 0)
    anchors = []
    i = 0
    while i < len(spec.strides):
        stride, count = spec.strides[i], 0
        while i < len(spec.strides) and spec.strides[i] == stride:
            count += per_layer
            i += 1
        fw, fh = -(-width // stride), -(-height // stride)
        centers = grid_centers(fw * stride, fh * stride, stride, spec.anchor_offset)
        centers = centers / np.array([fw, fh], np.float32) * np.array([width, height], np.float32)
        anchors.append(np.repeat(centers, count, axis=0))
    return np.concatenate(anchors)
