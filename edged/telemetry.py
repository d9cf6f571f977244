"""What the pipeline measured since the last control tick, handed from the worker and sampler threads to the
control loop — and turned into the governor's plain-number inputs there.

Each collector is written by one thread and drained by the control loop; a lock guards the hand-over.
"""

from __future__ import annotations

import bisect
import statistics
import threading
from collections import Counter, deque
from dataclasses import dataclass

from edged.governor import GovernorInputs
from edged.power import PowerReading, PowerSample


@dataclass(frozen=True)
class FramePeriod:
    """The frames processed between two control ticks."""

    frames: int
    seconds: float
    inference_median_ms: float | None  # the engine alone: what profiles measure
    variant: str | None  # the variant that processed most of them
    overhead_median_ms: float | None = None  # the pipeline's own work per frame, outside the detector

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


# Upper bounds (s) of the frame latency histogram: a 2 ms int8 variant on a laptop to a 400 ms tiled one on a Pi,
# with room on both sides; later frames fall in +Inf.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class LatencyHistogram:
    """Every frame's latency since start (the detector's: pre-processing to NMS), bucketed: what a Prometheus
    histogram serves."""

    bounds_s: tuple[float, ...]
    counts: tuple[int, ...]  # frames per bucket (not cumulative), one more than bounds: the last is +Inf
    sum_s: float

    @property
    def count(self) -> int:
        return sum(self.counts)


class FrameStats:
    """Fed per frame by the worker; drained per tick by the control loop; keeps a window for `stats` messages."""

    def __init__(self, window: int = 500) -> None:
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=window)  # end-to-end ms, for p50/p95
        self._period_inference: list[float] = []
        self._period_variants: Counter[str] = Counter()
        self._period_start: float | None = None
        self._period_overhead: list[float] = []
        self._recent: deque[float] = deque(maxlen=window)  # monotonic completion times, for the recent fps
        self._latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self._latency_sum_s = 0.0
        self.processed = 0
        self.last_index = -1  # the highest source frame index processed

    def record(self, variant: str, index: int, latency_ms: float, inference_ms: float, done_at: float) -> None:
        with self._lock:
            self._recent.append(done_at)
            self.last_index = max(self.last_index, index)
            self._latencies.append(latency_ms)
            self._latency_counts[bisect.bisect_left(LATENCY_BUCKETS_S, latency_ms / 1000.0)] += 1  # le: bound inclusive
            self._latency_sum_s += latency_ms / 1000.0
            self._period_inference.append(inference_ms)
            self._period_variants[variant] += 1
            self.processed += 1

    def record_overhead(self, ms: float) -> None:
        """Time the pipeline spent on a frame outside the detector (message, outbox commit, accounting)."""
        with self._lock:
            self._period_overhead.append(ms)

    def take_period(self, now: float) -> FramePeriod:
        with self._lock:
            start = self._period_start if self._period_start is not None else now
            inference, variants, overhead = self._period_inference, self._period_variants, self._period_overhead
            self._period_inference, self._period_variants, self._period_overhead = [], Counter(), []
            self._period_start = now
        return FramePeriod(
            frames=len(inference),
            seconds=now - start,
            inference_median_ms=statistics.median(inference) if inference else None,
            variant=variants.most_common(1)[0][0] if variants else None,
            overhead_median_ms=statistics.median(overhead) if overhead else None,
        )

    def recent_fps(self, now: float, span_s: float = 10.0) -> float:
        """Frames per second over the last `span_s`. The window keeps a bounded number of completion times: when
        the span saw more frames than it holds, the rate is taken over the span the window does cover."""
        with self._lock:
            recent = [t for t in self._recent if t >= now - span_s]
            truncated = len(self._recent) == self._recent.maxlen and len(recent) == len(self._recent)
        if truncated and len(recent) > 1:
            return (len(recent) - 1) / max(now - recent[0], 1e-9)
        return len(recent) / span_s

    def latency_histogram(self) -> LatencyHistogram:
        with self._lock:
            return LatencyHistogram(LATENCY_BUCKETS_S, tuple(self._latency_counts), self._latency_sum_s)

    def latency_percentiles(self) -> tuple[float | None, float | None]:
        with self._lock:
            values = sorted(self._latencies)
        if not values:
            return None, None
        return values[len(values) // 2], values[min(len(values) - 1, int(len(values) * 0.95))]


@dataclass(frozen=True)
class PowerPeriod:
    mean_power_w: float | None
    power: PowerSample | None  # the latest sample of the power role
    battery: PowerSample | None  # the latest sample of the battery role


class PowerWindow:
    """Fed by the power sampler's thread; the mean power since the last tick, and the latest battery."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._powers: list[float] = []
        self._power: PowerSample | None = None
        self._battery: PowerSample | None = None

    def record(self, reading: PowerReading) -> None:
        with self._lock:
            if reading.power is not None and reading.power.power_w is not None:
                self._powers.append(reading.power.power_w)
            self._power = reading.power
            self._battery = reading.battery

    def take_period(self) -> PowerPeriod:
        with self._lock:
            powers, self._powers = self._powers, []
            return PowerPeriod(statistics.fmean(powers) if powers else None, self._power, self._battery)

    def latest(self) -> PowerPeriod:
        """The latest samples, without draining the period."""
        with self._lock:
            return PowerPeriod(None, self._power, self._battery)


def governor_inputs(
    now_s: float,
    frames: FramePeriod,
    power: PowerPeriod,
    floor: float,
    floor_expires_s: float | None,
    mission_end_s: float | None,
    busy_power_w: float | None = None,
) -> GovernorInputs:
    """Adapt one tick's measurements to the governor; whatever is unknown stays None.

    `busy_power_w` is the device's power above idle while it computes (the running variant's profile energy over
    its latency): the pipeline's per-frame time outside the detector costs energy at that rate.
    """
    battery = power.battery
    capacity = None
    if battery is not None and battery.battery_wh is not None and battery.battery_pct:
        capacity = battery.battery_wh / (battery.battery_pct / 100.0)
    return GovernorInputs(
        now_s=now_s,
        battery_wh=battery.battery_wh if battery else None,
        battery_pct=battery.battery_pct if battery else None,
        battery_capacity_wh=capacity,
        charging=bool(battery and battery.charging),
        power_w=power.mean_power_w,
        latency_ms=frames.inference_median_ms,
        measured_variant=frames.variant,
        inference_fps=frames.fps if frames.seconds > 0 else None,
        accuracy_floor=floor,
        floor_expires_s=floor_expires_s,
        mission_end_s=mission_end_s,
        frame_overhead_mj=(
            frames.overhead_median_ms * busy_power_w
            if frames.overhead_median_ms is not None and busy_power_w is not None
            else None
        ),
    )
