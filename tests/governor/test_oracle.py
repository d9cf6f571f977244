"""The offline oracle is a sound upper bound: on a mission with a known optimum it finds it, and no more."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.governor.scenario import load_scenario
from edged.governor.simulate import simulate

# Two variants at 5 fps, no idle power: a spends 2.0 W, b 1.0 W. 60 min on 1.5 Wh above the cutoff: the best any
# policy can do is a for 30 min and b for 30 min, i.e. a time-weighted accuracy of (0.3 + 0.2) / 2 = 0.25.
MIX = """\
name: mix
mission_min: 60
device: {name: test rig, idle_w: 0.0}
battery: {capacity_wh: 2.0, start_pct: 100, cutoff_pct: 25, gauge_resolution_pct: 0}
zoo:
  variants:
    - {id: a, accuracy: 0.3, latency_p50_ms: 40, latency_p95_ms: 50, energy_mj: 400, energy_quality: simulated}
    - {id: b, accuracy: 0.2, latency_p50_ms: 20, latency_p95_ms: 25, energy_mj: 200, energy_quality: simulated}
governor: {fps_target: 5, fps_min: 5, mission_minutes: 60, idle_power_w: 0.0, min_dwell_s: 30}
simulation: {step_s: 5, oracle_step_s: 60, energy_grid: 400, oracle_fps_levels: 1}
"""


@pytest.fixture(scope="module")
def mix(tmp_path_factory: pytest.TempPathFactory):
    path: Path = tmp_path_factory.mktemp("oracle") / "mix.yaml"
    path.write_text(MIX)
    return simulate(load_scenario(path)).report


def test_the_oracle_finds_the_best_mix_and_completes(mix):
    oracle = mix.policy("oracle")
    assert oracle.mission_completed
    assert oracle.time_weighted_accuracy == pytest.approx(0.25, abs=0.003)
    assert oracle.minutes_by_variant["a"] == pytest.approx(30, abs=1.5)


def test_the_oracle_never_claims_more_than_is_possible(mix):
    assert mix.policy("oracle").time_weighted_accuracy <= 0.25 + 1e-6


def test_spending_like_the_most_accurate_variant_fails_this_mission(mix):
    best = mix.policy("always-most-accurate")
    assert not best.mission_completed and best.failed_at_min == pytest.approx(45, abs=0.1)
