"""Governor II: extra draw the governor is not told about (bursts, ramps, steps), shared corrections, the energy
bank and the pipeline's per-frame overhead."""

from __future__ import annotations

import itertools
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.governor import Governor, GovernorInputs, GovernorState, decide
from edged.governor.bank import MAX_TICK_S, PHASE_DWELLS, EnergyBank, bank_cap_j, set_aside
from edged.governor.budget import Budget
from edged.governor.correction import POWER_RATIO_LIMITS, RATIO_LIMITS
from edged.governor.scenario import LoadEvent, load_scenario
from edged.governor.simulate import simulate
from edged.governor.world import build_world

from .conftest import BEST, GOOD, VARIANTS, policy
from .test_properties import PROPERTY_SETTINGS
from .test_scenario_errors import VALID, problems_of, write

CAPACITY_WH = 2.59


def tick_inputs(now_s: float, battery_wh: float, power_w: float, **extra: object) -> GovernorInputs:
    values: dict[str, object] = {
        "now_s": now_s,
        "battery_wh": battery_wh,
        "battery_capacity_wh": CAPACITY_WH,
        "power_w": power_w,
        "mission_end_s": 1200.0,
    }
    values.update(extra)
    return GovernorInputs.model_validate(values)


def fly(governor: Governor, seconds: int, start_wh: float, extra_w: object, start_s: int = 0) -> list[tuple]:
    """Run the governor against a device whose true power is its choice plus `extra_w(t)`; return its choices."""
    profiles = {v.id: v for v in VARIANTS}
    battery, choices, power = start_wh, [], None
    for t in range(start_s, start_s + seconds):
        decision = governor.tick(tick_inputs(float(t), battery, power if power is not None else math.nan))
        assert decision.variant is not None
        choices.append((decision.variant, decision.fps))
        power = 3.0 + decision.fps * profiles[decision.variant].joules + extra_w(t)  # type: ignore[operator]
        battery -= power / 3600.0
    return choices


# A 20-minute flight whose budget sits between `good` and `best` at 10 fps: good runs, with some room to spare.
START_WH = 0.21 * CAPACITY_WH + 1200 * 4.9 / 3600


def test_a_short_burst_is_paid_from_the_energy_bank_not_by_a_downgrade():
    governor = Governor(policy(reserve_pct=21, switch_up_margin=0.05), VARIANTS)
    calm = fly(governor, 300, START_WH, lambda t: 0.0)
    assert calm[-1][1] == 10 and calm[-1][0] in ("good", "best")  # good, and best while the bank allows
    battery = START_WH - 300 * 4.66 / 3600
    burst = fly(governor, 30, battery, lambda t: 2.5, start_s=300)  # +2.5 W for 30 s: a gust on the shared rail
    assert all(fps == 10 and variant in ("good", "best") for variant, fps in burst), burst


def test_a_lasting_step_in_base_power_is_learnt_and_the_plan_changes():
    governor = Governor(policy(reserve_pct=21, switch_up_margin=0.05), VARIANTS)
    fly(governor, 300, START_WH, lambda t: 0.0)
    battery = START_WH - 300 * 4.66 / 3600
    after = fly(governor, 600, battery, lambda t: 1.5, start_s=300)  # a radio switches on and stays on
    variant, fps = after[-1]
    assert (variant, fps) != ("good", 10)  # it cannot afford good at 10 fps with 1.5 W more, and knows it
    assert governor.state.corrections.power.idle_w == pytest.approx(4.5, abs=0.2)  # the base power now ...
    assert governor.state.corrections.idle_w(3.0) > 4.2  # ... and the one planned with, averaged over 300 s


def test_a_variants_own_deviation_fades_back_to_the_shared_ratio_while_it_does_not_run():
    config = policy(min_dwell_s=0)
    config = config.model_copy(update={"correction": config.correction.model_copy(update={"variant_memory_s": 60})})
    state = GovernorState()
    for t in range(120):  # best measured 1.5x slower than the others
        inputs = GovernorInputs(now_s=t, latency_ms=BEST.latency_p50_ms * 1.5, measured_variant="best")
        _, state = decide(config, VARIANTS, state, inputs)
        inputs = GovernorInputs(now_s=t + 0.5, latency_ms=GOOD.latency_p50_ms, measured_variant="good")
        _, state = decide(config, VARIANTS, state, inputs)
    learnt = state.corrections.latency_by_variant["best"]
    assert learnt > 1.15
    for t in range(120, 600):  # best no longer runs
        _, state = decide(config, VARIANTS, state, GovernorInputs(now_s=t, latency_ms=40.8, measured_variant="good"))
    assert abs(state.corrections.latency_by_variant["best"] - 1.0) < 0.05 * (learnt - 1.0) + 1e-3


def test_the_pipelines_per_frame_overhead_is_in_every_prediction():
    config = policy()
    without, _ = decide(config, [GOOD], GovernorState(), GovernorInputs(now_s=0))
    with_overhead, _ = decide(config, [GOOD], GovernorState(), GovernorInputs(now_s=0, frame_overhead_mj=8.0))
    assert without.predicted_power_w is not None and with_overhead.predicted_power_w is not None
    assert with_overhead.predicted_power_w - without.predicted_power_w == pytest.approx(10 * 0.008)


readings = st.tuples(
    st.floats(-5, 50) | st.just(math.nan),  # power
    st.floats(0.1, 5000) | st.just(math.nan),  # latency
    st.sampled_from(["best", "good", "fair", "cheap"]),
    st.floats(0, 30),  # fps
    st.floats(0, 20) | st.none(),  # overhead mJ
)


@PROPERTY_SETTINGS
@given(sequence=st.lists(readings, min_size=1, max_size=80), idle=st.none() | st.floats(0, 5))
def test_corrections_stay_bounded_whatever_the_readings(sequence, idle):
    config, state = policy(idle_power_w=idle, min_dwell_s=0), GovernorState()
    for t, (power, latency, variant, fps, overhead) in enumerate(sequence):
        inputs = GovernorInputs(
            now_s=t,
            power_w=power,
            latency_ms=latency,
            measured_variant=variant,
            inference_fps=fps,
            frame_overhead_mj=overhead,
        )
        _, state = decide(config, VARIANTS, state, inputs)
        corrections = state.corrections
        for v in VARIANTS:
            assert POWER_RATIO_LIMITS[0] - 1e-9 <= corrections.power_ratio(v.id) <= POWER_RATIO_LIMITS[1] + 1e-9
            assert RATIO_LIMITS[0] * RATIO_LIMITS[0] <= corrections.latency_ratio(v.id) <= RATIO_LIMITS[1] ** 2
        base = corrections.idle_w(idle)
        assert math.isfinite(base) and base >= (idle or 0.0)


BURSTY = (
    VALID.replace("capacity_wh: 5.0", "capacity_wh: 0.5")  # a budget between a and b at 5 fps
    .replace("  mission_minutes: 10", "  mission_minutes: 10\n  reserve_pct: 4")
    .replace(
        "zoo:",
        "loads:\n  - {from_min: 1, to_min: 9, watts: WATTS, shape: bursts, period_s: PERIOD, duty: DUTY}\nzoo:",
    )
    .replace("simulation: {step_s: 5, oracle_step_s: 60}", "simulation: {step_s: 1, oracle_step_s: 60}")
)


VALID_BURSTY_STEADY = BURSTY.replace("PERIOD", "600").replace("DUTY", "1.0")  # the same mean draw, no period


@settings(PROPERTY_SETTINGS, max_examples=min(PROPERTY_SETTINGS.max_examples, 12))  # a whole simulation each
@given(watts=st.floats(0.2, 3.0), period=st.floats(10, 240), duty=st.floats(0.1, 0.7))
def test_a_periodic_load_does_not_make_the_governor_flap(tmp_path_factory, watts, period, duty):
    text = BURSTY.replace("WATTS", f"{watts:.3f}").replace("PERIOD", f"{period:.1f}").replace("DUTY", f"{duty:.3f}")
    path = tmp_path_factory.mktemp("bursts") / "bursts.yaml"
    path.write_text(text)
    report = simulate(load_scenario(path)).report
    assert not report.policy("always-most-accurate").mission_completed  # the budget binds: choosing matters
    # The energy bank may alternate two variants to spend the budget exactly, a phase of at least three dwells each
    # (edged.governor.bank); a flapping governor would follow each of the up to ~50 bursts instead.
    governor = report.policy("governor")
    phases = report.mission_min * 60 / (PHASE_DWELLS * 10.0)  # VALID's policy keeps the default 10 s dwell
    assert governor.switches <= phases + 4, (governor.switches, [e.reason for e in governor.switch_log])
    gaps = [b.at_min - a.at_min for a, b in itertools.pairwise(governor.switch_log)]
    assert min(gaps, default=1.0) * 60 >= 10.0 - 1e-6  # never faster than the dwell


def test_load_shapes_are_what_the_scenario_says():
    step = LoadEvent(from_min=1, to_min=2, watts=1.5)
    ramp = LoadEvent(from_min=1, to_min=2, watts=1.5, shape="ramp")
    bursts = LoadEvent(from_min=1, to_min=3, watts=2.0, shape="bursts", period_s=30, duty=0.5)
    assert [step.watts_at(t) for t in (59, 60, 90, 119.9, 120)] == [0.0, 1.5, 1.5, 1.5, 0.0]
    assert [ramp.watts_at(t) for t in (60, 90)] == [0.0, 0.75]
    assert [bursts.watts_at(t) for t in (60, 74, 75, 89, 90)] == [2.0, 2.0, 0.0, 0.0, 2.0]


def test_loads_reach_the_world_and_the_oracle_pays_for_them(tmp_path):
    calm = load_scenario(write(tmp_path, VALID))
    path = tmp_path / "loaded.yaml"
    path.write_text(VALID.replace("zoo:", "loads:\n  - {from_min: 2, to_min: 6, watts: 1.0}\nzoo:"))
    loaded = load_scenario(path)
    world = build_world(loaded)
    assert world.load_w[0] == 0.0 and world.load_w[round(3 * 60 / world.step_s)] == 1.0
    calm_energy = simulate(calm).report.policy("always-cheapest").energy_used_wh
    loaded_energy = simulate(loaded).report.policy("always-cheapest").energy_used_wh
    assert loaded_energy - calm_energy == pytest.approx(4 / 60 * 1.0, rel=0.01)


@pytest.mark.parametrize(
    ("load", "field", "expected"),
    [
        ("{from_min: 5, to_min: 2, watts: 1}", ":8: loads[0]", "to_min (2.0) must be after from_min (5.0)"),
        ("{from_min: 1, to_min: 2, watts: -1}", ":8: loads[0].watts", "greater than or equal to 0"),
        ("{from_min: 1, to_min: 2, watts: 1, shape: sine}", ":8: loads[0].shape", "'step', 'ramp' or 'bursts'"),
        ("{from_min: 11, to_min: 12, watts: 1}", "", "load from 11 min"),
    ],
)
def test_a_bad_load_names_its_field_and_line(tmp_path, load, field, expected):
    path = write(tmp_path, VALID.replace("zoo:", f"loads:\n  - {load}\nzoo:"))
    problems = problems_of(path)
    assert any(expected in p and field in p for p in problems), problems


def test_the_shipped_scenarios_cover_bursts_a_ramp_and_a_step():
    shapes = set()
    for path in (Path(__file__).resolve().parents[2] / "deploy" / "scenarios").glob("*.yaml"):
        shapes |= {load.shape for load in load_scenario(path).scenario.loads}
    assert {"bursts", "ramp", "step"} <= shapes


def test_the_bank_fills_under_budget_drains_over_it_and_stays_within_its_cap():
    bank = EnergyBank()
    bank = bank.settled(budget_w=5.0, power_w=4.0, seconds=10, cap_j=100)
    assert bank.joules == pytest.approx(10.0)
    assert bank.settled(5.0, 4.0, seconds=1000, cap_j=100).joules == pytest.approx(10.0 + MAX_TICK_S)  # a stall
    assert bank.settled(5.0, 0.0, seconds=60, cap_j=100).joules == 100  # capped
    assert bank.settled(5.0, 9.0, seconds=60, cap_j=100).joules == 0  # never below empty
    assert bank.settled(5.0, None, seconds=10, cap_j=5).joules == 5  # no reading: nothing moves but the cap
    assert bank.settled(5.0, 4.0, seconds=math.nan, cap_j=100).joules == pytest.approx(10.0)


def test_banked_energy_is_taken_out_of_the_budget_so_it_is_not_spent_twice():
    budget = Budget(watts=3.6, basis="mission", detail="", spendable_wh=1.0, remaining_s=1000.0)
    aside = set_aside(budget, EnergyBank(360.0))  # 0.1 Wh banked
    assert aside.spendable_wh == pytest.approx(0.9) and aside.watts == pytest.approx(3.24)
    assert bank_cap_j(budget) == pytest.approx(0.1 * 3600)  # a tenth of what is left to spend


def test_a_budget_between_two_variants_is_spent_by_alternating_them():
    steady = VALID_BURSTY_STEADY.replace("WATTS", "0.2")
    path = Path(tempfile.mkdtemp()) / "steady.yaml"
    path.write_text(steady)
    report = simulate(load_scenario(path)).report
    governor = report.policy("governor")
    assert set(governor.minutes_by_variant) == {"a", "b"} and min(governor.minutes_by_variant.values()) > 1.0
    assert governor.mission_completed and governor.battery_end_pct < 4 + 1.5  # spent down to about the reserve
    cheaper_only = report.policy("always-cheapest").time_weighted_accuracy
    assert governor.time_weighted_accuracy > cheaper_only + 0.02
