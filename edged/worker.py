"""The inference worker: frames in, FrameResults out, variant switches at frame boundaries.

The worker thread owns the detectors. A requested variant is loaded and warmed on a separate loader thread while
the current one keeps running; the worker swaps to it between two frames, so a switch costs no frame. Recently
used variants stay loaded (warm standbys), so switching back is a pointer swap. A variant that fails to load or
to run is quarantined with its reason; the frame in hand is retried on a standby rather than lost. Each detector
dropped (evicted or quarantined) is closed at once and the C heap's freed pages are handed back to the kernel, so
that months of switching keep the resident memory flat (see release_freed_memory).
"""

from __future__ import annotations

import collections
import ctypes
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from edged.errors import EdgedError
from edged.sources import Frame, FrameQueue, QueueClosed
from edged.vision.detector import Detector
from edged.vision.types import Detections

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameResult:
    index: int
    timestamp: float  # capture time, epoch seconds
    source: str
    variant: str
    detections: Detections
    labels: list[str]
    started: float  # monotonic, inference window start (for energy metering)
    finished: float  # monotonic, inference window end


@dataclass(frozen=True)
class WorkerEvent:
    kind: str  # "switched" | "quarantined" | "source_finished"
    variant: str | None
    detail: str


M_ARENA_MAX = -8  # mallopt() parameter, from glibc's <malloc.h>
MALLOC_ARENAS = 2


def release_freed_memory() -> None:
    """Return the free pages of every malloc arena to the kernel: glibc's malloc_trim(0); a no-op elsewhere.

    Why: an ONNX Runtime session's weights, graph and arena are malloc'd on the loader thread and its own pool
    threads. Once an evicted session is freed, glibc keeps those chunks in its arenas, scattered between live ones
    (so never at a heap's top, where it trims by itself). In a 10-minute soak switching variants every 5 s
    (bench/bench_memory.py), RSS ratcheted up 11-12% while the bytes malloc had handed out, the threads and the
    Python objects stayed level; with this trim after each load and the arena cap below, 1.6-3.0% over two runs
    (bench/RESULTS.md). It runs on the loader thread, after a load, off the frames' path.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (mallopt M_ARENA_MAX) unless the environment does; True when this call set it.

    Call it before the threads start: an arena already created stays. Why: glibc gives a thread that finds the
    arenas busy a new one, up to 8 per core, and every load starts new session pool threads, so the sessions'
    memory ends up spread over a dozen arenas, each keeping its own fragments that malloc_trim cannot return
    (a page with one live chunk stays). In an exploratory run of 45 fast cycles through the zoo (not in bench/),
    with the trim, RSS still crept up 5% (to the arenas' size, then level); with 2 arenas it stayed level and 12 MB
    lower, at the same CPU time per frame. MALLOC_ARENA_MAX or GLIBC_TUNABLES=glibc.malloc.arena_max=N in the
    environment (a systemd drop-in) take precedence.
    """
    if "MALLOC_ARENA_MAX" in os.environ or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = _glibc()
    return libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (Linux), else None: musl, macOS and Windows have no malloc_trim."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "malloc_trim"):
        return None
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def _close(detectors: Iterable[Detector]) -> None:
    """Release dropped detectors now, not at garbage collection, then their memory to the kernel."""
    for detector in detectors:
        detector.close()
    release_freed_memory()


class InferenceMeter(Protocol):
    """Marks inference windows, so energy can be attributed to them (edged.power.EnergyMeter)."""

    def start_inference(self, variant: str | None = None) -> None: ...

    def end_inference(self) -> None: ...


class InferenceWorker:
    def __init__(
        self,
        open_detector: Callable[[str], Detector],
        queue: FrameQueue,
        on_result: Callable[[FrameResult], None],
        on_event: Callable[[WorkerEvent], None] = lambda event: None,
        warm_slots: int = 2,
        meter: InferenceMeter | None = None,
        on_idle: Callable[[], None] = lambda: None,
    ) -> None:
        self._open_detector = open_detector
        self._on_idle = on_idle  # called on this thread when no frame came (paused, source stalled or gone)
        self._queue = queue
        self._on_result = on_result
        self._on_event = on_event
        self._warm_slots = max(1, warm_slots)
        self._meter = meter
        self._lock = threading.Lock()
        self._loaded: collections.OrderedDict[str, Detector] = collections.OrderedDict()  # LRU, active last
        self._active: str | None = None
        self._pending: str | None = None  # loaded, waiting for the next frame boundary
        self._wanted: str | None = None  # requested, not yet loaded
        self._load_signal = threading.Event()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._quarantined: dict[str, str] = {}  # variant -> why; written under the lock
        self.frames_done = 0
        self.switches = 0  # times the active variant changed (a request or a quarantine), since start
        self._thread = threading.Thread(target=self._run, name="edged-inference", daemon=True)
        self._loader = threading.Thread(target=self._load_loop, name="edged-loader", daemon=True)

    # --- control (any thread) ---------------------------------------------------------------------------------

    def start(self, variant: str) -> None:
        """Load the first variant before frames flow (raises EdgedError when it cannot be loaded)."""
        self._loaded[variant] = self._open_detector(variant)
        self._active = variant
        self._thread.start()
        self._loader.start()

    def request(self, variant: str) -> None:
        """Switch to `variant` as soon as it is loaded; the latest request wins."""
        with self._lock:
            if variant in self._quarantined:
                return
            if variant == self._active and self._pending is None:
                self._wanted = None
                return
            if variant in self._loaded:
                self._pending, self._wanted = variant, None
                return
            self._wanted = variant
        self._load_signal.set()

    def pause(self, paused: bool) -> None:
        if paused:
            self._paused.set()
        else:
            self._paused.clear()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    @property
    def quarantined(self) -> dict[str, str]:
        """Variants that failed to load or run, and why (a copy: safe to read from any thread)."""
        with self._lock:
            return dict(self._quarantined)

    @property
    def active_variant(self) -> str | None:
        return self._active

    def loaded_detectors(self) -> list[Detector]:
        with self._lock:
            return list(self._loaded.values())

    @property
    def warm_variants(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the frame in flight, then stop."""
        self._stop.set()
        self._load_signal.set()
        self._thread.join(timeout)
        self._loader.join(timeout)
        with self._lock:
            for detector in self._loaded.values():
                detector.close()
            self._loaded.clear()

    # --- the worker thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._paused.is_set():
                self._stop.wait(0.05)
                self._on_idle()
                continue
            try:
                frame = self._queue.get(0.1)
            except QueueClosed:
                self._on_event(WorkerEvent("source_finished", self._active, "the source has no more frames"))
                return
            if frame is not None:
                self._process(frame)
            else:
                self._on_idle()

    def _process(self, frame: Frame) -> None:
        self._swap_if_pending()
        while not self._stop.is_set():
            variant = self._active
            detector = self._loaded.get(variant) if variant else None
            if detector is None or variant is None:
                self._stop.wait(0.05)  # every loaded variant failed; wait for the daemon to request another
                self._swap_if_pending()
                continue
            started = time.monotonic()
            if self._meter:
                self._meter.start_inference(variant)
            try:
                found = detector.detect(frame.image)
            except Exception as exc:  # a runtime fault of one model must not stop the pipeline
                self._quarantine(variant, f"inference failed: {type(exc).__name__}: {exc}")
                continue
            finally:
                if self._meter:
                    self._meter.end_inference()
            finished = time.monotonic()
            self.frames_done += 1
            self._on_result(
                FrameResult(
                    frame.index, frame.timestamp, frame.name, variant, found, detector.labels, started, finished
                )
            )
            return

    def _swap_if_pending(self) -> None:
        with self._lock:
            target, self._pending = self._pending, None
            if target is None or target == self._active or target not in self._loaded:
                return
            previous, self._active = self._active, target
            self._loaded.move_to_end(target)
            self.switches += 1
        self._on_event(WorkerEvent("switched", target, f"from {previous}"))

    def _quarantine(self, variant: str, reason: str) -> None:
        log.error("variant %s quarantined: %s", variant, reason)
        with self._lock:
            self._quarantined[variant] = reason
            detector = self._loaded.pop(variant, None)
            was_active = variant == self._active
            if was_active:
                self._active = next(reversed(self._loaded), None)  # the most recently used standby
            fallback = self._active
            if was_active and fallback:
                self.switches += 1
        if detector is not None:
            _close([detector])
        self._on_event(WorkerEvent("quarantined", variant, reason))
        if was_active and fallback:
            self._on_event(WorkerEvent("switched", fallback, f"from {variant} (quarantined)"))

    # --- the loader thread ------------------------------------------------------------------------------------

    def _load_loop(self) -> None:
        while not self._stop.is_set():
            self._load_signal.wait()
            self._load_signal.clear()
            with self._lock:
                variant, self._wanted = self._wanted, None
            if variant is None or self._stop.is_set():
                continue
            try:
                detector = self._open_detector(variant)
            except EdgedError as exc:
                self._quarantine(variant, f"failed to load: {exc}")
                continue
            except Exception as exc:  # whatever loading a model raises, it is that variant's fault, not the thread's
                log.exception("loading variant %s failed unexpectedly", variant)
                self._quarantine(variant, f"failed to load: {type(exc).__name__}: {exc}")
                continue
            with self._lock:
                self._loaded[variant] = detector
                if self._wanted is None:  # not overtaken by a newer request
                    self._pending = variant
                evicted = self._evict()
            _close(evicted)  # also trims what loading left behind (parsing, graph optimisation)

    def _evict(self) -> list[Detector]:
        """Keep at most warm_slots + the active and pending ones; drop the least recently used."""
        keep = {self._active, self._pending}
        evicted = []
        for variant in list(self._loaded):
            if len(self._loaded) <= self._warm_slots:
                break
            if variant not in keep:
                evicted.append(self._loaded.pop(variant))
        return evicted
