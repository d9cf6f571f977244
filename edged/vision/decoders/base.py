"""What every decoder is: a pydantic spec (one arm of the manifest's `decoder` union) that builds a decoder."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from edged.vision.engines.base import Shape


@dataclass(frozen=True)
class Candidates:
    """Scored boxes before NMS, as xyxy in network-input pixels."""

    boxes: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int64

    @classmethod
    def empty(cls) -> Candidates:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def from_cxcywh(cls, cxcywh: np.ndarray, scores: np.ndarray, class_ids: np.ndarray) -> Candidates:
        """Centre and size -> corners, computed in the input's precision and stored as float32."""
        half = cxcywh[:, 2:4] / 2
        boxes = np.empty((len(cxcywh), 4), np.float32)
        np.subtract(cxcywh[:, :2], half, out=boxes[:, :2])
        np.add(cxcywh[:, :2], half, out=boxes[:, 2:])
        return cls(boxes, scores.astype(np.float32, copy=False), class_ids.astype(np.int64, copy=False))


class DecoderMismatch(ValueError):
    """The model's outputs do not have the layout this decoder reads."""


class Decoder(ABC):
    """Turns one model's raw outputs into candidates. Built once per model, so grids are precomputed."""

    def __init__(self, input_size: tuple[int, int], num_classes: int) -> None:
        self.width, self.height = input_size
        self.num_classes = num_classes

    @abstractmethod
    def check_outputs(self, shapes: list[Shape]) -> None:
        """Raise DecoderMismatch, naming what was expected, when the outputs cannot be decoded."""

    @abstractmethod
    def decode(self, outputs: list[np.ndarray], score_threshold: float) -> Candidates: ...


class DecoderSpec(BaseModel):
    """Base of the manifest's `decoder` block; subclasses add `type: Literal[...]` and their parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str

    def build(self, input_size: tuple[int, int], num_classes: int) -> Decoder:
        raise NotImplementedError


def grid_centers(width: int, height: int, stride: int, offset: float = 0.0) -> np.ndarray:
    """(H*W, 2) cell coordinates in units of cells, row-major, plus `offset`."""
    ys, xs = np.mgrid[0 : height // stride, 0 : width // stride]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) + offset


def best_class(class_scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of (N, nc) class scores whose best class reaches `threshold`: (row indices, best scores, class ids)."""
    scores, class_ids = class_maxima(class_scores)
    return confident_rows(class_scores, scores, class_ids, threshold)


def class_maxima(class_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Per row of (N, nc) class scores: the best score, and its class id where that comes at no extra cost.

    Numpy's speed here depends 3-10x on memory order. Classes strided (a transposed view, as for yolov8's
    [1, 4 + nc, N] output): max(axis=1) runs as elementwise maxima across whole class rows, while an argmax would
    walk every box with a stride, so the ids are left to `confident_rows`, for the few boxes that pass. Classes
    contiguous in each row (yolox, nanodet): argmax runs a tight loop per row where max pays numpy's reduction
    set-up per row, so the argmax goes first and the score is read at it.
    """
    if class_scores.strides[1] != class_scores.itemsize:
        return class_scores.max(axis=1), None
    class_ids = class_scores.argmax(axis=1)
    return class_scores[np.arange(len(class_ids)), class_ids], class_ids


def confident_rows(
    class_scores: np.ndarray, scores: np.ndarray, class_ids: np.ndarray | None, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows whose `scores` (one per row, however the decoder forms them) reach `threshold`:
    (row indices, their scores, their class ids; taken from `class_ids`, or else the argmax of those rows only).

    Everything per box happens after this, on the survivors: at a live threshold, a few dozen boxes of thousands.
    """
    rows = np.flatnonzero(scores >= threshold)
    ids = class_scores[rows].argmax(axis=1) if class_ids is None else class_ids[rows]
    return rows, scores[rows], ids


def squeeze_batch(shape: Shape) -> Shape:
    return shape[1:] if len(shape) > 2 and shape[0] in (1, None) else shape


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))
