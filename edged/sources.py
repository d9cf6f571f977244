"""Frame sources: where images come from.

Two ways in. `FileFrames` reads an image, a folder or a video once, for `edged detect`. `FrameProducer` is the
daemon's: a thread that reads a camera, file, stream, folder or GStreamer pipeline, paces and decimates it to the
governor's fps, reconnects with backoff when the source drops, and feeds a bounded `FrameQueue` that drops the
oldest frame when inference falls behind (and counts it). Frame numbers are given at enqueue time, so a gap in
the numbers a subscriber sees is exactly a dropped frame.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edged.config import CameraSource, FileSource, FolderSource, GStreamerSource, SourceConfig, StreamSource
from edged.errors import SourceError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"})


@dataclass(frozen=True)
class Frame:
    index: int  # monotonic per source
    image: np.ndarray  # HxWx3 uint8 BGR
    timestamp: float  # capture time, seconds since the epoch
    name: str  # file name, or the source name with the frame number for video


def read_image(path: Path) -> np.ndarray:
    """Read a colour image or raise SourceError naming the file (cv2.imread returns None silently)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        reason = "file not found" if not path.exists() else "not a readable image (corrupt or unsupported format)"
        raise SourceError(f"{path}: {reason}")
    return image


# --- one-shot reading, for `edged detect` -------------------------------------------------------------------------


class FileFrames:
    """An image, a folder of images, or a video file, read once. Unreadable images are skipped and listed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.skipped: list[str] = []  # "name: reason" for every unreadable item
        if not self.path.exists():
            raise SourceError(f"{self.path}: no such file or directory")
        if self.path.is_dir():
            self.kind = "folder"
            self._images = _images_in(self.path)
        elif self.path.suffix.lower() in VIDEO_SUFFIXES:
            self.kind = "video"
        else:
            self.kind = "image"
        self.fps = _video_fps(self.path) if self.kind == "video" else None

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "video":
            capture = _VideoCapture(str(self.path), cv2.CAP_ANY, self.path.name)
            index = 0
            while (image := capture.read()) is not None:
                yield Frame(index, image, time.time(), f"{self.path.name}#{index}")
                index += 1
            capture.close()
            if index == 0:
                raise SourceError(f"{self.path}: video has no readable frames")
        elif self.kind == "image":
            yield Frame(0, read_image(self.path), time.time(), self.path.name)
        else:
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


# --- the daemon's queue -------------------------------------------------------------------------------------------


class QueueClosed(Exception):
    """The producer has finished (end of a non-looping file) and every frame has been taken."""


class FrameQueue:
    """Bounded hand-over from the producer thread to the inference thread.

    drop_oldest=True (live sources): a full queue drops its oldest frame, so inference always sees the newest, and
    the drop is counted. drop_oldest=False (a file read as fast as possible): the producer waits instead.
    """

    def __init__(self, maxsize: int, drop_oldest: bool = True) -> None:
        self.maxsize = maxsize
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self._frames: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, frame: Frame) -> None:
        with self._cond:
            while len(self._frames) >= self.maxsize and not self.drop_oldest and not self._closed:
                self._cond.wait(0.1)
            if len(self._frames) >= self.maxsize:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self._cond.notify_all()

    def get(self, timeout: float) -> Frame | None:
        """The oldest frame, or None after `timeout`. Raises QueueClosed when closed and drained."""
        with self._cond:
            if not self._frames and not self._closed:
                self._cond.wait(timeout)
            if self._frames:
                frame = self._frames.popleft()
                self._cond.notify_all()
                return frame
            if self._closed:
                raise QueueClosed
            return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)


# --- the daemon's producer ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceStatus:
    state: str  # "connecting" | "streaming" | "reconnecting" | "finished" | "failed"
    detail: str = ""


class FrameProducer:
    """Reads a configured source on its own thread into a FrameQueue; survives the source dropping."""

    def __init__(
        self,
        config: SourceConfig,
        queue: FrameQueue,
        on_status: Callable[[SourceStatus], None] = lambda status: None,
        fps_limit: float | None = None,
    ) -> None:
        self.config = config
        self.queue = queue
        self.on_status = on_status
        self.fps_limit = fps_limit  # set by the daemon from the governor; None: every frame
        self.paused = False  # frames are read (a camera's buffer stays fresh) but not queued
        self.status = SourceStatus("connecting")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edged-source", daemon=True)
        self._next_index = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff = self.config.reconnect_initial_s
        while not self._stop.is_set():
            try:
                capture = open_capture(self.config)
            except SourceError as exc:
                if not _is_live(self.config):
                    self._set_status("failed", str(exc))
                    self.queue.close()
                    return
                self._set_status("reconnecting", f"{exc}; retrying in {backoff:.0f} s")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.config.reconnect_max_s)
                continue
            backoff = self.config.reconnect_initial_s
            self._set_status("streaming", capture.name)
            finished = self._pump(capture)
            capture.close()
            if finished:
                self._set_status("finished", capture.name)
                self.queue.close()
                return
            if not self._stop.is_set():
                self._set_status("reconnecting", f"{capture.name}: stream lost")

    def _pump(self, capture: _Capture) -> bool:
        """Move frames until the source ends (True: a file that does not loop) or drops (False)."""
        realtime = not isinstance(self.config, FileSource) or self.config.realtime
        period = 1.0 / capture.fps if realtime and capture.fps and not _is_live(self.config) else 0.0
        next_due = time.monotonic()
        last_emitted = -1e9
        while not self._stop.is_set():
            image = capture.read()
            if image is None:
                if isinstance(self.config, FileSource | FolderSource) and self.config.loop and capture.rewind():
                    continue
                return not _is_live(self.config)
            if period:  # a file played at its own speed, as a camera would deliver it
                next_due += period
                self._stop.wait(max(0.0, next_due - time.monotonic()))
            if self.paused:
                continue
            now = time.monotonic()
            limit = self.fps_limit
            if realtime and limit and now - last_emitted < 1.0 / limit - 0.002:
                continue  # decimated to the governor's fps: skipped on purpose, not dropped
            last_emitted = now
            self.queue.put(Frame(self._next_index, image, time.time(), capture.name))
            self._next_index += 1
        return False

    def _set_status(self, state: str, detail: str) -> None:
        self.status = SourceStatus(state, detail)
        level = logging.INFO if state in ("streaming", "finished") else logging.WARNING
        log.log(level, "source %s: %s", state, detail)
        self.on_status(self.status)


def _is_live(config: SourceConfig) -> bool:
    return isinstance(config, CameraSource | StreamSource | GStreamerSource)


# --- captures: one per kind of source -----------------------------------------------------------------------------


class _Capture:
    name: str
    fps: float | None

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def rewind(self) -> bool:
        return False

    def close(self) -> None:
        pass


class _VideoCapture(_Capture):
    def __init__(self, target: str | int, api: int, name: str, props: dict[int, float] | None = None) -> None:
        self.name = name
        self._capture = cv2.VideoCapture(target, api)
        if not self._capture.isOpened():
            raise SourceError(f"{name}: cannot open (device busy or absent, unreachable URL, or unsupported codec)")
        for prop, value in (props or {}).items():
            self._capture.set(prop, value)
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None

    def read(self) -> np.ndarray | None:
        ok, image = self._capture.read()
        return image if ok and image is not None else None

    def rewind(self) -> bool:
        return bool(self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0))

    def close(self) -> None:
        self._capture.release()


class _FolderCapture(_Capture):
    def __init__(self, config: FolderSource) -> None:
        self.name = config.path.name
        self.fps = config.fps
        self._images = _images_in(config.path)
        self._position = 0

    def read(self) -> np.ndarray | None:
        while self._position < len(self._images):
            path = self._images[self._position]
            self._position += 1
            try:
                return read_image(path)
            except SourceError as exc:
                log.warning("skipped %s", exc)
        return None

    def rewind(self) -> bool:
        self._position = 0
        return True


def open_capture(config: SourceConfig) -> _Capture:
    """Open what the config describes; SourceError says why it cannot be opened."""
    if isinstance(config, FileSource):
        if not config.path.is_file():
            raise SourceError(f"{config.path}: no such video file")
        return _VideoCapture(str(config.path), cv2.CAP_ANY, config.path.name)
    if isinstance(config, FolderSource):
        return _FolderCapture(config)
    if isinstance(config, CameraSource):
        props: dict[int, float | None] = {
            cv2.CAP_PROP_FRAME_WIDTH: config.width,
            cv2.CAP_PROP_FRAME_HEIGHT: config.height,
            cv2.CAP_PROP_FPS: config.fps,
        }
        wanted = {k: float(v) for k, v in props.items() if v}
        return _VideoCapture(config.device, cv2.CAP_V4L2, f"camera {config.device}", wanted)
    if isinstance(config, StreamSource):
        return _VideoCapture(config.url, cv2.CAP_FFMPEG, _redact(config.url))
    if isinstance(config, GStreamerSource):
        if "GStreamer:                   YES" not in cv2.getBuildInformation():
            raise SourceError(
                "this OpenCV build has no GStreamer support (pip's opencv-python-headless never has); "
                "install the distribution's python3-opencv or use a camera/stream source"
            )
        return _VideoCapture(config.pipeline, cv2.CAP_GSTREAMER, "gstreamer pipeline")
    raise SourceError(f"unknown source type {config!r}")


def _images_in(folder: Path) -> list[Path]:
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SourceError(f"{folder}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def _video_fps(path: Path) -> float | None:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    capture.release()
    return fps if fps and fps > 0 else None


def _redact(url: str) -> str:
    """rtsp://user:pass@host/... -> rtsp://user:***@host/... (URLs end up in logs and on MQTT)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.partition("@")
    if at and ":" in credentials:
        return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"
    return url
