"""Energy of one block of work, from a measured power source: what `edged zoo profile` records when it can.

An energy counter (RAPL energy_uj, a gauge's energy) is read before and after; otherwise the power reading is
sampled on a thread while the work runs and integrated. The device's idle power, measured over an equal window
just after, is subtracted, so the figure is the energy the inferences added — and the method says all this.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edged.errors import EdgedError
from edged.power.sample import PowerSample, Quality
from edged.power.sources import PowerSource, PowerSourceError, SourceContext, detected_configs


@dataclass(frozen=True)
class MeasuredWindow:
    joules: float
    seconds: float
    quality: Quality
    method: str


class WindowEnergyMeter:
    """`measure(work)` -> energy above idle of running `work`, from one source that measures power."""

    def __init__(self, source: PowerSource, sample_period_s: float = 0.05) -> None:
        self.source = source
        self.sample_period_s = sample_period_s

    def measure(self, work: Callable[[], None]) -> MeasuredWindow:
        start = time.perf_counter()
        busy_j = self._energy_during(work)
        seconds = time.perf_counter() - start
        idle_j = self._energy_during(lambda: time.sleep(seconds))
        quality = self._read().quality
        method = (
            f"{quality}: {self.source.id} over the inference windows, minus idle power measured over an equal "
            "window just after; covers what that source sees (RAPL: the CPU package only)"
        )
        return MeasuredWindow(max(0.0, busy_j - idle_j), seconds, quality, method)

    def _energy_during(self, work: Callable[[], None]) -> float:
        first = self._read()
        if first.energy_j is not None:
            work()
            last = self._read()
            if last.energy_j is not None and last.energy_j >= first.energy_j:
                return last.energy_j - first.energy_j
        return self._integrate_power(work)

    def _integrate_power(self, work: Callable[[], None]) -> float:
        readings: list[tuple[float, float]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                power = self._read().power_w
                if power is not None:
                    readings.append((time.perf_counter(), power))
                done.wait(self.sample_period_s)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            work()
        finally:
            done.set()
            sampler.join()
        if len(readings) < 2:
            raise EdgedError(f"{self.source.id}: too few power readings to integrate over the window")
        return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(readings))

    def _read(self) -> PowerSample:
        return self.source.read()


def measured_source(ctx: SourceContext | None = None) -> PowerSource | None:
    """The best auto-detected source whose readings are measured and include power or an energy counter."""
    ctx = ctx or SourceContext(listen_s=0)
    for config in detected_configs(ctx):
        try:
            source = config.open(ctx)
            sample = source.read()
        except PowerSourceError:
            continue
        if sample.quality == "measured" and sample.has_power:
            return source
        source.close()
    return None
