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

    def objects(self, labels: list[str]) -> list[DetectedObject]:
        scale = np.array([self.width, self.height, self.width, self.height], np.float32)
        normalised = np.clip(self.boxes / scale, 0.0, 1.0)
        return [
            DetectedObject(
                label=labels[int(c)],
                class_id=int(c),
                score=round(float(s), 4),
                box=(
                    round(float(b[0]), 5),
                    round(float(b[1]), 5),
                    round(float(b[2]), 5),
                    round(float(b[3]), 5),
                ),
            )
            for b, s, c in zip(normalised, self.scores, self.class_ids)
        ]
