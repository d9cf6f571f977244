"""Online correction of the zoo's latency and energy figures from what the device measures.

Profiles are measured once, on a cool device, with a trusted meter; in the field the device throttles, the meter is
biased and the battery ages. What we learn is a ratio measured / profile, in two layers:

- device-wide terms, shared by every variant: a latency ratio (thermal throttling slows every variant together), and
  a power model of base power (idle plus whatever else draws from the same battery: a gimbal, a radio, a heater,
  gusts on a shared rail) and an energy ratio, tracked by Kalman filters whose measurement noise follows from the
  reading's noise. Base power may move fast (a load switches on); the energy ratio slowly;
- each variant's own deviation from the device-wide latency ratio, learnt slowly from its latency (which no
  other load disturbs), and fading back to the shared ratio while the variant is not running: what was learnt
  about it under conditions that have since passed (a hot hour) must not stick to it. Its energy per inference
  deviates by the same factor (energy is busy time at the device's active power); a power reading is never
  credited to one variant, since a gust or a radio would then stick to whichever variant happened to run.

Decisions plan with the base power averaged over `load_horizon_s` (`planning_base_w`): a burst of extra draw is
paid from the energy reserve as it comes, and only a lasting change in base power changes what the mission can
afford.

The meter itself is checked against the fuel gauge (MeterCalibration): the budget is counted in the gauge's
watt-hours, so a meter that reads 5% high would otherwise make every prediction 5% too dear.

Pure: every update returns a new object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from edged.governor.config import CorrectionConfig
from edged.governor.profiles import VariantProfile

RATIO_LIMITS = (0.1, 20.0)  # latency: a throttled or overloaded device may really be this slow
POWER_RATIO_LIMITS = (1 / 3, 3.0)  # energy per inference: beyond this the base power, not the variant, moved
MAX_POWER_RATIO_VAR = 0.09  # std 0.3: while inference is a small share of the power, the ratio cannot run off
MAX_GAP_S = 3600.0  # a longer silence adds no more uncertainty than an hour's drift


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


def finite(value: float | None) -> float | None:
    """`value` if it is a usable number, else None."""
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class ScalarKalman:
    """A random-walk state observed with noise: value, and how unsure we are of it."""

    value: float = 1.0
    variance: float = 0.04

    def drifted(self, seconds: float, drift_per_s: float) -> ScalarKalman:
        return replace(self, variance=self.variance + drift_per_s * _clamp(seconds, 0.0, MAX_GAP_S))

    def updated(self, measurement: float, noise_variance: float) -> ScalarKalman:
        gain = self.variance / (self.variance + noise_variance)
        return ScalarKalman(self.value + gain * (measurement - self.value), (1.0 - gain) * self.variance)


@dataclass(frozen=True)
class Measurement:
    """What the device measured since the last tick while `profile` ran at `fps`."""

    profile: VariantProfile
    fps: float
    latency_ms: float | None
    power_w: float | None
    overhead_j: float = 0.0  # the pipeline's own energy per frame (decode, message, outbox, publish)


@dataclass(frozen=True)
class PowerModel:
    """Device power = base + ratio × fps × energy per inference: a two-state Kalman filter over (base, ratio).

    Base is idle power plus any extra draw that does not depend on the variant. With one variant running, one
    reading cannot tell base power from inference energy; readings taken while different variants (or fps) run
    can, and the filter's covariance sorts that out by itself. A configured idle power is base's starting point and
    its lower bound (loads only add to it).
    """

    idle_w: float | None = None  # base power; None: not configured and no reading yet
    ratio: float = 1.0
    var_idle: float = 0.0
    cov: float = 0.0
    var_ratio: float = 0.0025  # std 0.05 to start: an unexplained watt is base power until a contrast says not

    def drifted(self, seconds: float, ratio_per_s: float, base_per_s: float) -> PowerModel:
        gap = _clamp(seconds, 0.0, MAX_GAP_S)
        return replace(self, var_idle=self.var_idle + base_per_s * gap, var_ratio=self.var_ratio + ratio_per_s * gap)

    def updated(self, reading_w: float, inference_w: float, noise_var: float, fixed_w: float = 0.0) -> PowerModel:
        """Fold in one reading taken while `inference_w` (profile figures) and `fixed_w` (known per-frame
        overheads, not scaled by the ratio) were being spent."""
        if self.idle_w is None:  # first reading: the profile is believed, the rest is base, loosely
            idle = max(0.0, reading_w - fixed_w - inference_w * self.ratio)
            return replace(self, idle_w=idle, var_idle=max(noise_var, (0.3 * reading_w) ** 2))
        a = inference_w
        innovation = reading_w - fixed_w - (self.idle_w + a * self.ratio)
        spread = self.var_idle + 2 * a * self.cov + a * a * self.var_ratio + noise_var
        gain_idle = (self.var_idle + a * self.cov) / spread
        gain_ratio = (self.cov + a * self.var_ratio) / spread
        return PowerModel(
            idle_w=max(0.0, self.idle_w + gain_idle * innovation),
            ratio=_clamp(self.ratio + gain_ratio * innovation, *POWER_RATIO_LIMITS),
            var_idle=max(0.0, self.var_idle - gain_idle * (self.var_idle + a * self.cov)),
            cov=self.cov - gain_idle * (self.cov + a * self.var_ratio),
            var_ratio=max(1e-12, self.var_ratio - gain_ratio * (self.cov + a * self.var_ratio)),
        )


@dataclass(frozen=True)
class Corrections:
    latency: ScalarKalman = field(default_factory=ScalarKalman)
    power: PowerModel = field(default_factory=PowerModel)
    latency_by_variant: dict[str, float] = field(default_factory=dict)
    planning_base_w: float | None = None  # base power averaged over the load horizon: what decisions plan with
    updated_at_s: float | None = None

    def latency_ratio(self, variant_id: str) -> float:
        return self.latency.value * self.latency_by_variant.get(variant_id, 1.0)

    def power_ratio(self, variant_id: str) -> float:
        own = _clamp(self.latency_by_variant.get(variant_id, 1.0), *POWER_RATIO_LIMITS)
        return _clamp(self.power.ratio * own, *POWER_RATIO_LIMITS)

    def idle_w(self, configured: float | None) -> float:
        """The base power to plan with: averaged over the load horizon, never below a configured idle power."""
        learnt = self.planning_base_w if self.planning_base_w is not None else self.power.idle_w
        if configured is not None:
            return max(configured, learnt) if learnt is not None else configured
        return learnt if learnt is not None else 0.0

    def observe(
        self, config: CorrectionConfig, now_s: float, seen: Measurement, configured_idle_w: float | None
    ) -> Corrections:
        """Fold one tick's readings in; unusable readings (NaN, negative, unknown fps) are ignored."""
        drift_per_s = config.drift_per_min**2 / 60.0
        gap = now_s - self.updated_at_s if self.updated_at_s is not None else 0.0
        gap = max(0.0, gap) if math.isfinite(gap) else 0.0
        power = self.power
        if configured_idle_w is not None and power.idle_w is None:  # loads may be on from the start
            power = replace(power, idle_w=configured_idle_w, var_idle=config.load_drift_w_per_min**2, cov=0.0)
        result = replace(
            self,
            latency=self.latency.drifted(gap, drift_per_s),
            power=power.drifted(gap, config.energy_drift_per_min**2 / 60.0, config.load_drift_w_per_min**2 / 60.0),
            latency_by_variant=_faded(self.latency_by_variant, seen.profile.id, gap, config.variant_memory_s),
            updated_at_s=now_s,
        )
        result = result._observe_latency(config, seen)._observe_power(config, seen)
        if (
            configured_idle_w is not None
            and result.power.idle_w is not None
            and result.power.idle_w < configured_idle_w
        ):
            result = replace(result, power=replace(result.power, idle_w=configured_idle_w))
        return result._planned(config.load_horizon_s, gap)

    def _planned(self, horizon_s: float, gap: float) -> Corrections:
        base = self.power.idle_w
        if base is None:
            return self
        if self.planning_base_w is None or horizon_s <= 0:
            return replace(self, planning_base_w=base)
        weight = 1.0 - math.exp(-_clamp(gap, 0.0, MAX_GAP_S) / horizon_s)
        return replace(self, planning_base_w=self.planning_base_w + weight * (base - self.planning_base_w))

    def _observe_latency(self, config: CorrectionConfig, seen: Measurement) -> Corrections:
        latency = finite(seen.latency_ms)
        if latency is None or latency <= 0:
            return self
        ratio = _clamp(latency / seen.profile.latency_p50_ms, *RATIO_LIMITS)
        own = self.latency_by_variant.get(seen.profile.id, 1.0)
        device = self.latency.updated(ratio / own, config.latency_noise**2)
        own_learnt = own + config.variant_learning_rate * (ratio / device.value - own)
        return replace(
            self,
            latency=device,
            latency_by_variant={**self.latency_by_variant, seen.profile.id: _clamp(own_learnt, *RATIO_LIMITS)},
        )

    def _observe_power(self, config: CorrectionConfig, seen: Measurement) -> Corrections:
        power = finite(seen.power_w)
        fps = finite(seen.fps)
        if power is None or power < 0 or fps is None or fps < 0:
            return self
        inference_w = fps * seen.profile.joules * self.power_ratio(seen.profile.id) / self.power.ratio
        overhead_w = fps * max(0.0, finite(seen.overhead_j) or 0.0)
        return replace(self, power=self.power.updated(power, inference_w, config.power_noise_w**2, overhead_w))


def _faded(by_variant: dict[str, float], running: str, seconds: float, memory_s: float) -> dict[str, float]:
    """Every variant but the running one drifts back to the shared ratio (1.0) with time constant `memory_s`."""
    if memory_s <= 0 or seconds <= 0:
        return by_variant
    keep = math.exp(-_clamp(seconds, 0.0, MAX_GAP_S) / memory_s)
    return {v: r if v == running else 1.0 + (r - 1.0) * keep for v, r in by_variant.items()}


@dataclass(frozen=True)
class MeterCalibration:
    """The power meter rescaled to agree with the fuel gauge, over discharge windows.

    A window runs while the battery discharges (not charging, readings present) until the gauge has dropped
    `gauge_window_pct` of capacity; the gauge's drop over the energy the meter integrated is folded into `scale`.
    Windows start and end on a gauge step, so a coarse gauge (1% steps) still gives a fair ratio.
    """

    scale: float = 1.0
    start_wh: float | None = None
    metered_wh: float = 0.0
    last_s: float | None = None

    def restarted(self, now_s: float | None, battery_wh: float | None) -> MeterCalibration:
        return MeterCalibration(self.scale, battery_wh, 0.0, now_s)

    def observe(
        self,
        config: CorrectionConfig,
        now_s: float,
        battery_wh: float | None,
        capacity_wh: float | None,
        power_w: float | None,
        charging: bool,
    ) -> MeterCalibration:
        power = finite(power_w)
        usable = battery_wh is not None and capacity_wh is not None and not charging and power is not None
        if not usable or self.start_wh is None or self.last_s is None:
            return self.restarted(now_s if usable else None, battery_wh if usable else None)
        assert battery_wh is not None and capacity_wh is not None and power is not None
        elapsed = now_s - self.last_s
        if battery_wh > self.start_wh or power < 0 or not elapsed > 0:
            return self.restarted(now_s, battery_wh)
        metered = self.metered_wh + power * elapsed / 3600.0
        drop = self.start_wh - battery_wh
        if drop < config.gauge_window_pct / 100.0 * capacity_wh or metered <= 0:
            return replace(self, metered_wh=metered, last_s=now_s)
        ratio = _clamp(drop / metered, 0.5, 2.0)
        scale = self.scale + config.gauge_trust * (ratio - self.scale)
        return MeterCalibration(scale, battery_wh, 0.0, now_s)


@dataclass(frozen=True)
class EnergyEstimate:
    """Battery energy between gauge steps: the meter's integral, pulled towards the gauge.

    A gauge that reports whole percents makes the mission budget jump by a step's worth of energy divided by the
    time left; near the end that is larger than the gap between two variants, and the governor would flap. The
    meter (rescaled to the gauge) fills in between steps; the gauge, with `gauge_smoothing_s`, keeps it honest.
    A reading that disagrees by more than a window's worth (a battery swap, a charge) is taken as it is.
    """

    wh: float | None = None
    at_s: float | None = None

    def observe(
        self,
        config: CorrectionConfig,
        now_s: float,
        gauge_wh: float | None,
        capacity_wh: float | None,
        power_w: float | None,
        charging: bool,
    ) -> EnergyEstimate:
        power = finite(power_w)
        if gauge_wh is None:
            return EnergyEstimate()
        if self.wh is None or self.at_s is None or charging or power is None or power < 0:
            return EnergyEstimate(gauge_wh, now_s)
        elapsed = now_s - self.at_s
        if not elapsed > 0 or config.gauge_smoothing_s <= 0:
            return EnergyEstimate(gauge_wh if config.gauge_smoothing_s <= 0 else self.wh, now_s)
        predicted = self.wh - power * elapsed / 3600.0
        estimate = predicted + min(1.0, elapsed / config.gauge_smoothing_s) * (gauge_wh - predicted)
        jump = config.gauge_window_pct / 100.0 * capacity_wh if capacity_wh is not None else 0.0
        if abs(gauge_wh - estimate) > jump:
            estimate = gauge_wh
        if capacity_wh is not None:
            estimate = min(estimate, capacity_wh)
        return EnergyEstimate(max(0.0, estimate), now_s)
