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
        half = cxcywh[:, 2:4] / 2
        boxes = np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)
        return cls(boxes.astype(np.float32), scores.astype(np.float32), class_ids.astype(np.int64))


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


def best_class(class_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the highest class score and its index."""
    ids = class_scores.argmax(axis=1)
    return class_scores[np.arange(len(ids)), ids], ids


def squeeze_batch(shape: Shape) -> Shape:
    return shape[1:] if len(shape) > 2 and shape[0] in (1, None) else shape


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))
