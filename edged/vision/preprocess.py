"""Image -> input tensor, exactly as the manifest's `input` block describes, and the way back for boxes.

Per frame: one resize into a reused buffer, then one streaming pass per channel that converts, scales and lays the
pixels out straight into their window of the tensor, and constant fills for the letterbox bands. The naive way
(pad a fresh canvas, astype, multiply, subtract, transpose, copy) made five tensor-sized temporaries: 10-12 ms a
frame at 640x640 on the 2-core reference VM, most of what the model itself takes; this is 1.5-2 ms, half of it
the resize itself. The arithmetic per pixel is unchanged, so the tensors are bit-identical to the naive way's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from edged.vision.tiling import TileSpec


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
    tiles: TileSpec | None = Field(None, description="tiled inference: the frame cut into a grid of tiles")

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
        """(N, 4) float32 xyxy boxes in input pixels -> xyxy float32 in original pixels, clipped to the image.

        Three whole-array operations with the per-coordinate constants laid out as x, y, x, y, rather than two
        passes over strided x and y columns: the same float32 arithmetic, a third of the numpy calls.
        """
        pad, scale, size = self._xyxy
        out = np.subtract(boxes, pad, dtype=np.float32)
        np.divide(out, scale, out=out)
        return np.clip(out, 0, size, out=out)

    @cached_property
    def _xyxy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pad, scale and image size as float32 x, y, x, y: how numpy rounds these scalars against float32 boxes."""
        return (
            np.array([self.pad_x, self.pad_y] * 2, np.float32),
            np.array([self.scale_x, self.scale_y] * 2, np.float32),
            np.array([self.width, self.height] * 2, np.float32),
        )


@dataclass(frozen=True)
class _Placement:
    """Where frames of one size land in the network input; kept while the frame size stays (a camera's never changes).

    `resized` is the buffer the resize writes into; `window` is where those pixels go in the tensor's height and
    width, `bands` the letterbox padding around it (none when stretching).
    """

    image_size: tuple[int, int]  # height, width of the frames it is for
    resized: np.ndarray  # (h, w, 3) uint8
    window: tuple[slice, slice]
    bands: tuple[tuple[slice, slice], ...]
    transform: Transform


class Preprocessor:
    """Turns BGR frames into input tensors as the spec says.

    Reuses its resize buffer between calls, so one Preprocessor serves one thread at a time (as its detector does).
    The tensor it returns is the caller's own: a fresh allocation measured no slower than a reused buffer (glibc
    hands the same pages back frame after frame), and callers such as calibration keep every tensor.
    """

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        std = np.asarray(spec.std, dtype=np.float32)
        mean = np.asarray(spec.mean, dtype=np.float32)
        self._gain = (spec.scale / std).astype(np.float32)
        self._bias = (mean / std).astype(np.float32)
        self._scaled = bool(np.any(self._gain != 1))  # else the multiply is exact: skip it
        self._shifted = bool(np.any(self._bias != 0))  # else the subtraction is exact: skip it
        self._pad = np.empty(3, spec.dtype)  # the padding pixel as the tensor holds it, per model channel
        self._convert(np.full(3, spec.pad_value, np.uint8), self._pad, self._gain, self._bias)
        self._placement: _Placement | None = None

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, Transform]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got shape {image.shape} dtype {image.dtype}")
        placement = self._place(image.shape[0], image.shape[1])
        resized = placement.resized
        cv2.resize(image, (resized.shape[1], resized.shape[0]), dst=resized, interpolation=cv2.INTER_LINEAR)
        tensor = np.empty(self.spec.tensor_shape(), self.spec.dtype)
        self._fill(placement, tensor[0])
        return tensor, placement.transform

    def _place(self, h: int, w: int) -> _Placement:
        """The cached placement for h x w frames, or a new one for a new frame size."""
        if self._placement is not None and self._placement.image_size == (h, w):
            return self._placement
        tw, th = self.spec.size
        if self.spec.resize == "stretch":
            nw, nh, px, py = tw, th, 0, 0
            transform = Transform(tw / w, th / h, 0.0, 0.0, w, h)
        else:
            ratio = min(tw / w, th / h)
            nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
            px, py = ((tw - nw) // 2, (th - nh) // 2) if self.spec.letterbox_align == "center" else (0, 0)
            transform = Transform(nw / w, nh / h, float(px), float(py), w, h)
        rows, cols = slice(py, py + nh), slice(px, px + nw)
        bands = (
            (slice(0, py), slice(0, tw)),  # above
            (slice(py + nh, th), slice(0, tw)),  # below
            (rows, slice(0, px)),  # left
            (rows, slice(px + nw, tw)),  # right
        )
        nonempty = tuple((r, c) for r, c in bands if r.stop > r.start and c.stop > c.start)
        resized = np.empty((nh, nw, 3), np.uint8)
        self._placement = _Placement((h, w), resized, (rows, cols), nonempty, transform)
        return self._placement

    def _fill(self, placement: _Placement, tensor: np.ndarray) -> None:
        """The resized pixels (BGR) -> their window of one image of the tensor, in the spec's layout, colour order
        and dtype; the padding value into the bands around it.

        Channel by channel, from cv2.split's contiguous planes: each conversion is then one loop along whole rows,
        where the interleaved pixels would make numpy loop over 3 values at a time (5x slower, in NHWC). The colour
        swap is only the order in which the planes are read.
        """
        planes = cv2.split(placement.resized)
        for c, channel in enumerate(planes[::-1] if self.spec.color == "RGB" else planes):
            plane = tensor[c] if self.spec.layout == "NCHW" else tensor[..., c]
            for band in placement.bands:
                plane[band] = self._pad[c]
            self._convert(channel, plane[placement.window], self._gain[c], self._bias[c])

    def _convert(self, pixels: np.ndarray, dst: np.ndarray, gain: np.ndarray, bias: np.ndarray) -> None:
        """dst = pixels * gain - bias in float32, in place: the same two roundings as
        `pixels.astype(np.float32) * gain - bias`, without its temporaries. uint8 models take the pixels as they are.
        """
        if dst.dtype == np.uint8 or not self._scaled:
            np.copyto(dst, pixels)
        else:
            np.multiply(pixels, gain, out=dst)
        if dst.dtype != np.uint8 and self._shifted:
            np.subtract(dst, bias, out=dst)
