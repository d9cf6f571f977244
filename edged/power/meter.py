"""Energy per inference, from power readings and the times inference ran.

The inference worker marks each inference (`with meter.inference(variant):`); the sampler's best power sample is
fed in (`meter.add_sample(reading.power)`). Between two samples of one source the energy spent is known (counter
delta, or power integrated); it is shared among the inference windows inside that interval:

- inference filled the interval (at least `resolved_duty` of it): the readings resolve inference, so the energy
  over the windows is measured;
- otherwise the idle share must be taken out: with idle power known (learnt from intervals with no inference) it
  is subtracted; without it power is assumed uniform over the interval. Either way the result says `estimated`.

Energy per inference = energy over the windows / inferences, over the last `horizon_s`, per variant. Samples from
another source, a gap (None), a counter that went backwards or a clock that stepped back never produce a number.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edged.power.config import MeterConfig
from edged.power.sample import PowerSample, Quality

Attribution = Literal["resolved", "idle_subtracted", "uniform"]


class EnergyPerInference(BaseModel):
    """The meter's answer, with how far to trust it."""

    model_config = ConfigDict(frozen=True)

    mj: float | None = Field(description="energy per inference, mJ; None when it cannot be told")
    quality: Quality | None
    source: str | None = Field(description="the power source it comes from")
    variant: str | None
    inferences: float = Field(description="inferences averaged over (fractional at the edges of the horizon)")
    idle_power_w: float | None = Field(None, description="power with no inference running, when seen")
    method: str | None = None
    reason: str | None = Field(None, description="why there is no figure, or why it is only estimated")
    skipped_intervals: int = Field(0, description="sample intervals discarded (counter backwards, clock stepped back)")


@dataclass(frozen=True)
class _Window:
    start: float
    end: float
    variant: str | None


@dataclass(frozen=True)
class _Interval:
    start: float
    end: float
    energy_j: float
    from_counter: bool


@dataclass(frozen=True)
class _Share:
    """What one sampling interval gave one variant's inferences."""

    ts: float
    variant: str | None
    energy_j: float
    inferences: float
    busy_s: float
    attribution: Attribution
    from_counter: bool


def interval_energy(previous: PowerSample, current: PowerSample) -> _Interval | None:
    """Energy between two samples of one source: the counter's delta when both have it, else trapezoidal power.
    None when the interval cannot be trusted (clock stepped back, counter went backwards) or holds no power."""
    dt = current.ts - previous.ts
    if dt <= 0:
        return None
    if previous.energy_j is not None and current.energy_j is not None:
        delta = current.energy_j - previous.energy_j
        return _Interval(previous.ts, current.ts, delta, True) if delta >= 0 else None
    if previous.power_w is not None and current.power_w is not None:
        return _Interval(previous.ts, current.ts, (previous.power_w + current.power_w) / 2 * dt, False)
    return None


class EnergyMeter:
    """Thread-safe: the inference worker marks windows while the sampler's consumer adds samples."""

    def __init__(self, config: MeterConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or MeterConfig()
        self.clock = clock  # must be the clock the samples' `ts` come from (SourceContext.clock)
        self._lock = threading.Lock()
        self._open: tuple[float, str | None] | None = None
        self._windows: deque[_Window] = deque()
        self._pending: deque[_Interval] = deque()
        self._shares: deque[_Share] = deque()
        self._idle: deque[tuple[float, float, float]] = deque()  # (end, energy J, duration s) with no inference
        self._busy_intervals: deque[tuple[float, float]] = deque()  # (end, duration s) of intervals with inference
        self._previous: PowerSample | None = None
        self._source: str | None = None
        self._quality: Quality | None = None
        self._powerless_source: str | None = None
        self._last_variant: str | None = None
        self._skipped = 0
        self._spent_j: dict[Quality, float] = {}  # energy attributed to inference since start; never reset

    # --- inference windows ------------------------------------------------------------------------------------------

    @contextmanager
    def inference(self, variant: str | None = None) -> Iterator[None]:
        """Mark one inference; an inference that raises still spent its energy and is counted."""
        self.start_inference(variant)
        try:
            yield
        finally:
            self.end_inference()

    def start_inference(self, variant: str | None = None) -> None:
        now = self.clock()
        with self._lock:
            if self._open is not None:  # a missed end: close it here rather than lose it
                self._close_window(now)
            self._open = (now, variant)
            self._last_variant = variant

    def end_inference(self) -> None:
        now = self.clock()
        with self._lock:
            if self._open is not None:
                self._close_window(now)
                self._attribute_ready()

    def _close_window(self, end: float) -> None:
        assert self._open is not None
        start, variant = self._open
        self._windows.append(_Window(start, end, variant))
        self._open = None
        while self._windows and self._windows[0].end < end - self.config.horizon_s:
            self._windows.popleft()  # never covered by a sample (no power source): don't grow forever

    # --- samples ----------------------------------------------------------------------------------------------------

    def add_sample(self, sample: PowerSample | None) -> None:
        """The best power sample of a tick; None (no power reading this tick) breaks the interval chain."""
        with self._lock:
            if sample is None or not sample.has_power:
                self._powerless_source = sample.source if sample is not None else None
                self._previous = None
                return
            if sample.source != self._source:
                self._restart(sample)
            previous, self._previous = self._previous, sample
            if previous is None:
                while self._windows and self._windows[0].end <= sample.ts:
                    self._windows.popleft()  # before the first reading of this run of samples: never covered
                return
            interval = interval_energy(previous, sample)
            if interval is None:
                self._skipped += 1
                return
            self._pending.append(interval)
            self._attribute_ready()

    def _restart(self, sample: PowerSample) -> None:
        """Another source: its energy is another measurement, never mixed with the previous one's."""
        self._source, self._quality = sample.source, sample.quality
        self._previous = None
        self._powerless_source = None
        self._pending.clear()
        self._shares.clear()
        self._idle.clear()
        self._busy_intervals.clear()
        self._skipped = 0

    def _attribute_ready(self) -> None:
        """Attribute every pending interval that no still-running inference overlaps."""
        while self._pending and (self._open is None or self._open[0] >= self._pending[0].end):
            interval = self._pending.popleft()
            self._attribute(interval)
            while self._windows and self._windows[0].end <= interval.end:
                self._windows.popleft()
        self._forget_before(self._previous.ts if self._previous else self.clock())

    def _attribute(self, interval: _Interval) -> None:
        duration = interval.end - interval.start
        overlaps = [(w, min(w.end, interval.end) - max(w.start, interval.start)) for w in self._windows]
        overlaps = [(w, o) for w, o in overlaps if o > 0]
        busy = min(duration, sum(o for _, o in overlaps))
        if busy <= 0:
            self._idle.append((interval.end, interval.energy_j, duration))
            return
        self._busy_intervals.append((interval.end, duration))
        idle_w = self._idle_power_w()
        attribution: Attribution
        if busy / duration >= self.config.resolved_duty:
            energy, attribution = interval.energy_j * busy / duration, "resolved"
        elif idle_w is not None:
            energy, attribution = max(0.0, interval.energy_j - idle_w * (duration - busy)), "idle_subtracted"
        else:
            energy, attribution = interval.energy_j * busy / duration, "uniform"
        quality = self._interval_quality(attribution)
        self._spent_j[quality] = self._spent_j.get(quality, 0.0) + energy
        for window, overlap in overlaps:
            self._shares.append(
                _Share(
                    ts=interval.end,
                    variant=window.variant,
                    energy_j=energy * overlap / busy,
                    inferences=overlap / (window.end - window.start),
                    busy_s=overlap,
                    attribution=attribution,
                    from_counter=interval.from_counter,
                )
            )

    def _interval_quality(self, attribution: Attribution) -> Quality:
        """One interval's share of `_judge`: measured only from a measured source whose readings resolve inference."""
        if self._quality in ("simulated", "estimated"):
            return self._quality
        return "measured" if attribution == "resolved" else "estimated"

    def _forget_before(self, now: float) -> None:
        cutoff = now - self.config.horizon_s
        while self._shares and self._shares[0].ts < cutoff:
            self._shares.popleft()
        while self._idle and self._idle[0][0] < cutoff:
            self._idle.popleft()
        while self._busy_intervals and self._busy_intervals[0][0] < cutoff:
            self._busy_intervals.popleft()

    def _idle_power_w(self) -> float | None:
        seconds = sum(d for _, _, d in self._idle)
        return sum(e for _, e, _ in self._idle) / seconds if seconds > 0 else None

    # --- the answer -------------------------------------------------------------------------------------------------

    @property
    def idle_power_w(self) -> float | None:
        with self._lock:
            return self._idle_power_w()

    def inference_energy_j(self) -> dict[Quality, float]:
        """Energy attributed to inference since start, J, by how it was obtained: a counter's figures."""
        with self._lock:
            return dict(self._spent_j)

    def energy_per_inference_mj(self, variant: str | None = None) -> EnergyPerInference:
        """For `variant` (default: the one that ran last), over the last `horizon_s`."""
        with self._lock:
            self._forget_before(self._previous.ts if self._previous else self.clock())
            variant = variant if variant is not None else self._last_variant
            shares = [s for s in self._shares if s.variant == variant]
            inferences = sum(s.inferences for s in shares)
            base = {
                "source": self._source,
                "variant": variant,
                "inferences": inferences,
                "idle_power_w": self._idle_power_w(),
                "skipped_intervals": self._skipped,
            }
            if not shares or inferences <= 0:
                return EnergyPerInference(mj=None, quality=None, reason=self._why_none(), **base)
            quality, reason = self._judge(shares)
            counted = sum(s.busy_s for s in shares if s.from_counter)
            method = "energy counter" if counted * 2 >= sum(s.busy_s for s in shares) else "power integrated"
            return EnergyPerInference(
                mj=1e3 * sum(s.energy_j for s in shares) / inferences,
                quality=quality,
                method=f"{method} over inference windows / inferences",
                reason=reason,
                **base,
            )

    def _judge(self, shares: list[_Share]) -> tuple[Quality, str | None]:
        busy = sum(s.busy_s for s in shares)
        resolved = sum(s.busy_s for s in shares if s.attribution == "resolved")
        if self._quality == "simulated":
            return "simulated", "from a simulated source"
        if resolved >= self.config.resolved_duty * busy:
            if self._quality == "estimated":
                return "estimated", f"{self._source} is itself estimated"
            return "measured", None
        sampled = sum(d for _, d in self._busy_intervals)
        subtracted = sum(s.busy_s for s in shares if s.attribution == "idle_subtracted")
        how = (
            f"idle power {self._idle_power_w():.3f} W subtracted"
            if subtracted * 2 >= busy - resolved and self._idle_power_w() is not None
            else "power assumed uniform over each reading"
        )
        duty = busy / sampled if sampled > 0 else 0.0
        return (
            "estimated",
            f"readings do not resolve inference (it filled {duty:.0%} of the intervals it ran in): {how}",
        )

    def _why_none(self) -> str:
        if self._source is None:
            if self._powerless_source:
                return f"{self._powerless_source} gives no power reading (battery state only)"
            return "no power reading yet"
        if self._open is not None and self._pending:
            return "an inference is still running"
        return f"no inference window covered by two {self._source} readings yet"
