"""Tiled inference: a frame cut into overlapping tiles, each detected at the network's full input size, merged.

A person 3 pixels wide in a 640-pixel drone frame is below what any stride-8 detector resolves; in a 2x2 grid each
tile reaches the network at about twice the scale, so the same person is 6 pixels wide. The cost is one inference
per tile (plus one for the whole frame), which `edged zoo profile` measures like any variant's.

Merging: a box that touches an edge where its tile was cut from the frame is a truncated object. When the whole
frame is detected as well, such boxes are dropped: an object smaller than the overlap lies whole in the
neighbouring tile, a larger one is seen whole by the full-frame pass. Then class-aware NMS over everything.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

EDGE_MARGIN_PX = 2.0  # a box side this close to a cut edge (in frame pixels) counts as truncated by it

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels


class TileSpec(BaseModel):
    """`input.tiles` in the manifest: `[2, 2]`, or `{grid: [2, 2], overlap: 0.2, full_frame: true}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grid: tuple[int, int] = Field(description="tiles across, tiles down")
    overlap: float = Field(0.2, ge=0.0, lt=0.5, description="least share of a tile's side shared with its neighbour")
    full_frame: bool = Field(True, description="also detect the whole frame (large objects cut by the tiles)")

    @model_validator(mode="before")
    @classmethod
    def _grid_shorthand(cls, v: Any) -> Any:
        return {"grid": v} if isinstance(v, list | tuple) else v

    @model_validator(mode="after")
    def _sane_grid(self) -> TileSpec:
        if not all(1 <= n <= 8 for n in self.grid) or self.grid == (1, 1):
            raise ValueError(f"grid must be 1..8 tiles each way and more than one tile, got {list(self.grid)}")
        return self

    @property
    def passes(self) -> int:
        """Inferences per frame."""
        return self.grid[0] * self.grid[1] + int(self.full_frame)


def tile_windows(width: int, height: int, spec: TileSpec) -> list[Window]:
    """Equal-sized windows covering the frame, neighbours sharing at least `overlap` of a tile, row by row.

    Equal sizes keep one pre-processing placement (and one resize buffer) for every tile of a frame."""
    cols, rows = spec.grid
    xs, tile_w = _spans(width, cols, spec.overlap)
    ys, tile_h = _spans(height, rows, spec.overlap)
    return [(x, y, x + tile_w, y + tile_h) for y in ys for x in xs]


def _spans(length: int, count: int, overlap: float) -> tuple[list[int], int]:
    if count == 1:
        return [0], length
    tile = min(length, math.ceil(length / (count - (count - 1) * overlap)))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)], tile


def truncated(boxes: np.ndarray, window: Window, width: int, height: int) -> np.ndarray:
    """Boolean mask of boxes (frame pixels) touching an edge of `window` that is a cut, not the frame's border."""
    x0, y0, x1, y1 = window
    margin = EDGE_MARGIN_PX
    cut = np.zeros(len(boxes), bool)
    if x0 > 0:
        cut |= boxes[:, 0] <= x0 + margin
    if y0 > 0:
        cut |= boxes[:, 1] <= y0 + margin
    if x1 < width:
        cut |= boxes[:, 2] >= x1 - margin
    if y1 < height:
        cut |= boxes[:, 3] >= y1 - margin
    return cut
