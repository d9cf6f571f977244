"""The true course of a simulated mission, step by step: what every policy faces.

Built once per scenario and shared by every policy, noise included, so that policies differ only in what they
choose. Only the oracle reads it ahead of time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edged.governor.needs import AccuracyNeeds
from edged.governor.profiles import VariantProfile
from edged.governor.scenario import HarvestPeriod, LoadedScenario, Scenario, Slowdown


@dataclass(frozen=True)
class World:
    scenario: Scenario
    variants: list[VariantProfile]
    step_s: float
    times_s: list[float]  # start of each step
    floor: list[float]  # accuracy floor in force (from the floor commands, through AccuracyNeeds)
    floor_expires_s: list[float | None]  # when that floor ends, as the command said
    latency_factor: list[float]
    energy_factor: list[float]
    harvest_w: list[float]
    load_w: list[float]  # extra draw of the scenario's loads, whatever variant runs
    meter_noise: list[float]  # standard normal draws, one per step
    latency_noise: list[float]

    @property
    def steps(self) -> int:
        return len(self.times_s)

    @property
    def mission_s(self) -> float:
        return self.scenario.mission_min * 60.0

    @property
    def capacity_wh(self) -> float:
        return self.scenario.battery.capacity_wh

    @property
    def start_wh(self) -> float:
        return self.capacity_wh * self.scenario.battery.start_pct / 100.0

    @property
    def cutoff_wh(self) -> float:
        return self.capacity_wh * self.scenario.battery.cutoff_pct / 100.0

    def true_p50_ms(self, variant: int, step: int) -> float:
        return self.variants[variant].latency_p50_ms * self.latency_factor[step]

    def true_p95_ms(self, variant: int, step: int) -> float:
        return self.variants[variant].latency_p95_ms * self.latency_factor[step]

    def delivered_fps(self, variant: int, fps: float, step: int) -> float:
        """A variant slower than the frame interval processes fewer frames than asked."""
        return min(fps, 1000.0 / self.true_p50_ms(variant, step))

    def true_power_w(self, variant: int, fps: float, step: int) -> float:
        delivered = self.delivered_fps(variant, fps, step)
        per_frame = self.variants[variant].joules * self.energy_factor[step] + self.overhead_j
        return self.scenario.device.idle_w + self.load_w[step] + delivered * per_frame

    @property
    def overhead_j(self) -> float:
        """The pipeline's own energy per processed frame (decode, message, outbox, publish)."""
        return self.scenario.device.frame_overhead_mj / 1000.0


def build_world(loaded: LoadedScenario) -> World:
    scenario = loaded.scenario
    mission_s = scenario.mission_min * 60.0
    steps = max(1, round(mission_s / scenario.simulation.step_s))
    step_s = mission_s / steps  # a whole number of steps
    times = [k * step_s for k in range(steps)]
    rng = np.random.default_rng(scenario.simulation.seed)
    floors = _floors(scenario, times)
    return World(
        scenario=scenario,
        variants=loaded.variants,
        step_s=step_s,
        times_s=times,
        floor=[floor for floor, _ in floors],
        floor_expires_s=[expires for _, expires in floors],
        latency_factor=[math.prod(s.latency for s in scenario.slowdowns if _within(s, t)) for t in times],
        energy_factor=[math.prod(s.energy for s in scenario.slowdowns if _within(s, t)) for t in times],
        harvest_w=[sum(h.watts for h in scenario.harvest if _within(h, t)) for t in times],
        meter_noise=rng.standard_normal(steps).tolist(),
        latency_noise=rng.standard_normal(steps).tolist(),
        load_w=_loads(scenario, times, rng),  # drawn last: scenarios without loads keep their noise
    )


def _loads(scenario: Scenario, times: list[float], rng: np.random.Generator) -> list[float]:
    total = np.zeros(len(times))
    for load in scenario.loads:
        draw = np.array([load.watts_at(t) for t in times])
        if load.noise_w > 0:
            draw = np.where(draw > 0, np.maximum(0.0, draw + load.noise_w * rng.standard_normal(len(times))), 0.0)
        total += draw
    return total.tolist()


def _floors(scenario: Scenario, times: list[float]) -> list[tuple[float, float | None]]:
    """Replay the floor commands through AccuracyNeeds, as the daemon would apply them from MQTT."""
    events = sorted(scenario.floors, key=lambda e: e.at_min)
    needs = AccuracyNeeds(scenario.governor.accuracy_floor)
    floors: list[tuple[float, float | None]] = []
    upcoming = 0
    for t in times:
        while upcoming < len(events) and events[upcoming].at_min * 60 <= t:
            event = events[upcoming]
            at = event.at_min * 60
            for_s = event.for_min * 60 if event.for_min is not None else None
            needs = AccuracyNeeds(needs.base) if event.floor is None else needs.with_floor(event.floor, at, for_s)
            upcoming += 1
        floors.append((needs.floor_at(t), needs.expires_at(t)))
    return floors


def _within(period: Slowdown | HarvestPeriod, t: float) -> bool:
    return period.from_min * 60 <= t < period.to_min * 60
