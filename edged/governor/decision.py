"""The decision: which variant, at what fps, and why — a pure function of the policy, the profiles and the inputs.

`decide(policy, variants, state, inputs)` returns the decision and the state to pass next time. Nothing here
reads a clock, a file or the network, so the same call runs in the daemon, in the simulator and under hypothesis.

Rules (DESIGN.md, "Governor"): feasible = accuracy ≥ floor, predicted p95 ≤ SLO, idle + fps·E·correction ≤
budget. Pick the most accurate feasible variant (ties: less energy). When nothing is feasible, the needs give way in
`degradation_order` (default: lower fps to the minimum, then exceed the budget with the cheapest variant meeting
the floor, then drop the floor). Hysteresis: a minimum dwell between switches (commands excepted), a margin before
switching to a costlier variant, and bands on the battery level.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edged.governor.bank import EnergyBank, bank_cap_j, set_aside, spending_phase_s
from edged.governor.budget import Battery, Budget, BudgetBasis, power_budget
from edged.governor.config import GovernorConfig, GovernorMode, Relaxation
from edged.governor.correction import Corrections, EnergyEstimate, Measurement, MeterCalibration, finite
from edged.governor.profiles import VariantProfile

Flag = Literal[
    "floor_unmet", "over_budget", "borrowing", "latency_slo_unmet", "fps_reduced", "held_by_dwell", "no_variants"
]
Objective = Literal["accurate", "cheap"]
FPS_STEP = 0.1  # fps is lowered in these steps, so that noise in the budget does not jitter it
FPS_RISE_SHARE = 0.05  # ... and raised only by this share of the target at least (or straight to the target)


class GovernorInputs(BaseModel):
    """One tick's view of the world. Plain numbers: the daemon adapts its power samples and frame stats to them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    now_s: float = Field(description="monotonic seconds; the same clock as mission_end_s")
    battery_wh: float | None = Field(None, description="energy remaining")
    battery_pct: float | None = Field(None, description="state of charge, 0..100")
    battery_capacity_wh: float | None = Field(None, description="full capacity; relates Wh and %")
    on_external_power: bool = Field(False, description="plugged in: power is not limited")
    charging: bool = Field(False, description="energy flows into the battery (solar, USB): gauge and meter differ")
    power_w: float | None = Field(None, description="measured device power, mean since the last tick")
    latency_ms: float | None = Field(None, description="median inference latency since the last tick")
    measured_variant: str | None = Field(None, description="the variant those readings belong to (default: current)")
    inference_fps: float | None = Field(
        None, description="inferences per second since the last tick (default: the decided fps)"
    )
    accuracy_floor: float | None = Field(None, description="the floor in force (AccuracyNeeds); default: policy's")
    floor_expires_s: float | None = Field(None, description="when that floor ends (AccuracyNeeds.expires_at)")
    mission_end_s: float | None = Field(None, description="mission end on the now_s clock; enables budgeting")
    frame_overhead_mj: float | None = Field(
        None,
        description="the pipeline's own energy per processed frame (decode, message, outbox, publish), measured; "
        "added to every variant's energy per inference",
    )


class Decision(BaseModel):
    """What to run and why; published on `governor/decision` when it switches, on `state` always."""

    model_config = ConfigDict(frozen=True)

    at_s: float
    variant: str | None
    fps: float
    previous_variant: str | None
    switched: bool
    reason: str
    flags: list[Flag]
    mode: GovernorMode
    accuracy: float | None = Field(description="the chosen variant's profile mAP50-95")
    accuracy_floor: float
    budget_w: float | None = Field(description="null: no power limit")
    budget_basis: BudgetBasis
    budget_detail: str
    predicted_power_w: float | None
    predicted_p95_ms: float | None
    latency_ratio: float = Field(description="measured / profile latency in effect for the chosen variant")
    power_ratio: float = Field(description="measured / profile energy per inference in effect")
    meter_scale: float = Field(description="fuel-gauge / power-meter energy, learnt; applied to power readings")
    battery_pct: float | None


@dataclass(frozen=True)
class GovernorState:
    """What one decision hands to the next: the running choice, its age, and what was learnt."""

    variant: str | None = None
    fps: float | None = None
    switched_at_s: float | None = None
    last_tick_s: float | None = None
    band: int | None = None
    corrections: Corrections = field(default_factory=Corrections)
    meter: MeterCalibration = field(default_factory=MeterCalibration)
    energy: EnergyEstimate = field(default_factory=EnergyEstimate)
    commands: tuple[float, str, str | None] | None = None
    bank: EnergyBank = field(default_factory=EnergyBank)


@dataclass(frozen=True)
class Prediction:
    """A profile corrected by what was measured."""

    profile: VariantProfile
    p50_ms: float
    p95_ms: float
    joules: float
    idle_w: float

    @property
    def id(self) -> str:
        return self.profile.id

    @property
    def accuracy(self) -> float:
        return self.profile.accuracy

    @property
    def max_fps(self) -> float:
        return 1000.0 / self.p50_ms

    def power_w(self, fps: float) -> float:
        return self.idle_w + fps * self.joules

    def affordable_fps(self, watts: float) -> float:
        if self.joules <= 0:
            return math.inf if watts >= self.idle_w else -math.inf
        return (watts - self.idle_w) / self.joules


@dataclass(frozen=True)
class Needs:
    floor: float  # what selection uses: the request, capped at the best any variant can do
    requested_floor: float
    slo_ms: float
    budget: Budget
    floor_left_s: float | None = None  # a temporary floor: how long it still lasts
    slack_w: float = 0.0  # the reserve's hysteresis, as watts over the time left: the running choice keeps it
    bank_j: float = 0.0  # surplus banked to spend on a costlier variant for a while (edged.governor.bank)
    dwell_s: float = 1.0  # the running variant keeps the bank while it lasts a dwell ...
    phase_s: float = 1.0  # ... and a costlier one is started on it when it lasts this long


@dataclass(frozen=True)
class Option:
    prediction: Prediction
    fps: float
    relaxed: frozenset[str] = frozenset()
    note: str = ""
    borrowed_w: float | None = None  # the power a temporary floor may borrow from the rest of the mission


def decide(
    policy: GovernorConfig, variants: Sequence[VariantProfile], state: GovernorState, inputs: GovernorInputs
) -> tuple[Decision, GovernorState]:
    """The decision for this tick, and the state to pass to the next one. Never raises on odd inputs."""
    now = _now(inputs, state)
    by_id = {v.id: v for v in variants}
    gauge = Battery.read(inputs.battery_wh, inputs.battery_pct, inputs.battery_capacity_wh, inputs.on_external_power)
    charging = inputs.charging or gauge.external_power
    meter = state.meter.observe(policy.correction, now, gauge.energy_wh, gauge.capacity_wh, inputs.power_w, charging)
    corrections = _learn(policy, by_id, state, inputs, now, meter.scale)
    power = finite(inputs.power_w)
    energy = state.energy.observe(
        policy.correction,
        now,
        gauge.energy_wh,
        gauge.capacity_wh,
        power * meter.scale if power is not None else None,
        charging,
    )
    battery = gauge.with_energy(energy.wh)
    raw_budget = power_budget(policy, battery, now, inputs.mission_end_s, state.band)
    cap_j = bank_cap_j(raw_budget)
    since = now - state.last_tick_s if state.last_tick_s is not None else 0.0
    spent = power * meter.scale if power is not None else None
    bank = state.bank.settled(set_aside(raw_budget, state.bank).watts, spent, since, cap_j)
    budget = set_aside(raw_budget, bank)
    requested = _requested_floor(policy, inputs)
    commands = (requested, policy.mode, policy.pinned_variant)
    next_state = replace(
        state,
        last_tick_s=now,
        band=budget.band,
        corrections=corrections,
        meter=meter,
        energy=energy,
        commands=commands,
        bank=bank,
    )
    if not variants:
        return _no_variants(policy, state, now, requested, budget, battery), replace(next_state, variant=None)

    predictions = {v.id: _predict(v, corrections, policy, _overhead_j(inputs)) for v in variants}
    needs = _needs(policy, predictions.values(), requested, budget, _floor_left(inputs, now, requested))
    needs = replace(
        needs,
        slack_w=_bank_slack_w(policy, budget, battery),
        bank_j=bank.joules,
        dwell_s=max(policy.min_dwell_s, 1.0),
        phase_s=spending_phase_s(policy, budget),
    )
    current = predictions.get(state.variant) if state.variant is not None else None
    option, preface = _choose_for_mode(policy, list(predictions.values()), needs, current)

    held_for = _dwell_left(policy, state, now, commands) if current is not None else 0.0
    option = _steady_fps(policy, state, option)
    wanted = option
    if current is not None and option.prediction.id != current.id and held_for > 0:
        option = _hold(policy, needs, current)
    switched = state.variant is not None and option.prediction.id != state.variant
    reason = preface + _explain(policy, list(predictions.values()), option, wanted, state, needs, now)
    decision = _decision(policy, option, needs, state, switched, reason, now, battery, corrections, meter)
    if option is not wanted:
        decision = decision.model_copy(update={"flags": [*decision.flags, "held_by_dwell"]})
    started = state.variant is None or switched
    next_state = replace(
        next_state,
        variant=option.prediction.id,
        fps=option.fps,
        switched_at_s=now if started else state.switched_at_s,
    )
    return decision, next_state


# --- inputs -------------------------------------------------------------------------------------------------------


def _now(inputs: GovernorInputs, state: GovernorState) -> float:
    now = finite(inputs.now_s)
    if now is not None:
        return now
    return state.last_tick_s if state.last_tick_s is not None else 0.0


def _requested_floor(policy: GovernorConfig, inputs: GovernorInputs) -> float:
    floor = finite(inputs.accuracy_floor)
    return policy.accuracy_floor if floor is None else min(1.0, max(0.0, floor))


def _learn(
    policy: GovernorConfig,
    by_id: dict[str, VariantProfile],
    state: GovernorState,
    inputs: GovernorInputs,
    now: float,
    meter_scale: float,
) -> Corrections:
    """Fold the readings of the last period into the corrections, attributed to the variant that ran."""
    measured = inputs.measured_variant or state.variant
    profile = by_id.get(measured) if measured is not None else None
    if profile is None:
        return state.corrections
    fps = finite(inputs.inference_fps)
    fps = fps if fps is not None else state.fps
    power = finite(inputs.power_w)
    power = power * meter_scale if power is not None else None
    seen = Measurement(profile, fps if fps is not None else math.nan, inputs.latency_ms, power, _overhead_j(inputs))
    return state.corrections.observe(policy.correction, now, seen, policy.idle_power_w)


def _overhead_j(inputs: GovernorInputs) -> float:
    overhead = finite(inputs.frame_overhead_mj)
    return max(0.0, overhead) / 1000.0 if overhead is not None else 0.0


def _predict(
    profile: VariantProfile, corrections: Corrections, policy: GovernorConfig, overhead_j: float
) -> Prediction:
    latency = corrections.latency_ratio(profile.id)
    return Prediction(
        profile,
        profile.latency_p50_ms * latency,
        profile.latency_p95_ms * latency,
        profile.joules * corrections.power_ratio(profile.id) + overhead_j,
        corrections.idle_w(policy.idle_power_w),
    )


def _floor_left(inputs: GovernorInputs, now: float, requested: float) -> float | None:
    expires = finite(inputs.floor_expires_s)
    return expires - now if expires is not None and expires > now and requested > 0 else None


def _needs(
    policy: GovernorConfig,
    predictions: Iterable[Prediction],
    requested: float,
    budget: Budget,
    floor_left_s: float | None,
) -> Needs:
    """A floor above every variant means 'as accurate as possible': cap it at the best that keeps the SLO."""
    best = max((p.accuracy for p in predictions if p.p95_ms <= policy.latency_slo_ms), default=0.0)
    return Needs(min(requested, best), requested, policy.latency_slo_ms, budget, floor_left_s)


def _bank_slack_w(policy: GovernorConfig, budget: Budget, battery: Battery) -> float:
    """Hysteresis in energy: the running choice is kept while it would end the mission at most this many joules
    below the plan (spread over the time left, in watts). A burst of extra draw is paid from this bank rather than
    by a downgrade, and made back in calm air; the bank is never more than half the reserve, so the cut-off stays
    out of reach (no reserve, no bank)."""
    if budget.basis != "mission" or budget.remaining_s is None or budget.remaining_s <= 0:
        return 0.0
    share = policy.energy_hysteresis_pct / 100.0 * battery.capacity_wh if battery.capacity_wh is not None else 0.0
    bank_wh = min(share, battery.reserve_wh(policy) / 2.0)
    return bank_wh * 3600.0 / budget.remaining_s


def _dwell_left(
    policy: GovernorConfig, state: GovernorState, now: float, commands: tuple[float, str, str | None]
) -> float:
    """Seconds before a switch is allowed; a command (floor, mode, pin) just changed allows one at once."""
    if state.switched_at_s is None or (state.commands is not None and state.commands != commands):
        return 0.0
    return max(0.0, policy.min_dwell_s - (now - state.switched_at_s))


# --- choosing -----------------------------------------------------------------------------------------------------


def _choose_for_mode(
    policy: GovernorConfig, predictions: list[Prediction], needs: Needs, current: Prediction | None
) -> tuple[Option, str]:
    if policy.mode == "pinned":
        pinned = next((p for p in predictions if p.id == policy.pinned_variant), None)
        if pinned is not None:
            return Option(pinned, policy.fps_target, note="pinned by the operator"), ""
        preface = f"pinned variant '{policy.pinned_variant}' is not in the zoo; chose as in auto mode: "
        return _choose(policy, predictions, needs, current, "accurate"), preface
    if policy.mode == "performance":
        unlimited = replace(needs, budget=replace(needs.budget, watts=None))
        option = _choose(policy, predictions, unlimited, current, "accurate")
        return replace(option, note="performance mode: power not limited"), ""
    objective: Objective = "cheap" if policy.mode == "eco" else "accurate"
    return _choose(policy, predictions, needs, current, objective), ""


def _choose(
    policy: GovernorConfig,
    predictions: list[Prediction],
    needs: Needs,
    current: Prediction | None,
    objective: Objective,
) -> Option:
    """The best option, relaxing the needs in the policy's degradation order until something qualifies."""
    order = policy.degradation_order
    for depth in range(len(order) + 1):
        relaxed = frozenset(order[:depth])
        option = _best_in_stage(policy, predictions, needs, current, relaxed, objective)
        if option is None and depth == 0:
            option = _borrow_for_floor(policy, predictions, needs, current)
        if option is not None:
            return option
    fastest = min(predictions, key=lambda p: (p.p95_ms, p.joules))
    fps = max(min(policy.fps_min, fastest.max_fps), 1e-3)
    return Option(fastest, fps, frozenset({*order, "latency"}))


def _best_in_stage(
    policy: GovernorConfig,
    predictions: list[Prediction],
    needs: Needs,
    current: Prediction | None,
    relaxed: frozenset[Relaxation],
    objective: Objective,
) -> Option | None:
    current_ok = (
        current is not None
        and _meets_needs(current, needs, relaxed)
        and _fps_in_stage(policy, current, needs, relaxed, None, needs.slack_w) is not None
    )  # the switch-up margin guards a variant that qualifies; it must never keep the stage from one that does
    options = []
    for p in predictions:
        if not _meets_needs(p, needs, relaxed):
            continue
        upgrade = current_ok and current is not None and p.id != current.id and p.joules > current.joules
        running = current is not None and p.id == current.id
        slack = needs.slack_w + needs.bank_j / needs.dwell_s if running else 0.0
        fps = _fps_in_stage(policy, p, needs, relaxed, policy.switch_up_margin if upgrade else None, slack)
        if fps is None and upgrade and needs.bank_j > 0:  # spend the bank on it, for a phase at least
            fps = _fps_in_stage(policy, p, needs, relaxed, None, needs.bank_j / needs.phase_s)
        if fps is not None:
            options.append(Option(p, fps, relaxed))
    if not options:
        return None
    budget_binds = needs.budget.watts is not None and "budget" not in relaxed
    if objective == "cheap" or (needs.budget.watts is not None and not budget_binds):
        return min(options, key=lambda o: (o.prediction.joules, -o.prediction.accuracy))
    return max(options, key=lambda o: (o.fps, o.prediction.accuracy, -o.prediction.joules))


def _steady_fps(policy: GovernorConfig, state: GovernorState, option: Option) -> Option:
    """The running variant's fps rises only by a visible step: a budget that wanders with the readings must not
    move the frame rate up and down every tick. It falls as soon as the budget says so."""
    if option.prediction.id != state.variant or state.fps is None:
        return option
    step = max(FPS_STEP, FPS_RISE_SHARE * policy.fps_target)
    if state.fps < option.fps < min(state.fps + step, policy.fps_target):
        return replace(option, fps=state.fps)
    return option


def _meets_needs(p: Prediction, needs: Needs, relaxed: frozenset[Relaxation]) -> bool:
    return p.p95_ms <= needs.slo_ms and ("floor" in relaxed or p.accuracy >= needs.floor)


def _borrow_for_floor(
    policy: GovernorConfig, predictions: list[Prediction], needs: Needs, current: Prediction | None
) -> Option | None:
    """A floor that expires is a passing need: pay for it from the rest of the mission if that stays feasible.

    Allowed power = what leaves enough energy to finish the mission on the cheapest variant once the floor ends.
    Only the cheapest variant meeting the floor may use it, so the loan buys the need and nothing more.
    """
    budget, left = needs.budget, needs.floor_left_s
    if budget.spendable_wh is None or budget.remaining_s is None or left is None or budget.watts is None:
        return None
    during = min(left, budget.remaining_s)
    cheapest_after = min(p.power_w(min(policy.fps_target, p.max_fps)) for p in predictions)
    allowed = (budget.spendable_wh * 3600.0 - cheapest_after * (budget.remaining_s - during)) / during
    meeting = [
        p
        for p in predictions
        if p.accuracy >= needs.floor
        and p.p95_ms <= needs.slo_ms
        and policy.fps_target <= p.max_fps
        and p.power_w(policy.fps_target)
        <= allowed + (needs.slack_w if current is not None and p.id == current.id else 0)
    ]
    if not meeting:
        return None
    cheapest = min(meeting, key=lambda p: (p.joules, -p.accuracy))
    return Option(cheapest, policy.fps_target, borrowed_w=allowed)


def _fps_in_stage(
    policy: GovernorConfig,
    p: Prediction,
    needs: Needs,
    relaxed: frozenset[Relaxation],
    margin: float | None,
    slack_w: float = 0.0,
) -> float | None:
    """The fps `p` would run at in this stage, or None if it does not qualify. `margin`: a switch up; `slack_w`:
    the energy bank's allowance for the running variant."""
    watts = needs.budget.watts
    budget_binds = watts is not None and "budget" not in relaxed
    allowance = _with_margin(watts, p.idle_w, margin) if watts is not None and margin is not None else watts
    allowance = allowance + slack_w if allowance is not None else None
    if "fps" not in relaxed:
        fits = not budget_binds or (allowance is not None and p.power_w(policy.fps_target) <= allowance)
        return policy.fps_target if policy.fps_target <= p.max_fps and fits else None
    if not budget_binds and watts is not None:  # over budget anyway: spend as little as the minimum fps allows
        return policy.fps_min if policy.fps_min <= p.max_fps else None
    limit = min(policy.fps_target, p.max_fps)
    if budget_binds and allowance is not None:
        limit = min(limit, p.affordable_fps(allowance))
    if not limit >= policy.fps_min:  # also a budget below idle over a near-zero energy: -1e307 fps, no floor()
        return None
    fps = math.floor(limit / FPS_STEP + 1e-9) * FPS_STEP if math.isfinite(limit) else limit
    return round(fps, 6) if fps >= policy.fps_min else None


def _with_margin(watts: float, idle_w: float, margin: float) -> float:
    """The margin is a share of the power left for inference: idle power, which no switch changes, is not in it."""
    return watts - margin * max(0.0, watts - idle_w)


def _hold(policy: GovernorConfig, needs: Needs, current: Prediction) -> Option:
    """Keep the current variant through its dwell, at the best fps it qualifies for."""
    order = policy.degradation_order
    for depth in range(len(order) + 1):
        relaxed = frozenset(order[:depth])
        if not _meets_needs(current, needs, relaxed):
            continue
        held_fps = _fps_in_stage(policy, current, needs, relaxed, None, needs.slack_w)
        if held_fps is not None:
            return Option(current, held_fps, relaxed)
    return Option(current, max(min(policy.fps_min, current.max_fps), 1e-3), frozenset({*order, "latency"}))


# --- explaining ---------------------------------------------------------------------------------------------------


def _explain(
    policy: GovernorConfig,
    predictions: list[Prediction],
    option: Option,
    wanted: Option,
    state: GovernorState,
    needs: Needs,
    now: float,
) -> str:
    chosen = option.prediction
    why = _why_chosen(policy, option, needs)
    if state.variant is None:
        return f"started with {chosen.id}: {why}"
    previous = next((p for p in predictions if p.id == state.variant), None)
    if option is not wanted:
        since = now - (state.switched_at_s if state.switched_at_s is not None else now)
        return (
            f"kept {chosen.id} for its dwell ({since:.0f} of {policy.min_dwell_s:g} s) though "
            f"{wanted.prediction.id} is wanted: {_switch_cause(policy, previous, wanted, needs, state.variant)}"
        )
    if chosen.id != state.variant:
        cause = _switch_cause(policy, previous, option, needs, state.variant)
        detail = option.relaxed or option.borrowed_w is not None
        return f"switched {state.variant} -> {chosen.id}: {cause}" + (f"; {why}" if detail else "")
    return f"kept {chosen.id}: {why}" + _waiting_note(policy, predictions, option, needs)


def _why_chosen(policy: GovernorConfig, option: Option, needs: Needs) -> str:
    p, relaxed, budget = option.prediction, option.relaxed, needs.budget
    predicted = f"predicted {p.power_w(option.fps):.2f} W"
    floor_note = _floor_note(p, needs)
    if option.note:
        return option.note + _flag_notes(policy, option, needs)
    if option.borrowed_w is not None and needs.floor_left_s is not None:
        return (
            f"borrowing for floor {needs.floor:.3f} ({needs.floor_left_s / 60:.1f} min left): {predicted} over "
            f"{budget.describe()}, within the {option.borrowed_w:.2f} W that still lets the mission finish"
        )
    if "latency" in relaxed:
        return f"no variant keeps the {needs.slo_ms:g} ms SLO: fastest (predicted p95 {p.p95_ms:.0f} ms)" + floor_note
    if "floor" in relaxed and p.accuracy < needs.floor:
        return f"floor_unmet: nothing meets floor {needs.floor:.3f} within {budget.describe()}; {predicted}"
    if "budget" in relaxed and budget.watts is not None and p.power_w(option.fps) > budget.watts:
        return (
            f"over budget: nothing fits {budget.describe()} even at {policy.fps_min:g} fps; "
            f"{_cheapest(needs)} at {option.fps:g} fps, {predicted}" + floor_note
        )
    if option.fps < policy.fps_target:
        limit = budget.describe() if budget.watts is not None else f"p50 {p.p50_ms:.0f} ms"
        return f"fps lowered to {option.fps:g}: nothing fits {limit} at {policy.fps_target:g} fps" + floor_note
    if budget.watts is None:
        return f"most accurate keeping the {needs.slo_ms:g} ms SLO ({budget.detail})" + floor_note
    return f"most accurate within {budget.describe()} ({predicted})" + floor_note


def _cheapest(needs: Needs) -> str:
    return f"cheapest meeting floor {needs.floor:.3f}" if needs.floor > 0 else "cheapest variant"


def _floor_note(p: Prediction, needs: Needs) -> str:
    if p.accuracy + 1e-12 < needs.requested_floor:
        return f"; floor_unmet: floor {needs.requested_floor:.3f} > {p.id} {p.accuracy:.3f}"
    return ""


def _flag_notes(policy: GovernorConfig, option: Option, needs: Needs) -> str:
    p, notes = option.prediction, []
    if needs.budget.watts is not None and p.power_w(option.fps) > needs.budget.watts:
        notes.append(f"over budget: {needs.budget.describe()} < predicted {p.power_w(option.fps):.2f} W")
    if p.p95_ms > needs.slo_ms:
        notes.append(f"predicted p95 {p.p95_ms:.0f} ms > SLO {needs.slo_ms:g} ms")
    floor = _floor_note(p, needs)
    return "".join(f"; {n}" for n in notes) + floor


def _switch_cause(
    policy: GovernorConfig, previous: Prediction | None, new: Option, needs: Needs, previous_id: str
) -> str:
    """Why the previous variant had to go, or what made the new one affordable."""
    if previous is None:
        return f"{previous_id} is no longer in the zoo"
    if previous.p95_ms > needs.slo_ms:
        ratio = previous.p95_ms / previous.profile.latency_p95_ms
        return f"predicted p95 {previous.p95_ms:.0f} ms > SLO {needs.slo_ms:g} ms (slow-down ×{ratio:.2f} measured)"
    if previous.max_fps < policy.fps_target and new.fps > previous.max_fps:
        return f"{previous_id} cannot keep {policy.fps_target:g} fps (predicted p50 {previous.p50_ms:.0f} ms)"
    if previous.accuracy < needs.floor:
        return f"accuracy floor {needs.requested_floor:.3f} > {previous_id} {previous.accuracy:.3f}"
    budget = needs.budget
    old_power = previous.power_w(min(policy.fps_target, previous.max_fps))
    if budget.watts is not None and old_power > budget.watts and new.prediction.joules <= previous.joules:
        return f"{budget.describe()} < predicted {old_power:.2f} W"
    if policy.mode != "auto":
        return f"{policy.mode} mode"
    spend = new.prediction.power_w(new.fps)
    if new.prediction.accuracy > previous.accuracy and budget.watts is not None and spend > budget.watts:
        return (
            f"spending the {needs.bank_j:.0f} J banked under the budget: predicted {spend:.2f} W over "
            f"{budget.describe()} for a phase"
        )
    if new.prediction.accuracy > previous.accuracy:
        headroom = f" with {policy.switch_up_margin:.0%} headroom" if policy.switch_up_margin else ""
        covers = budget.describe() if budget.watts is not None else "no power limit"
        return f"{covers} covers predicted {new.prediction.power_w(new.fps):.2f} W{headroom}"
    if new.prediction.accuracy == previous.accuracy:
        return f"{new.prediction.id} is as accurate for less energy"
    return f"{new.prediction.id} keeps {new.fps:g} fps within {budget.describe()}"


def _waiting_note(policy: GovernorConfig, predictions: list[Prediction], option: Option, needs: Needs) -> str:
    """Name the more accurate variant that fits the budget but not yet its switch-up margin, if any."""
    watts = needs.budget.watts
    if policy.mode != "auto" or option.relaxed or watts is None or not policy.switch_up_margin:
        return ""
    chosen = option.prediction
    waiting = [
        p
        for p in predictions
        if p.accuracy > chosen.accuracy
        and p.p95_ms <= needs.slo_ms
        and policy.fps_target <= p.max_fps
        and p.power_w(policy.fps_target) <= watts
        and p.power_w(policy.fps_target) > _with_margin(watts, p.idle_w, policy.switch_up_margin)
    ]
    if not waiting:
        return ""
    best = max(waiting, key=lambda p: p.accuracy)
    return (
        f"; {best.id} (predicted {best.power_w(policy.fps_target):.2f} W) waits for "
        f"{policy.switch_up_margin:.0%} headroom"
    )


def _decision(
    policy: GovernorConfig,
    option: Option,
    needs: Needs,
    state: GovernorState,
    switched: bool,
    reason: str,
    now: float,
    battery: Battery,
    corrections: Corrections,
    meter: MeterCalibration,
) -> Decision:
    p = option.prediction
    power = p.power_w(option.fps)
    flags: list[Flag] = []
    if p.accuracy + 1e-12 < needs.requested_floor:
        flags.append("floor_unmet")
    if needs.budget.watts is not None and power > needs.budget.watts + 1e-9:
        flags.append("borrowing" if option.borrowed_w is not None else "over_budget")
    if p.p95_ms > needs.slo_ms or option.fps > p.max_fps + 1e-9:
        flags.append("latency_slo_unmet")
    if option.fps < policy.fps_target - 1e-9:
        flags.append("fps_reduced")
    return Decision(
        at_s=now,
        variant=p.id,
        fps=option.fps,
        previous_variant=state.variant,
        switched=switched,
        reason=reason,
        flags=flags,
        mode=policy.mode,
        accuracy=p.accuracy,
        accuracy_floor=needs.requested_floor,
        budget_w=needs.budget.watts,
        budget_basis=needs.budget.basis,
        budget_detail=needs.budget.detail,
        predicted_power_w=power,
        predicted_p95_ms=p.p95_ms,
        latency_ratio=corrections.latency_ratio(p.id),
        power_ratio=corrections.power_ratio(p.id),
        meter_scale=meter.scale,
        battery_pct=battery.pct,
    )


def _no_variants(
    policy: GovernorConfig, state: GovernorState, now: float, floor: float, budget: Budget, battery: Battery
) -> Decision:
    return Decision(
        at_s=now,
        variant=None,
        fps=0.0,
        previous_variant=state.variant,
        switched=state.variant is not None,
        reason="no variants to choose from (empty zoo, or none with a profile for this device)",
        flags=["no_variants"],
        mode=policy.mode,
        accuracy=None,
        accuracy_floor=floor,
        budget_w=budget.watts,
        budget_basis=budget.basis,
        budget_detail=budget.detail,
        predicted_power_w=None,
        predicted_p95_ms=None,
        latency_ratio=state.corrections.latency.value,
        power_ratio=state.corrections.power.ratio,
        meter_scale=state.meter.scale,
        battery_pct=battery.pct,
    )
