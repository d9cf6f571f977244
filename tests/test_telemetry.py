"""The pipeline's own figures: the recent frame rate, and its per-frame overhead as the governor sees it."""

from __future__ import annotations

import pytest

from edged.telemetry import FrameStats, PowerPeriod, governor_inputs


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


def test_the_pipelines_own_time_per_frame_reaches_the_governor_as_energy() -> None:
    stats = FrameStats()
    for index, overhead_ms in enumerate([0.5, 0.7, 0.6]):
        stats.record("v", index, latency_ms=10.0, inference_ms=8.0, done_at=float(index))
        stats.record_overhead(overhead_ms)
    period = stats.take_period(now=3.0)
    assert period.overhead_median_ms == 0.6
    inputs = governor_inputs(3.0, period, PowerPeriod(None, None, None), 0.0, None, None, busy_power_w=4.0)
    assert inputs.frame_overhead_mj == pytest.approx(2.4)  # 0.6 ms at 4 W above idle
    unknown = governor_inputs(3.0, stats.take_period(now=4.0), PowerPeriod(None, None, None), 0.0, None, None, 4.0)
    assert unknown.frame_overhead_mj is None  # no frames, no figure: the governor adds nothing


def test_latency_histogram_counts_every_frame_since_start_with_inclusive_upper_bounds() -> None:
    stats = FrameStats(window=3)  # the percentile window forgets; the histogram must not
    latencies_ms = [0.4, 1.0, 1.01, 9.0, 10.0, 480.0, 2000.0]
    for i, ms in enumerate(latencies_ms):
        stats.record("v", i, latency_ms=ms, inference_ms=ms, done_at=float(i))
    histogram = stats.latency_histogram()
    per_bound = dict(zip([*histogram.bounds_s, float("inf")], histogram.counts))
    assert per_bound[0.001] == 2  # 0.4 ms and exactly 1 ms: Prometheus' `le`
    assert per_bound[0.0025] == 1
    assert per_bound[0.01] == 2  # 9 ms and exactly 10 ms
    assert per_bound[0.5] == 1
    assert per_bound[float("inf")] == 1
    assert histogram.count == len(latencies_ms) == stats.processed
    assert histogram.sum_s == pytest.approx(sum(latencies_ms) / 1000)
