"""Frame sources for the daemon: the drop-oldest queue, pacing, looping, and a stream that vanishes and returns."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edged.config import FileSource, FolderSource, StreamSource
from edged.sources import Frame, FrameProducer, FrameQueue, QueueClosed, SourceStatus

ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = ROOT / "edged" / "demo" / "vtest_10s.mp4"  # 100 frames at 10 fps


def frame(i: int) -> Frame:
    return Frame(i, np.zeros((2, 2, 3), np.uint8), 0.0, "t")


def drain(queue: FrameQueue, timeout: float = 20.0) -> list[Frame]:
    frames, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = queue.get(0.5)
        except QueueClosed:
            return frames
        if got is not None:
            frames.append(got)
    raise AssertionError(f"queue not closed after {timeout} s ({len(frames)} frames)")


def test_full_queue_drops_the_oldest_and_counts_it():
    queue = FrameQueue(2, drop_oldest=True)
    for i in range(5):
        queue.put(frame(i))
    assert queue.dropped == 3
    assert [queue.get(0.1).index, queue.get(0.1).index] == [3, 4]
    assert queue.get(0.01) is None


def test_blocking_queue_waits_for_the_consumer_and_loses_nothing():
    queue = FrameQueue(2, drop_oldest=False)
    producer = threading.Thread(target=lambda: [queue.put(frame(i)) for i in range(20)] and queue.close())
    producer.start()
    time.sleep(0.1)
    assert len(queue) == 2, "the producer waits when the queue is full"
    assert [f.index for f in drain(queue)] == list(range(20))
    assert queue.dropped == 0


def test_file_read_as_fast_as_possible_delivers_every_frame_in_order():
    queue = FrameQueue(2, drop_oldest=False)
    statuses: list[SourceStatus] = []
    producer = FrameProducer(FileSource(type="file", path=DEMO_CLIP, realtime=False), queue, statuses.append)
    producer.start()
    frames = drain(queue)
    assert [f.index for f in frames] == list(range(100))
    assert frames[0].image.shape == (576, 768, 3)
    assert [s.state for s in statuses] == ["streaming", "finished"]


def test_realtime_file_is_paced_and_decimated_to_the_fps_limit():
    queue = FrameQueue(64, drop_oldest=True)
    producer = FrameProducer(FileSource(type="file", path=DEMO_CLIP, loop=True), queue, fps_limit=5.0)
    producer.start()
    time.sleep(2.0)
    producer.stop()
    frames = []
    while (f := queue.get(0.01)) is not None:
        frames.append(f)
    # 2 s of a 10 fps clip decimated to 5 fps: about 10 frames, numbered without gaps (none was dropped)
    assert 7 <= len(frames) <= 12
    assert [f.index for f in frames] == list(range(len(frames)))
    assert queue.dropped == 0


def test_looping_file_wraps_around():
    queue = FrameQueue(8, drop_oldest=False)
    producer = FrameProducer(FileSource(type="file", path=DEMO_CLIP, loop=True, realtime=False), queue)
    producer.start()
    frames = [queue.get(5.0) for _ in range(130)]
    producer.stop()
    assert [f.index for f in frames if f] == list(range(130)), "numbering continues across the loop"


def test_missing_file_fails_once_with_the_reason():
    queue = FrameQueue(2)
    statuses: list[SourceStatus] = []
    FrameProducer(FileSource(type="file", path=ROOT / "nope.mp4"), queue, statuses.append).start()
    assert drain(queue, 5.0) == []
    assert statuses == [SourceStatus("failed", f"{ROOT / 'nope.mp4'}: no such video file")]


def test_folder_source_skips_unreadable_images(tmp_path, val_dev):
    import shutil

    for image in sorted((val_dev / "images").iterdir())[:3]:
        shutil.copy(image, tmp_path / image.name)
    (tmp_path / "0_broken.jpg").write_bytes(b"garbage")
    queue = FrameQueue(8, drop_oldest=False)
    FrameProducer(FolderSource(type="folder", path=tmp_path, fps=100), queue).start()
    assert len(drain(queue)) == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


def _serve(directory: Path, port: int) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(_QuietHandler, directory=directory))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _mjpeg_clip(path: Path, frames: int = 30) -> Path:
    """An AVI that ffmpeg can read over plain HTTP (an mp4 needs range requests to find its index)."""
    capture = cv2.VideoCapture(str(DEMO_CLIP))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (768, 576))
    for _ in range(frames):
        writer.write(capture.read()[1])
    writer.release()
    return path


def test_stream_that_vanishes_is_retried_with_backoff_and_resumes(tmp_path):
    clip = _mjpeg_clip(tmp_path / "gate.avi")
    port = _free_port()
    statuses: list[SourceStatus] = []
    queue = FrameQueue(4, drop_oldest=True)
    config = StreamSource(
        type="stream", url=f"http://127.0.0.1:{port}/{clip.name}", reconnect_initial_s=0.2, reconnect_max_s=0.4
    )
    producer = FrameProducer(config, queue, statuses.append)
    producer.start()
    try:
        _wait_for(lambda: any(s.state == "reconnecting" for s in statuses), "no retry while the server is down")
        server = _serve(clip.parent, port)
        try:
            _wait_for(lambda: any(s.state == "streaming" for s in statuses), "never streamed once the server was up")
            got = queue.get(5.0)
            assert got is not None and got.image.shape == (576, 768, 3)
        finally:
            server.shutdown()
            server.server_close()
    finally:
        producer.stop()
    first_retry = next(s for s in statuses if s.state == "reconnecting")
    assert "cannot open" in first_retry.detail and "retrying in" in first_retry.detail


def _wait_for(condition, message: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(message)
