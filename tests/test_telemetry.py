"""The pipeline's own figures: the recent frame rate is right below and above what its window holds."""

from __future__ import annotations

import pytest

from edged.telemetry import FrameStats


@pytest.mark.parametrize("fps", [5.0, 30.0, 135.0, 600.0])
def test_recent_fps_is_the_rate_frames_completed_at(fps: float) -> None:
    stats = FrameStats(window=500)
    start, seconds = 1000.0, 20.0
    count = int(fps * seconds)
    for i in range(count):
        stats.record("v", i, latency_ms=1.0, inference_ms=1.0, done_at=start + i / fps)
    now = start + (count - 1) / fps
    assert stats.recent_fps(now) == pytest.approx(fps, rel=0.02)  # was capped at window / span: 50 fps


def test_recent_fps_is_zero_when_nothing_completed_lately() -> None:
    stats = FrameStats(window=500)
    stats.record("v", 0, latency_ms=1.0, inference_ms=1.0, done_at=100.0)
    assert stats.recent_fps(200.0) == 0.0
