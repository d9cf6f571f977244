"""The inference worker: switches at frame boundaries without losing a frame; faulty variants are quarantined."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edged.config import FileSource
from edged.errors import ModelError
from edged.sources import FrameProducer, FrameQueue
from edged.worker import FrameResult, InferenceWorker, WorkerEvent
from tests.mqtt.conftest import wait_until

DEMO_CLIP = Path(__file__).resolve().parents[1] / "edged" / "demo" / "vtest_10s.mp4"


class Run:
    """A real pipeline over the demo clip: producer -> queue -> worker, results collected."""

    def __init__(self, open_detector, first: str) -> None:
        self.results: list[FrameResult] = []
        self.events: list[WorkerEvent] = []
        self.done = threading.Event()
        queue = FrameQueue(2, drop_oldest=False)
        self.producer = FrameProducer(FileSource(type="file", path=DEMO_CLIP, realtime=False), queue)
        self.worker = InferenceWorker(open_detector, queue, self.results.append, self._event)
        self.worker.start(first)
        self.producer.start()

    def _event(self, event: WorkerEvent) -> None:
        self.events.append(event)
        if event.kind == "source_finished":
            self.done.set()

    def wait_for_frames(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.results) < n and time.monotonic() < deadline:
            time.sleep(0.01)

    def finish(self) -> None:
        assert self.done.wait(60), "the clip never finished"
        self.worker.stop()


def test_switches_happen_between_frames_and_drop_nothing(coco_zoo):
    run = Run(coco_zoo.open_detector, "fastestdet-352")
    run.wait_for_frames(20)
    run.worker.request("nanodet-m-320")
    run.wait_for_frames(60)
    run.worker.request("fastestdet-352")  # still warm: a pointer swap
    run.finish()
    assert [r.index for r in run.results] == list(range(100))
    variants = [r.variant for r in run.results]
    changes = [i for i in range(1, 100) if variants[i] != variants[i - 1]]
    assert len(changes) == 2 and variants[0] == variants[-1] == "fastestdet-352"
    assert [e.variant for e in run.events if e.kind == "switched"] == ["nanodet-m-320", "fastestdet-352"]
    assert run.worker.switches == 2


def test_variant_that_fails_to_load_is_quarantined_and_the_stream_continues(coco_zoo):
    def open_detector(variant: str):
        if variant == "broken":
            raise ModelError("broken.onnx: not a loadable ONNX model (corrupt or truncated?)")
        return coco_zoo.open_detector(variant)

    run = Run(open_detector, "fastestdet-352")
    run.wait_for_frames(10)
    run.worker.request("broken")
    run.finish()
    assert [r.index for r in run.results] == list(range(100))
    assert {r.variant for r in run.results} == {"fastestdet-352"}
    assert run.worker.switches == 0
    assert "not a loadable ONNX model" in run.worker.quarantined["broken"]
    run.worker.request("broken")  # a quarantined variant is not retried
    assert run.worker.active_variant == "fastestdet-352"


def test_a_model_file_that_cannot_be_read_is_quarantined_and_later_switches_still_work(coco_zoo, unreadable):
    """Permission denied (or an SD card's I/O error) once killed the loader thread: later switches were answered
    'ok' while every frame stayed on the old variant."""
    unreadable(coco_zoo.file_of(coco_zoo.variant("nanodet-m-320")))
    run = Run(coco_zoo.open_detector, "fastestdet-352")
    run.wait_for_frames(10)
    run.worker.request("nanodet-m-320")
    deadline = time.monotonic() + 30
    while "nanodet-m-320" not in run.worker.quarantined and time.monotonic() < deadline:
        time.sleep(0.01)
    reason = run.worker.quarantined["nanodet-m-320"]
    assert "cannot read" in reason and "Permission denied" in reason and "nanodet-m-320" in reason
    run.worker.request("yolox-nano-416")  # the loader is alive: the next switch happens
    run.finish()
    assert [r.index for r in run.results] == list(range(100))
    assert "yolox-nano-416" in {r.variant for r in run.results}
    assert any(e.kind == "quarantined" and e.variant == "nanodet-m-320" for e in run.events)


def test_variant_that_fails_at_run_time_falls_back_without_losing_the_frame(coco_zoo):
    """Fault injection: the second variant's engine raises after 5 frames, as a corrupted runtime would."""

    def open_detector(variant: str):
        detector = coco_zoo.open_detector(variant)
        if variant == "nanodet-m-320":
            real, calls = detector.engine.run, [0]

            def failing_run(tensor):
                calls[0] += 1
                if calls[0] > 5:
                    raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION")
                return real(tensor)

            detector.engine.run = failing_run
        return detector

    run = Run(open_detector, "fastestdet-352")
    run.wait_for_frames(10)
    run.worker.request("nanodet-m-320")
    run.finish()
    assert [r.index for r in run.results] == list(range(100)), "the failing frame was retried on the standby"
    variants = [r.variant for r in run.results]
    assert variants.count("nanodet-m-320") == 5 and variants[-1] == "fastestdet-352"
    assert "RUNTIME_EXCEPTION" in run.worker.quarantined["nanodet-m-320"]
    assert [e.kind for e in run.events].count("quarantined") == 1
    assert run.worker.switches == 2, "to the failing variant, and back to the standby when it was quarantined"


def test_paused_worker_processes_nothing_until_resumed(coco_zoo):
    run = Run(coco_zoo.open_detector, "fastestdet-352")
    run.wait_for_frames(5)
    run.worker.pause(True)
    time.sleep(0.3)
    count = len(run.results)
    time.sleep(0.5)
    assert len(run.results) == count
    run.worker.pause(False)
    run.finish()
    assert [r.index for r in run.results] == list(range(100))


@pytest.mark.parametrize("slots", [1, 2])
def test_warm_standbys_are_bounded(coco_zoo, slots):
    queue = FrameQueue(2)
    worker = InferenceWorker(coco_zoo.open_detector, queue, lambda r: None, warm_slots=slots)
    worker.start("fastestdet-352")
    try:
        for variant in ("nanodet-m-320", "fastestdet-352-tflite", "yolox-nano-416"):
            worker.request(variant)
            wait_until(lambda: variant in worker.warm_variants, 20, f"{variant} to be loaded")  # noqa: B023
            assert len(worker.warm_variants) <= slots + 1  # + the active one while a swap is pending
    finally:
        worker.stop()


def test_evicted_standbys_are_closed_at_once_not_at_garbage_collection(coco_zoo):
    opened: list = []
    closed: list[str] = []

    def open_detector(variant: str):
        detector = coco_zoo.open_detector(variant)
        close = detector.close
        detector.close = lambda: (closed.append(variant), close())  # type: ignore[method-assign]
        opened.append(detector)  # held here, so only an explicit close() can free its session
        return detector

    worker = InferenceWorker(open_detector, FrameQueue(2), lambda r: None, warm_slots=1)
    worker.start("fastestdet-352")
    for variant in ("nanodet-m-320", "yolox-nano-416"):
        worker.request(variant)
        wait_until(lambda: variant in worker.warm_variants, 20, f"{variant} to be loaded")  # noqa: B023
    dropped = [v for v in ("fastestdet-352", "nanodet-m-320", "yolox-nano-416") if v not in worker.warm_variants]
    worker.stop()
    assert dropped and closed[: len(dropped)] == dropped  # closed when dropped, before stop() closed the rest


@pytest.mark.parametrize(
    ("environment", "capped_here"),
    [({}, True), ({"MALLOC_ARENA_MAX": "4"}, False), ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}, False)],
)
def test_the_arena_cap_defers_to_one_set_in_the_environment(environment, capped_here):
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt and malloc_trim are glibc's")
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")} | environment
    code = "from edged.worker import limit_malloc_arenas, release_freed_memory as r; r(); print(limit_malloc_arenas())"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == str(capped_here)
