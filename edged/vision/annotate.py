"""Boxes drawn onto frames, for `edged detect --annotate` and the demo."""

from __future__ import annotations

import cv2
import numpy as np

from edged.vision.types import Detections


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour per class (golden-ratio hue steps)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 179)
    hsv = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(image: np.ndarray, found: Detections, labels: list[str], caption: str | None = None) -> np.ndarray:
    """A copy of `image` with every box, its label and score, and an optional caption line."""
    out = image.copy()
    thickness = max(1, round(min(out.shape[:2]) / 300))
    for box, score, class_id in zip(found.boxes, found.scores, found.class_ids):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        colour = class_colour(int(class_id))
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        _label(out, f"{labels[int(class_id)]} {float(score):.2f}", (x1, y1), colour)
    if caption:
        _label(out, caption, (0, 0), (40, 40, 40), below=True)
    return out


def _label(
    image: np.ndarray, text: str, corner: tuple[int, int], colour: tuple[int, int, int], below: bool = False
) -> None:
    font, scale, weight = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    (w, h), base = cv2.getTextSize(text, font, scale, weight)
    x, y = corner
    top = y if below or y - h - base < 0 else y - h - base
    cv2.rectangle(image, (x, top), (x + w + 2, top + h + base), colour, cv2.FILLED)
    text_colour = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
    cv2.putText(image, text, (x + 1, top + h), font, scale, text_colour, weight, cv2.LINE_AA)
