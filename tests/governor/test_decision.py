"""The decision rules of DESIGN.md, one behaviour per test, each with the reason the decision gives."""

from __future__ import annotations

import statistics
import time

from edged.governor import BatteryBand, Governor, GovernorInputs, GovernorState, VariantProfile, decide

from .conftest import BEST, CHEAP, FAIR, GOOD, VARIANTS, budget_inputs, policy


def first(config, inputs, variants=VARIANTS):
    decision, _ = decide(config, variants, GovernorState(), inputs)
    return decision


def test_picks_the_most_accurate_variant_that_fits_the_budget():
    decision = first(policy(), budget_inputs(5.0))
    assert decision.variant == "good"  # best needs 5.64 W
    assert decision.fps == 10 and not decision.flags
    assert "most accurate within budget 5.00 W" in decision.reason


def test_equal_accuracy_goes_to_the_variant_spending_less():
    twin = VariantProfile(id="twin", accuracy=GOOD.accuracy, latency_p50_ms=30, latency_p95_ms=35, energy_mj=120.0)
    assert first(policy(), budget_inputs(5.0), [GOOD, twin]).variant == "twin"


def test_a_variant_over_the_latency_slo_is_never_chosen_while_another_keeps_it():
    decision = first(policy(latency_slo_ms=60), budget_inputs(100.0))
    assert decision.variant == "good"  # best's p95 is 69.6 ms
    assert decision.predicted_p95_ms is not None and decision.predicted_p95_ms <= 60


def test_the_floor_excludes_less_accurate_variants():
    decision = first(policy(), budget_inputs(5.0, accuracy_floor=0.25))
    assert decision.variant == "good"
    decision = first(policy(), budget_inputs(4.2, accuracy_floor=0.25))
    assert decision.variant == "good" and decision.accuracy is not None and decision.accuracy >= 0.25


def test_a_floor_no_variant_reaches_means_the_most_accurate_and_says_floor_unmet():
    decision = first(policy(), budget_inputs(100.0, accuracy_floor=0.5))
    assert decision.variant == "best"
    assert "floor_unmet" in decision.flags
    assert "floor_unmet: floor 0.500 > best 0.339" in decision.reason


def test_when_nothing_fits_fps_is_lowered_first():
    decision = first(policy(), budget_inputs(3.6))  # cheap needs 3.85 W at 10 fps
    assert decision.variant == "cheap"
    assert 5 <= decision.fps < 10 and "fps_reduced" in decision.flags
    assert decision.predicted_power_w is not None and decision.predicted_power_w <= 3.6
    assert "fps lowered to" in decision.reason


def test_then_the_cheapest_variant_meeting_the_floor_runs_over_budget_and_says_so():
    decision = first(policy(), budget_inputs(3.1, accuracy_floor=0.25))
    assert decision.variant == "good" and decision.fps == 5
    assert {"over_budget", "fps_reduced"} <= set(decision.flags)
    assert "over budget: nothing fits budget 3.10 W even at 5 fps" in decision.reason


def test_a_policy_that_puts_the_floor_first_to_go_stays_within_budget():
    config = policy(degradation_order=["floor", "fps", "budget"])
    decision = first(config, budget_inputs(4.2, accuracy_floor=0.33))
    assert decision.variant == "fair"  # the most accurate that fits 4.2 W
    assert "floor_unmet" in decision.flags and "over_budget" not in decision.flags


def test_a_switch_down_names_the_budget_and_the_prediction():
    config = policy()
    decision, state = decide(config, VARIANTS, GovernorState(), budget_inputs(6.0))
    assert decision.variant == "best"
    decision, _ = decide(config, VARIANTS, state, budget_inputs(5.0, now_s=60))
    assert decision.switched and decision.previous_variant == "best" and decision.variant == "good"
    assert decision.reason.startswith("switched best -> good: budget 5.00 W < predicted 5.64 W")


def test_a_switch_waits_for_the_dwell_time_and_says_why():
    config = policy(min_dwell_s=30)
    _, state = decide(config, VARIANTS, GovernorState(), budget_inputs(6.0))
    held, state = decide(config, VARIANTS, state, budget_inputs(5.0, now_s=10))
    assert held.variant == "best" and not held.switched and "held_by_dwell" in held.flags
    assert "kept best for its dwell (10 of 30 s) though good is wanted" in held.reason
    moved, _ = decide(config, VARIANTS, state, budget_inputs(5.0, now_s=31))
    assert moved.switched and moved.variant == "good"


def test_a_new_floor_command_switches_at_once_whatever_the_dwell():
    config = policy(min_dwell_s=300)
    _, state = decide(config, VARIANTS, GovernorState(), budget_inputs(5.0))
    decision, _ = decide(config, VARIANTS, state, budget_inputs(10.0, now_s=5, accuracy_floor=0.33))
    assert decision.switched and decision.variant == "best"
    assert "accuracy floor 0.330 > good 0.270" in decision.reason


def test_switching_up_needs_the_margin_but_staying_does_not():
    config = policy(switch_up_margin=0.2)
    _, state = decide(config, VARIANTS, GovernorState(), budget_inputs(5.0))
    # best needs 2.64 W for inference; 5.7 W leaves 2.7 W: enough to stay, not 20% headroom to move up
    decision, state = decide(config, VARIANTS, state, budget_inputs(5.7, now_s=60))
    assert decision.variant == "good"
    assert "best (predicted 5.64 W) waits for 20% headroom" in decision.reason
    decision, _ = decide(config, VARIANTS, state, budget_inputs(6.4, now_s=120))
    assert decision.variant == "best" and "with 20% headroom" in decision.reason


def test_a_temporary_floor_borrows_from_the_rest_of_the_mission_instead_of_lowering_fps():
    inputs = budget_inputs(5.0, accuracy_floor=0.33, floor_expires_s=300.0)  # 720 s of mission, 300 s of floor
    decision = first(policy(), inputs)
    assert decision.variant == "best" and decision.fps == 10
    assert "borrowing" in decision.flags and "over_budget" not in decision.flags
    assert "borrowing for floor 0.330 (5.0 min left)" in decision.reason


def test_a_loan_the_rest_of_the_mission_cannot_repay_is_refused():
    inputs = budget_inputs(4.0, accuracy_floor=0.33, floor_expires_s=800.0)  # floor for all 900 s left
    decision = first(policy(), inputs)
    assert "borrowing" not in decision.flags and "fps_reduced" in decision.flags


def test_without_a_mission_the_battery_bands_set_the_budget_with_hysteresis():
    bands = [BatteryBand(below_pct=50, budget_w=5.0), BatteryBand(below_pct=20, budget_w=4.0)]
    config = policy(battery_bands=bands, band_hysteresis_pct=3)
    full, state = decide(config, VARIANTS, GovernorState(), GovernorInputs(now_s=0, battery_pct=80))
    assert full.variant == "best" and full.budget_basis == "unlimited"
    low, state = decide(config, VARIANTS, state, GovernorInputs(now_s=60, battery_pct=19))
    assert low.budget_w == 4.0 and low.variant == "cheap" and "band ≤20%" in low.budget_detail
    sticky, state = decide(config, VARIANTS, state, GovernorInputs(now_s=120, battery_pct=22))
    assert sticky.budget_w == 4.0  # 22% is within 3% of the band edge
    left, _ = decide(config, VARIANTS, state, GovernorInputs(now_s=180, battery_pct=24))
    assert left.budget_w == 5.0


def test_a_runtime_band_spreads_the_energy_over_the_hours_it_names():
    config = policy(battery_bands=[BatteryBand(below_pct=60, runtime_h=2)])
    decision = first(config, GovernorInputs(now_s=0, battery_wh=9.0, battery_capacity_wh=20.0))
    assert decision.budget_w == 4.5 and decision.variant == "fair"


def test_external_power_lifts_the_limit():
    decision = first(policy(), budget_inputs(3.0, on_external_power=True))
    assert decision.variant == "best" and decision.budget_w is None and decision.budget_basis == "external_power"


def test_pinned_mode_runs_the_pinned_variant_and_flags_what_it_breaks():
    decision = first(policy(mode="pinned", pinned_variant="best"), budget_inputs(4.0))
    assert decision.variant == "best" and "over_budget" in decision.flags
    assert decision.reason.startswith("started with best: pinned by the operator")


def test_a_pinned_variant_missing_from_the_zoo_falls_back_to_auto_and_says_so():
    decision = first(policy(mode="pinned", pinned_variant="gone"), budget_inputs(5.0))
    assert decision.variant == "good" and "pinned variant 'gone' is not in the zoo" in decision.reason


def test_eco_mode_runs_the_cheapest_variant_meeting_the_floor():
    decision = first(policy(mode="eco"), budget_inputs(100.0, accuracy_floor=0.22))
    assert decision.variant == "fair"


def test_performance_mode_ignores_the_budget_but_keeps_the_slo():
    decision = first(policy(mode="performance", latency_slo_ms=60), budget_inputs(3.0))
    assert decision.variant == "good" and "over_budget" in decision.flags


def test_an_empty_zoo_gives_a_decision_without_a_variant():
    decision = first(policy(), budget_inputs(5.0), [])
    assert decision.variant is None and decision.flags == ["no_variants"]


def test_a_budget_below_idle_with_a_near_zero_energy_variant_degrades_instead_of_overflowing():
    # Found by hypothesis: (1 W - 6 W idle) / 2e-307 J is a finite -2.5e307 fps, whose fps steps overflow floor().
    zoo = [
        VariantProfile(id="costly", accuracy=1.0, latency_p50_ms=1, latency_p95_ms=1, energy_mj=15.0),
        VariantProfile(id="free", accuracy=0.0, latency_p50_ms=1, latency_p95_ms=1, energy_mj=0.0),
        VariantProfile(id="tiny", accuracy=0.0, latency_p50_ms=1, latency_p95_ms=1, energy_mj=2.0280544861337033e-303),
    ]
    config = policy(idle_power_w=6.0, fps_min=10, latency_slo_ms=10, min_dwell_s=0)
    state = GovernorState()
    for now_s, watts in enumerate([1.0, 1.0, 7.0, 1.0], start=1):
        decision, state = decide(config, zoo, state, budget_inputs(watts, now_s, latency_ms=1.0, power_w=0.0))
        assert decision.variant is not None
    assert "over_budget" in decision.flags


def test_a_decision_takes_well_under_a_millisecond():
    config = policy()
    state = GovernorState()
    timings = []
    for tick in range(300):
        inputs = budget_inputs(5.0, now_s=float(tick), power_w=4.6, latency_ms=41.0)
        start = time.perf_counter()
        _, state = decide(config, VARIANTS, state, inputs)
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings) < 1e-3


def test_the_decision_serialises_for_mqtt():
    decision = first(policy(), budget_inputs(5.0))
    payload = decision.model_dump(mode="json")
    assert payload["variant"] == "good" and payload["budget_basis"] == "mission" and payload["reason"]


def test_the_shared_variants_cost_what_the_tests_assume():
    assert [round(3.0 + 10 * v.joules, 2) for v in (BEST, GOOD, FAIR, CHEAP)] == [5.64, 4.63, 4.07, 3.85]


def test_a_variant_removed_from_the_zoo_is_replaced_at_the_next_tick():
    governor = Governor(policy(min_dwell_s=600), VARIANTS)
    assert governor.tick(budget_inputs(5.0)).variant == "good"
    governor.set_variants([BEST, FAIR, CHEAP])
    decision = governor.tick(budget_inputs(5.0, now_s=1))
    assert decision.variant == "fair" and decision.reason.startswith(
        "switched good -> fair: good is no longer in the zoo"
    )
