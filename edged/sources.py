"""Frame sources: where images come from (an image, a folder, a video file).

Each yields Frames with a monotonic index and a capture timestamp. A frame that cannot be read is reported once
and skipped; the source keeps going and counts it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edged.errors import SourceError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"})


@dataclass(frozen=True)
class Frame:
    index: int
    image: np.ndarray  # HxWx3 uint8 BGR
    timestamp: float  # capture time, seconds since the epoch
    name: str  # file name, or the source name with the frame number for video


class FileSource:
    """An image, a folder of images, or a video file: what `edged detect` reads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.skipped: list[str] = []  # "name: reason" for every unreadable item
        if not self.path.exists():
            raise SourceError(f"{self.path}: no such file or directory")
        if self.path.is_dir():
            self.kind = "folder"
            self._images = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._images:
                raise SourceError(f"{self.path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif self.path.suffix.lower() in VIDEO_SUFFIXES:
            self.kind = "video"
        else:
            self.kind = "image"
        self.fps = self._probe_fps() if self.kind == "video" else None

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "video":
            yield from self._video_frames()
        elif self.kind == "image":
            yield Frame(0, read_image(self.path), time.time(), self.path.name)
        else:
            yield from self._folder_frames()

    def _folder_frames(self) -> Iterator[Frame]:
        index = 0
        for path in self._images:
            try:
                image = read_image(path)
            except SourceError as exc:
                log.warning("skipped %s", exc)
                self.skipped.append(str(exc))
                continue
            yield Frame(index, image, time.time(), path.name)
            index += 1

    def _video_frames(self) -> Iterator[Frame]:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise SourceError(f"{self.path}: cannot open video (corrupt, or a codec OpenCV lacks)")
        index = 0
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                yield Frame(index, image, time.time(), f"{self.path.name}#{index}")
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise SourceError(f"{self.path}: video has no readable frames")

    def _probe_fps(self) -> float | None:
        capture = cv2.VideoCapture(str(self.path))
        fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
        capture.release()
        return fps if fps and fps > 0 else None


def read_image(path: Path) -> np.ndarray:
    """Read a colour image or raise SourceError naming the file (cv2.imread returns None silently)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        reason = "file not found" if not path.exists() else "not a readable image (corrupt or unsupported format)"
        raise SourceError(f"{path}: {reason}")
    return image
