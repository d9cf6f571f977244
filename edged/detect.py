"""`edged detect`: one-shot detection over an image, a folder or a video, as a stream of FrameReports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, Field

from edged.errors import SourceError
from edged.sources import FileFrames, Frame
from edged.vision.annotate import draw_detections
from edged.vision.detector import Detector
from edged.vision.types import DetectedObject


class FrameReport(BaseModel):
    """One line of `edged detect --json`."""

    frame: int = Field(description="0-based index of the frame in the source")
    source: str = Field(description="file name (video: name#frame)")
    variant: str
    latency_ms: float = Field(description="pre-processing + inference + decoding + NMS")
    width: int
    height: int
    objects: list[DetectedObject]


def detect_frames(
    source: FileFrames, detector: Detector, variant_id: str, annotate: Path | None = None
) -> Iterator[FrameReport]:
    """Run the detector over every frame; write annotated frames to `annotate` when given."""
    writer = AnnotationWriter(annotate, source) if annotate else None
    try:
        for frame in source:
            found = detector.detect(frame.image)
            report = FrameReport(
                frame=frame.index,
                source=frame.name,
                variant=variant_id,
                latency_ms=round(found.latency_ms, 2),
                width=found.width,
                height=found.height,
                objects=found.objects(detector.labels),
            )
            if writer:
                caption = f"{variant_id}  {found.latency_ms:.1f} ms  {len(report.objects)} objects"
                writer.write(frame, draw_detections(frame.image, found, detector.labels, caption))
            yield report
    finally:
        if writer:
            writer.close()


VIDEO_SUFFIXES = (".mp4", ".m4v", ".avi")


class AnnotationWriter:
    """An image for an image, a folder of images for a folder, a video for a video."""

    def __init__(self, out: Path, source: FileFrames) -> None:
        self.out = out
        self.kind = source.kind
        self.fps = source.fps or 10.0
        self._video: cv2.VideoWriter | None = None
        if self.kind == "video" and out.suffix.lower() not in VIDEO_SUFFIXES:
            raise SourceError(f"{out}: annotated video is written as {' or '.join(VIDEO_SUFFIXES)}")
        if self.kind == "image" and not cv2.haveImageWriter(str(out)):
            raise SourceError(f"{out}: OpenCV writes no image with extension '{out.suffix}' (use .jpg or .png)")
        if self.kind == "folder":
            out.mkdir(parents=True, exist_ok=True)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)

    def write(self, frame: Frame, image: np.ndarray) -> None:
        if self.kind == "video":
            self._write_video(image)
        else:
            target = self.out / frame.name if self.kind == "folder" else self.out
            if not cv2.imwrite(str(target), image):
                raise SourceError(f"{target}: cannot write the annotated image (unknown extension or unwritable)")

    def _write_video(self, image: np.ndarray) -> None:
        if self._video is None:
            fourcc = cv2.VideoWriter.fourcc(*("mp4v" if self.out.suffix.lower() in (".mp4", ".m4v") else "MJPG"))
            h, w = image.shape[:2]
            self._video = cv2.VideoWriter(str(self.out), fourcc, self.fps, (w, h))
            if not self._video.isOpened():
                raise SourceError(f"{self.out}: cannot write video (use .mp4 or .avi)")
        self._video.write(image)

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
