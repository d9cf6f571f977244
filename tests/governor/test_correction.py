"""Online correction: what the device measures replaces what the profile promised, filtered."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from edged.governor import Governor, GovernorInputs, GovernorState, decide
from edged.governor.config import CorrectionConfig
from edged.governor.correction import EnergyEstimate, MeterCalibration

from .conftest import GOOD, VARIANTS, budget_inputs, policy


def run_measured(governor: Governor, ticks: int, start_s: float, **readings: float) -> None:
    for tick in range(ticks):
        governor.tick(budget_inputs(20.0, now_s=start_s + tick, **readings))


def test_a_measured_slow_down_moves_every_variant_and_the_governor_leaves_the_one_over_the_slo():
    governor = Governor(policy(min_dwell_s=0), VARIANTS)
    profiles = {v.id: v for v in VARIANTS}
    running = governor.tick(budget_inputs(20.0)).variant
    assert running == "best"
    for tick in range(1, 120):
        assert running is not None
        slowed = profiles[running].latency_p50_ms * 1.7
        running = governor.tick(budget_inputs(20.0, now_s=tick, latency_ms=slowed)).variant
    assert running == "good"  # best's p95 becomes 118 ms > 100 ms; good's 82 ms
    assert governor.state.corrections.latency_ratio("best") == pytest.approx(1.7, rel=0.05)
    assert governor.state.corrections.latency_ratio("cheap") == pytest.approx(1.7, rel=0.05)  # never ran


def test_the_switch_away_from_a_slowed_variant_says_so():
    config = policy(min_dwell_s=0)
    _, state = decide(config, VARIANTS, GovernorState(), budget_inputs(20.0))
    reasons = []
    for tick in range(1, 60):
        decision, state = decide(config, VARIANTS, state, budget_inputs(20.0, now_s=tick, latency_ms=66.0 * 1.7))
        reasons.append(decision.reason)
        if decision.switched:
            break
    assert "predicted p95" in reasons[-1] and "> SLO 100 ms (slow-down ×1." in reasons[-1]


def test_unexplained_power_while_one_variant_runs_is_a_shared_load_not_that_variants_energy():
    governor = Governor(policy(), [GOOD])
    extra = 10 * GOOD.joules * 0.25  # a gimbal, say: one variant at one fps cannot tell it from its own energy
    truth = 3.0 + 10 * GOOD.joules + extra
    run_measured(governor, 600, 0.0, power_w=truth)
    corrections = governor.state.corrections
    assert governor.last is not None and governor.last.predicted_power_w == pytest.approx(truth, rel=0.01)
    assert corrections.idle_w(3.0) == pytest.approx(3.0 + extra, abs=0.05)  # base power took it ...
    assert corrections.power_ratio("good") == pytest.approx(1.0, abs=0.05)  # ... not the variant's energy


def test_idle_power_and_energy_ratio_are_both_learnt_when_variants_alternate():
    config = policy(idle_power_w=None)
    state = GovernorState()
    idle, ratio = 2.5, 1.3
    for tick in range(400):
        variant = VARIANTS[tick // 20 % 2]  # best and good in turn, as a governor mixing them would
        power = idle + 10 * variant.joules * ratio
        inputs = budget_inputs(20.0, now_s=tick, power_w=power, measured_variant=variant.id, inference_fps=10)
        _, state = decide(config, VARIANTS, state, inputs)
    model = state.corrections.power
    assert model.idle_w == pytest.approx(idle, abs=0.15)
    assert state.corrections.power_ratio("best") == pytest.approx(ratio, rel=0.06)


def test_a_biased_meter_is_rescaled_to_the_fuel_gauge():
    config = CorrectionConfig(gauge_window_pct=5, gauge_trust=0.5)
    meter, battery, true_w = MeterCalibration(), 20.0, 4.0
    for tick in range(3600):
        gauge = round(battery / 20.0 * 100) / 100 * 20.0  # whole percents
        meter = meter.observe(config, float(tick), gauge, 20.0, true_w * 1.1, charging=False)
        battery -= true_w / 3600
    assert meter.scale == pytest.approx(1 / 1.1, rel=0.02)


def test_the_energy_estimate_smooths_a_coarse_gauge():
    config, smooth = CorrectionConfig(gauge_smoothing_s=300), EnergyEstimate()
    battery, true_w, estimates, gauges = 20.0, 4.0, [], []
    for tick in range(0, 1800, 5):
        gauge = round(battery / 20.0 * 100) / 100 * 20.0
        smooth = smooth.observe(config, float(tick), gauge, 20.0, true_w, charging=False)
        estimates.append(smooth.wh or 0.0)
        gauges.append(gauge)
        battery -= true_w * 5 / 3600
    steps = [abs(b - a) for a, b in pairwise(estimates[1:])]
    assert max(steps) < 0.25 * max(abs(b - a) for a, b in pairwise(gauges))
    assert estimates[-1] == pytest.approx(battery + true_w * 5 / 3600, abs=0.1)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -5.0])
def test_unusable_readings_leave_the_corrections_as_they_were(bad):
    config = policy()
    _, state = decide(config, VARIANTS, GovernorState(), budget_inputs(5.0))
    _, after = decide(config, VARIANTS, state, budget_inputs(5.0, now_s=1, power_w=bad, latency_ms=bad))
    assert after.corrections.power.ratio == state.corrections.power.ratio
    assert after.corrections.latency.value == state.corrections.latency.value


def test_a_reading_for_another_variant_is_credited_to_that_variant():
    config = policy(min_dwell_s=0)
    _, state = decide(config, VARIANTS, GovernorState(), budget_inputs(5.0))
    inputs = GovernorInputs(now_s=1, latency_ms=GOOD.latency_p50_ms * 2, measured_variant="good")
    _, after = decide(config, VARIANTS, state, inputs)
    assert after.corrections.latency_by_variant.keys() == {"good"}
