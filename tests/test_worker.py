"""The inference worker: switches at frame boundaries without losing a frame; faulty variants are quarantined."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from edged.config import FileSource
from edged.errors import ModelError
from edged.sources import FrameProducer, FrameQueue
from edged.worker import FrameResult, InferenceWorker, WorkerEvent

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
    assert "not a loadable ONNX model" in run.worker.quarantined["broken"]
    run.worker.request("broken")  # a quarantined variant is not retried
    assert run.worker.active_variant == "fastestdet-352"


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
    for variant in ("nanodet-m-320", "fastestdet-352-tflite", "yolox-nano-416"):
        worker.request(variant)
        deadline = time.monotonic() + 20
        while variant not in worker.warm_variants and time.monotonic() < deadline:
            time.sleep(0.02)
    assert len(worker.warm_variants) <= slots + 1  # + the active one while a swap is pending
    worker.stop()
