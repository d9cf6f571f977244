"""What a detector produces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import BaseModel, Field

Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class DetectedObject(BaseModel):
    """One object, as it appears in `edged detect` output and in MQTT detections."""

    label: str
    class_id: int = Field(ge=0)
    score: float = Field(ge=0.0, le=1.0)
    box: tuple[Unit, Unit, Unit, Unit] = Field(description="x1, y1, x2, y2, normalised to 0..1 of the image")
    track_id: int | None = Field(
        None, ge=1, description="the object's identity across frames (edged.tracking); null when not tracked"
    )


@dataclass(frozen=True)
class Detections:
    """One frame's detections in original-image pixels, plus how long the frame took."""

    boxes: np.ndarray  # (N, 4) xyxy float32, image pixels
    scores: np.ndarray  # (N,)
    class_ids: np.ndarray  # (N,)
    width: int
    height: int
    latency_ms: float  # pre-processing + inference + decoding + NMS
    inference_ms: float  # the engine alone

    def normalised_boxes(self) -> np.ndarray:
        """The boxes as fractions of the image (N, 4), clipped to 0..1: as messages carry them."""
        scale = np.array([self.width, self.height, self.width, self.height], np.float32)
        return np.clip(self.boxes / scale, 0.0, 1.0)

    def objects(self, labels: list[str], track_ids: list[int] | None = None) -> list[DetectedObject]:
        """The detections as messages carry them, with their track ids when given (one per detection, in order).
        Per frame on the inference thread, so the arrays become Python floats and ints in one `tolist()` each
        rather than a numpy scalar per value (half the time, same values)."""
        normalised = self.normalised_boxes().tolist()
        tracks: list[int | None] = list(track_ids) if track_ids is not None else [None] * len(normalised)
        return [
            DetectedObject(
                label=labels[c],
                class_id=c,
                score=round(s, 4),
                box=(round(b[0], 5), round(b[1], 5), round(b[2], 5), round(b[3], 5)),
                track_id=t,
            )
            for b, s, c, t in zip(
                normalised, np.asarray(self.scores).tolist(), np.asarray(self.class_ids).tolist(), tracks
            )
        ]
