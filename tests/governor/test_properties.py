"""Properties of the decision under generated policies, zoos and inputs (hypothesis)."""

from __future__ import annotations

import math
import os
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.governor import GovernorConfig, GovernorInputs, GovernorState, VariantProfile, decide

PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("EDGED_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
any_float = st.floats(allow_nan=True, allow_infinity=True)
maybe_float = st.none() | any_float


@st.composite
def zoos(draw: st.DrawFn, min_size: int = 0) -> list[VariantProfile]:
    count = draw(st.integers(min_size, 6))
    variants = []
    for index in range(count):
        p50 = draw(st.floats(1.0, 500.0))
        variants.append(
            VariantProfile(
                id=f"v{index}",
                accuracy=draw(st.floats(0.0, 1.0)),
                latency_p50_ms=p50,
                latency_p95_ms=p50 * draw(st.floats(1.0, 2.0)),
                energy_mj=draw(st.floats(0.0, 2000.0)),
            )
        )
    return variants


@st.composite
def policies(draw: st.DrawFn) -> GovernorConfig:
    target = draw(st.floats(0.5, 30.0))
    return GovernorConfig(
        fps_target=target,
        fps_min=draw(st.floats(0.1, 1.0)) * target,
        latency_slo_ms=draw(st.floats(10.0, 1000.0)),
        idle_power_w=draw(st.floats(0.0, 10.0)),
        min_dwell_s=draw(st.floats(0.0, 120.0)),
        switch_up_margin=draw(st.floats(0.0, 0.5)),
        degradation_order=draw(st.permutations(["fps", "budget", "floor"])),
    )


def feasible(policy: GovernorConfig, variant: VariantProfile, floor: float, budget_w: float) -> bool:
    """DESIGN.md's feasibility, written out independently of the decision code."""
    idle = policy.idle_power_w or 0.0
    return (
        variant.accuracy >= floor
        and variant.latency_p95_ms <= policy.latency_slo_ms
        and policy.fps_target * variant.latency_p50_ms <= 1000.0
        and idle + policy.fps_target * variant.energy_mj / 1000.0 <= budget_w
    )


def mission_inputs(now_s: float, budget_w: float, floor: float) -> GovernorInputs:
    return GovernorInputs(now_s=now_s, battery_wh=1.0, mission_end_s=now_s + 3600.0 / budget_w, accuracy_floor=floor)


@PROPERTY_SETTINGS
@given(
    policy=policies(),
    variants=zoos(min_size=1),
    budget_w=st.floats(0.1, 60.0),
    floor=st.floats(0.0, 1.0),
    previous=st.integers(-1, 5),
)
def test_never_picks_an_infeasible_variant_when_a_feasible_one_exists(policy, variants, budget_w, floor, previous):
    running = variants[previous].id if 0 <= previous < len(variants) else None
    state = GovernorState(variant=running, fps=policy.fps_target, switched_at_s=-1e6 if running else None)
    decision, _ = decide(policy, variants, state, mission_inputs(0.0, budget_w, floor))
    options = [v for v in variants if feasible(policy, v, floor, budget_w * (1 - 1e-9))]
    if options:
        chosen = next(v for v in variants if v.id == decision.variant)
        assert feasible(policy, chosen, floor, budget_w * (1 + 1e-9))
        assert decision.fps == policy.fps_target
        if running is None:  # no margin in play: at least as accurate as any of them
            assert chosen.accuracy >= max(v.accuracy for v in options)


@PROPERTY_SETTINGS
@given(
    policy=policies(),
    variants=zoos(min_size=2),
    ticks=st.lists(
        st.tuples(
            st.floats(0.1, 30.0),  # seconds since the previous tick
            st.floats(0.1, 60.0),  # budget, W
            st.sampled_from([0.0, 0.0, 0.0, 0.3, 0.6]),  # floor commands, now and then
            st.floats(0.5, 3.0),  # measured latency / profile
            st.floats(0.0, 20.0),  # measured power, W
        ),
        min_size=2,
        max_size=40,
    ),
)
def test_never_switches_faster_than_the_dwell_time_unless_a_command_changed(policy, variants, ticks):
    profiles = {v.id: v for v in variants}
    state, now, running = GovernorState(), 0.0, None
    switches: list[tuple[float, float]] = []  # (time, floor in force)
    floor_changed_at = [0.0]
    previous_floor = 0.0
    for step, budget_w, floor, slowdown, power in ticks:
        now += step
        if floor != previous_floor:
            floor_changed_at.append(now)
            previous_floor = floor
        latency = profiles[running].latency_p50_ms * slowdown if running else None
        inputs = GovernorInputs(
            now_s=now,
            battery_wh=1.0,
            mission_end_s=now + 3600.0 / budget_w,
            accuracy_floor=floor,
            latency_ms=latency,
            power_w=power,
        )
        decision, state = decide(policy, variants, state, inputs)
        if decision.switched:
            switches.append((now, floor))
        running = decision.variant
    for (before, _), (after, _) in pairwise(switches):
        commanded = any(before < t <= after for t in floor_changed_at)
        assert after - before >= policy.min_dwell_s - 1e-9 or commanded


@PROPERTY_SETTINGS
@given(
    policy=policies(),
    variants=zoos(),
    now=any_float,
    battery_wh=maybe_float,
    battery_pct=maybe_float,
    capacity=maybe_float,
    power=maybe_float,
    latency=maybe_float,
    fps=maybe_float,
    floor=maybe_float,
    expires=maybe_float,
    end=maybe_float,
    external=st.booleans(),
    measured=st.none() | st.sampled_from(["v0", "v1", "unknown"]),
    mode=st.sampled_from(["auto", "eco", "performance", "pinned"]),
)
def test_never_crashes_on_any_input(
    policy, variants, now, battery_wh, battery_pct, capacity, power, latency, fps, floor, expires, end, external,
    measured, mode,
):  # fmt: skip
    policy = policy.model_copy(update={"mode": mode, "pinned_variant": "v1" if mode == "pinned" else None})
    inputs = GovernorInputs(
        now_s=now,
        battery_wh=battery_wh,
        battery_pct=battery_pct,
        battery_capacity_wh=capacity,
        on_external_power=external,
        power_w=power,
        latency_ms=latency,
        measured_variant=measured,
        inference_fps=fps,
        accuracy_floor=floor,
        floor_expires_s=expires,
        mission_end_s=end,
    )
    state = GovernorState()
    for _ in range(2):  # a second tick exercises the learnt state
        decision, state = decide(policy, variants, state, inputs)
        assert decision.reason
        if variants:
            assert decision.variant in {v.id for v in variants}
            assert math.isfinite(decision.fps) and decision.fps > 0
        else:
            assert decision.variant is None and "no_variants" in decision.flags
        decision.model_dump_json()  # publishable, whatever went in
