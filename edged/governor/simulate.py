"""`edged governor simulate`: replay a scenario under several policies and score them against the oracle.

Every policy faces the same world (same noise draws). Each step: the policy sees what a device would (fuel gauge,
biased and noisy power meter, measured latency, the floor in force) and picks (variant, fps); the battery then
drains by the true power. A battery at the scenario's cutoff ends the mission for that policy: nothing more is
detected, and the remaining time scores zero accuracy.

Figures here are simulated, and the report says so, with the assumptions the scenario states.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from edged.governor.config import mission_end_s
from edged.governor.decision import Decision, GovernorInputs
from edged.governor.governor import Governor
from edged.governor.oracle import OraclePlan, plan
from edged.governor.profiles import VariantProfile
from edged.governor.scenario import LoadedScenario
from edged.governor.world import World, build_world

ACCURACY_BAR = 0.95  # DESIGN.md quality bar: the governor reaches 0.95 × the oracle's time-weighted accuracy
FLOOR_TOLERANCE_MIN = 0.5  # the oracle decides per epoch, the governor per step: they may differ by this much


@dataclass(frozen=True)
class Observation:
    """What a device can see at the start of a step; `true_energy_wh` is for the oracle alone."""

    step: int
    now_s: float
    battery_wh: float
    battery_pct: float
    capacity_wh: float
    power_w: float | None
    latency_ms: float | None
    measured_variant: str | None
    inference_fps: float | None
    floor: float
    floor_expires_s: float | None
    charging: bool
    true_energy_wh: float


class SimPolicy(Protocol):
    name: str
    description: str

    def act(self, seen: Observation) -> tuple[int, float]: ...

    def last_decision(self) -> Decision | None: ...


# --- the policies -------------------------------------------------------------------------------------------------


class FixedPolicy:
    def __init__(self, name: str, description: str, variant: int, fps: float) -> None:
        self.name, self.description, self.variant, self.fps = name, description, variant, fps

    def act(self, seen: Observation) -> tuple[int, float]:
        return self.variant, self.fps

    def last_decision(self) -> Decision | None:
        return None


class BatteryBandsPolicy:
    """The common fixed rule: the variants ranked by accuracy, the battery range split evenly among them."""

    name = "battery-bands"

    def __init__(self, variants: list[VariantProfile], fps: float) -> None:
        self.ranked = sorted(range(len(variants)), key=lambda i: (-variants[i].accuracy, variants[i].energy_mj))
        self.fps = fps
        share = 100.0 / len(variants)
        self.description = f"accuracy rank by battery level, {share:.0f}%-wide bands (most accurate on top)"

    def act(self, seen: Observation) -> tuple[int, float]:
        band = int((100.0 - seen.battery_pct) * len(self.ranked) / 100.0)
        return self.ranked[min(len(self.ranked) - 1, max(0, band))], self.fps

    def last_decision(self) -> Decision | None:
        return None


class GovernorPolicy:
    name = "governor"

    def __init__(self, world: World) -> None:
        scenario = world.scenario
        self.governor = Governor(scenario.governor, world.variants)
        self.index = {v.id: i for i, v in enumerate(world.variants)}
        self.frame_overhead_mj = scenario.device.frame_overhead_mj  # the daemon measures its own
        start = dt.datetime.combine(dt.date(2000, 1, 1), scenario.start_time or dt.time(0, 0))
        self.mission_end_s = mission_end_s(scenario.governor, 0.0, start)
        knows = "knows the mission end" if self.mission_end_s is not None else "battery bands (mission end unknown)"
        self.description = f"edged's governor ({scenario.governor.mode}; {knows})"

    def observed(self, seen: Observation) -> dict[str, Any]:
        """What the daemon would hand the governor at this step: the fields of its GovernorInputs."""
        return {
            "now_s": seen.now_s,
            "battery_wh": seen.battery_wh,
            "battery_pct": seen.battery_pct,
            "battery_capacity_wh": seen.capacity_wh,
            "power_w": seen.power_w,
            "latency_ms": seen.latency_ms,
            "measured_variant": seen.measured_variant,
            "inference_fps": seen.inference_fps,
            "accuracy_floor": seen.floor,
            "floor_expires_s": seen.floor_expires_s,
            "charging": seen.charging,
            "mission_end_s": self.mission_end_s,
        }

    def act(self, seen: Observation) -> tuple[int, float]:
        inputs = GovernorInputs(**self.observed(seen), frame_overhead_mj=self.frame_overhead_mj)
        decision = self.governor.tick(inputs)
        assert decision.variant is not None  # scenarios have at least one variant
        return self.index[decision.variant], decision.fps

    def last_decision(self) -> Decision | None:
        return self.governor.last


class OraclePolicy:
    name = "oracle"

    def __init__(self, world: World, solution: OraclePlan) -> None:
        self.plan = solution
        self.choice = (0, world.scenario.governor.fps_target)
        sim = world.scenario.simulation
        self.description = (
            f"offline DP knowing the whole mission ({sim.oracle_step_s:g} s epochs, {sim.energy_grid} energy "
            f"levels, {sim.oracle_fps_levels} fps levels; the upper bound up to that grid)"
        )

    def act(self, seen: Observation) -> tuple[int, float]:
        if seen.step % self.plan.steps_per_epoch == 0:
            epoch = seen.step // self.plan.steps_per_epoch
            self.choice = self.plan.actions[self.plan.best_action(epoch, seen.true_energy_wh)]
        return self.choice

    def last_decision(self) -> Decision | None:
        return None


def policies_for(world: World, solution: OraclePlan) -> list[SimPolicy]:
    variants, fps = world.variants, world.scenario.governor.fps_target
    best = max(range(len(variants)), key=lambda i: (variants[i].accuracy, -variants[i].energy_mj))
    cheapest = min(range(len(variants)), key=lambda i: (variants[i].energy_mj, -variants[i].accuracy))
    return [
        FixedPolicy("always-most-accurate", f"{variants[best].id} at {fps:g} fps, whatever happens", best, fps),
        FixedPolicy("always-cheapest", f"{variants[cheapest].id} at {fps:g} fps, whatever happens", cheapest, fps),
        BatteryBandsPolicy(variants, fps),
        GovernorPolicy(world),
        OraclePolicy(world, solution),
    ]


# --- running ------------------------------------------------------------------------------------------------------


class SwitchEvent(BaseModel):
    at_min: float
    from_variant: str
    to_variant: str
    reason: str | None = Field(description="the decision's own words (the governor's only)")


class DecisionEntry(BaseModel):
    """One entry of the decision log: written whenever the variant, the fps or the flags change."""

    at_min: float
    variant: str
    fps: float
    flags: list[str]
    reason: str


class PolicyResult(BaseModel):
    policy: str
    description: str
    time_weighted_accuracy: float = Field(
        description="mission mean of the running variant's mAP50-95 × delivered/target fps; 0 once failed"
    )
    vs_oracle: float | None = Field(description="time_weighted_accuracy / the oracle's")
    mission_completed: bool = Field(description="the battery stayed above the cutoff for the whole mission")
    failed_at_min: float | None
    floor_violation_min: float = Field(description="time below the accuracy floor (or failed while one was set)")
    latency_violation_min: float = Field(description="time running a variant whose true p95 exceeds the SLO")
    energy_used_wh: float
    battery_end_pct: float
    battery_min_pct: float
    switches: int
    mean_fps: float = Field(description="frames processed per second, averaged over the mission")
    minutes_by_variant: dict[str, float]
    switch_log: list[SwitchEvent]
    decision_log: list[DecisionEntry] = Field(
        default_factory=list, description="the governor's decisions with their reasons, each time one changed"
    )


@dataclass
class Trace:
    """Per-step record for the plot (not in the JSON report)."""

    minutes: list[float] = field(default_factory=list)
    battery_pct: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)  # the running variant's mAP; 0 once failed
    floor: list[float] = field(default_factory=list)
    fps: list[float] = field(default_factory=list)  # frames processed per second; 0 once failed

    def record(self, t_s: float, battery_pct: float, accuracy: float, floor: float, fps: float) -> None:
        self.minutes.append(t_s / 60)
        self.battery_pct.append(battery_pct)
        self.accuracy.append(accuracy)
        self.floor.append(floor)
        self.fps.append(fps)


@dataclass(frozen=True)
class PolicyRun:
    result: PolicyResult
    trace: Trace


@dataclass
class _Tally:
    accuracy_s: float = 0.0
    floor_violation_s: float = 0.0
    latency_violation_s: float = 0.0
    energy_wh: float = 0.0
    frames: float = 0.0
    seconds_by_variant: dict[int, float] = field(default_factory=dict)
    switches: list[SwitchEvent] = field(default_factory=list)
    decisions: list[DecisionEntry] = field(default_factory=list)


Readings = tuple[float | None, float | None, str | None, float | None]  # power, latency, variant, fps
NO_READINGS: Readings = (None, None, None, None)


def run_policy(world: World, policy: SimPolicy) -> PolicyRun:
    energy, lowest, failed_at = world.start_wh, world.start_wh, None
    tally, trace = _Tally(), Trace()
    readings, previous = NO_READINGS, None
    for k, t in enumerate(world.times_s):
        variant, fps = policy.act(_observation(world, k, energy, readings))
        decision = policy.last_decision()
        if previous is not None and variant != previous:
            tally.switches.append(
                SwitchEvent(
                    at_min=t / 60,
                    from_variant=world.variants[previous].id,
                    to_variant=world.variants[variant].id,
                    reason=decision.reason if decision else None,
                )
            )
        previous = variant
        _log_decision(tally, t, decision)
        power = world.true_power_w(variant, fps, k)
        after = min(world.capacity_wh, energy + (world.harvest_w[k] - power) * world.step_s / 3600.0)
        ran_s = world.step_s
        if after <= world.cutoff_wh:
            ran_s = world.step_s * (energy - world.cutoff_wh) / max(energy - after, 1e-12)
            failed_at, after = t + ran_s, world.cutoff_wh
        _count(world, tally, k, variant, fps, ran_s, power)
        energy, lowest = after, min(lowest, after)
        trace.record(
            t,
            100.0 * energy / world.capacity_wh,
            world.variants[variant].accuracy,
            world.floor[k],
            world.delivered_fps(variant, fps, k),
        )
        if failed_at is not None:
            _after_failure(world, k + 1, tally, trace, energy)
            break
        readings = _readings(world, k, variant, fps, power)
    return PolicyRun(_result(world, policy, tally, energy, lowest, failed_at), trace)


def _log_decision(tally: _Tally, t_s: float, decision: Decision | None) -> None:
    if decision is None or decision.variant is None:
        return
    last = tally.decisions[-1] if tally.decisions else None
    if last is None or (last.variant, last.fps, last.flags) != (decision.variant, decision.fps, decision.flags):
        entry = DecisionEntry(
            at_min=t_s / 60, variant=decision.variant, fps=decision.fps, flags=decision.flags, reason=decision.reason
        )
        tally.decisions.append(entry)


def _observation(world: World, k: int, energy: float, readings: Readings) -> Observation:
    """What the device sees at the start of step k: a quantised gauge and the readings of the step before."""
    gauge_pct = _gauge(100.0 * energy / world.capacity_wh, world.scenario.battery.gauge_resolution_pct)
    power, latency, measured, fps = readings
    return Observation(
        step=k,
        now_s=world.times_s[k],
        battery_wh=gauge_pct * world.capacity_wh / 100.0,
        battery_pct=gauge_pct,
        capacity_wh=world.capacity_wh,
        power_w=power,
        latency_ms=latency,
        measured_variant=measured,
        inference_fps=fps,
        floor=world.floor[k],
        floor_expires_s=world.floor_expires_s[k],
        charging=world.harvest_w[k] > 0 or (k > 0 and world.harvest_w[k - 1] > 0),
        true_energy_wh=energy,
    )


def _readings(world: World, k: int, variant: int, fps: float, power: float) -> Readings:
    """The biased, noisy meter and the jittery latency the device measured during step k."""
    meter, jitter = world.scenario.power_meter, world.scenario.simulation.latency_jitter
    meter_w = power * (1.0 + meter.bias) + meter.noise_w * world.meter_noise[k]
    latency = world.true_p50_ms(variant, k) * max(0.05, 1.0 + jitter * world.latency_noise[k])
    return meter_w, latency, world.variants[variant].id, world.delivered_fps(variant, fps, k)


def _count(world: World, tally: _Tally, k: int, variant: int, fps: float, ran_s: float, power: float) -> None:
    profile, delivered = world.variants[variant], world.delivered_fps(variant, fps, k)
    tally.accuracy_s += profile.accuracy * min(1.0, delivered / world.scenario.governor.fps_target) * ran_s
    tally.floor_violation_s += ran_s if profile.accuracy < world.floor[k] - 1e-12 else 0.0
    tally.latency_violation_s += (
        ran_s if world.true_p95_ms(variant, k) > world.scenario.governor.latency_slo_ms else 0.0
    )
    tally.energy_wh += power * ran_s / 3600.0
    tally.frames += delivered * ran_s
    tally.seconds_by_variant[variant] = tally.seconds_by_variant.get(variant, 0.0) + ran_s


def _gauge(pct: float, resolution: float) -> float:
    return round(pct / resolution) * resolution if resolution > 0 else pct


def _after_failure(world: World, first: int, tally: _Tally, trace: Trace, energy: float) -> None:
    """Nothing runs after the battery gave out: no accuracy, and any floor in force is violated."""
    for k in range(first, world.steps):
        tally.floor_violation_s += world.step_s if world.floor[k] > 0 else 0.0
        trace.record(world.times_s[k], 100.0 * energy / world.capacity_wh, 0.0, world.floor[k], 0.0)


def _result(
    world: World, policy: SimPolicy, tally: _Tally, energy: float, lowest: float, failed_at: float | None
) -> PolicyResult:
    return PolicyResult(
        policy=policy.name,
        description=policy.description,
        time_weighted_accuracy=tally.accuracy_s / world.mission_s,
        vs_oracle=None,
        mission_completed=failed_at is None,
        failed_at_min=None if failed_at is None else failed_at / 60,
        floor_violation_min=tally.floor_violation_s / 60,
        latency_violation_min=tally.latency_violation_s / 60,
        energy_used_wh=tally.energy_wh,
        battery_end_pct=100.0 * energy / world.capacity_wh,
        battery_min_pct=100.0 * lowest / world.capacity_wh,
        switches=len(tally.switches),
        mean_fps=tally.frames / world.mission_s,
        minutes_by_variant={world.variants[i].id: s / 60 for i, s in sorted(tally.seconds_by_variant.items())},
        switch_log=tally.switches,
        decision_log=tally.decisions,
    )


# --- the report ---------------------------------------------------------------------------------------------------


class QualityBars(BaseModel):
    governor_vs_oracle: float | None
    accuracy_bar: float = ACCURACY_BAR
    accuracy_met: bool = Field(description="governor ≥ accuracy_bar × oracle time-weighted accuracy")
    completes_when_oracle_does: bool = Field(
        description="the governor completes whenever the oracle does, and is below the floor no longer than the "
        "oracle (give or take floor_tolerance_min): completing by giving up the floor is not completing"
    )
    governor_below_floor_min: float
    oracle_below_floor_min: float
    floor_tolerance_min: float = FLOOR_TOLERANCE_MIN
    most_accurate_fails_where_governor_completes: bool


class SimulationReport(BaseModel):
    """`edged governor simulate --json`."""

    format: Literal["edged.governor.simulation/v1"] = "edged.governor.simulation/v1"
    scenario: str
    file: str
    description: str
    figures: Literal["simulated"] = Field("simulated", description="every figure here comes from a simulation")
    assumptions: list[str]
    variant_figures: list[str] = Field(description="where each variant's figures come from")
    variants: list[VariantProfile]
    mission_min: float
    step_s: float
    policies: list[PolicyResult]
    quality_bars: QualityBars

    def policy(self, name: str) -> PolicyResult:
        return next(p for p in self.policies if p.policy == name)


@dataclass(frozen=True)
class Simulation:
    report: SimulationReport
    runs: list[PolicyRun]
    world: World


def simulate(loaded: LoadedScenario) -> Simulation:
    world = build_world(loaded)
    solution = plan(world)
    runs = [run_policy(world, policy) for policy in policies_for(world, solution)]
    oracle = next(r.result for r in runs if r.result.policy == "oracle")
    results = [r.result.model_copy(update={"vs_oracle": _ratio(r.result.time_weighted_accuracy, oracle)}) for r in runs]
    runs = [PolicyRun(result, run.trace) for result, run in zip(results, runs)]
    scenario = loaded.scenario
    report = SimulationReport(
        scenario=scenario.name,
        file=str(loaded.path),
        description=scenario.description,
        assumptions=scenario.assumptions,
        variant_figures=loaded.figures,
        variants=[_plain(v) for v in loaded.variants],
        mission_min=scenario.mission_min,
        step_s=world.step_s,
        policies=results,
        quality_bars=_bars(results),
    )
    return Simulation(report, runs, world)


def _plain(variant: VariantProfile) -> VariantProfile:
    """The governor's view of a variant (an inline scenario variant also carries its source, listed apart)."""
    return VariantProfile.model_validate(variant.model_dump(include=set(VariantProfile.model_fields)))


def _ratio(accuracy: float, oracle: PolicyResult) -> float | None:
    best = oracle.time_weighted_accuracy
    return accuracy / best if best > 0 else None


def _bars(results: list[PolicyResult]) -> QualityBars:
    by_name = {r.policy: r for r in results}
    governor, oracle, best = by_name["governor"], by_name["oracle"], by_name["always-most-accurate"]
    ratio = governor.vs_oracle
    completes = governor.mission_completed or not oracle.mission_completed
    keeps_floor = governor.floor_violation_min <= oracle.floor_violation_min + FLOOR_TOLERANCE_MIN
    return QualityBars(
        governor_vs_oracle=ratio,
        accuracy_met=ratio is not None and ratio >= ACCURACY_BAR,
        completes_when_oracle_does=completes and keeps_floor,
        governor_below_floor_min=governor.floor_violation_min,
        oracle_below_floor_min=oracle.floor_violation_min,
        most_accurate_fails_where_governor_completes=governor.mission_completed and not best.mission_completed,
    )
