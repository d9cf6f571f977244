"""Image -> input tensor, exactly as the manifest's `input` block describes, and the way back for boxes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator


class InputSpec(BaseModel):
    """How a model wants its pixels.

    Normalisation is ``(pixel * scale - mean) / std`` per channel, with mean and std in the model's colour order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: tuple[int, int] = Field(description="network input width, height in pixels")
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    color: Literal["BGR", "RGB"] = "BGR"
    resize: Literal["stretch", "letterbox"] = "stretch"
    letterbox_align: Literal["center", "top-left"] = "center"
    pad_value: int = Field(114, ge=0, le=255)
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    dtype: Literal["float32", "uint8"] = "float32"

    @field_validator("size")
    @classmethod
    def _positive_size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) <= 0:
            raise ValueError("width and height must be positive")
        return v

    @field_validator("std")
    @classmethod
    def _nonzero_std(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s == 0 for s in v):
            raise ValueError("std must not contain 0")
        return v

    def tensor_shape(self) -> tuple[int, int, int, int]:
        w, h = self.size
        return (1, 3, h, w) if self.layout == "NCHW" else (1, h, w, 3)


@dataclass(frozen=True)
class Transform:
    """Maps network-input pixel coordinates back to the original image: orig = (inp - pad) / scale."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    width: int
    height: int

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """xyxy boxes in input pixels -> xyxy in original pixels, clipped to the image."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (boxes[:, 1::2] - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0, self.width, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.height, out=out[:, 1::2])
        return out


class Preprocessor:
    """Precomputes the per-channel affine so each frame costs one resize and one multiply-add."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        std = np.asarray(spec.std, dtype=np.float32)
        mean = np.asarray(spec.mean, dtype=np.float32)
        self._gain = (spec.scale / std).astype(np.float32)
        self._bias = (mean / std).astype(np.float32)
        self._identity = bool(np.all(self._gain == 1) and np.all(self._bias == 0))

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, Transform]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got shape {image.shape} dtype {image.dtype}")
        resized, transform = self._resize(image)
        if self.spec.color == "RGB":
            resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        if self.spec.dtype == "uint8":
            tensor = resized
        elif self._identity:
            tensor = resized.astype(np.float32)
        else:
            tensor = resized.astype(np.float32) * self._gain - self._bias
        tensor = tensor[np.newaxis]
        if self.spec.layout == "NCHW":
            tensor = tensor.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(tensor), transform

    def _resize(self, image: np.ndarray) -> tuple[np.ndarray, Transform]:
        h, w = image.shape[:2]
        tw, th = self.spec.size
        if self.spec.resize == "stretch":
            resized = cv2.resize(image, (tw, th), interpolation=cv2.INTER_LINEAR)
            return resized, Transform(tw / w, th / h, 0.0, 0.0, w, h)
        ratio = min(tw / w, th / h)
        nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
        if self.spec.letterbox_align == "center":
            px, py = (tw - nw) // 2, (th - nh) // 2
        else:
            px, py = 0, 0
        canvas = np.full((th, tw, 3), self.spec.pad_value, dtype=np.uint8)
        canvas[py : py + nh, px : px + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        return canvas, Transform(nw / w, nh / h, float(px), float(py), w, h)
