"""The shipped scenarios meet DESIGN.md's governor bar, and `edged governor simulate` reports them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edged.cli import main
from edged.governor.scenario import load_scenario
from edged.governor.simulate import ACCURACY_BAR, SimulationReport, simulate

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "deploy" / "scenarios").glob("*.yaml"))


@pytest.fixture(scope="module")
def reports() -> dict[str, SimulationReport]:
    return {path.stem: simulate(load_scenario(path)).report for path in SCENARIOS}


def test_at_least_four_scenarios_ship():
    assert len(SCENARIOS) >= 4


@pytest.mark.parametrize("name", [p.stem for p in SCENARIOS])
def test_the_governor_reaches_the_bar_against_the_oracle(reports, name):
    report = reports[name]
    governor, oracle = report.policy("governor"), report.policy("oracle")
    assert governor.time_weighted_accuracy >= ACCURACY_BAR * oracle.time_weighted_accuracy
    assert governor.mission_completed or not oracle.mission_completed
    assert report.quality_bars.accuracy_met and report.quality_bars.completes_when_oracle_does


@pytest.mark.parametrize("name", [p.stem for p in SCENARIOS])
def test_the_governor_keeps_the_floor_and_the_slo_when_the_oracle_does(reports, name):
    governor, oracle = reports[name].policy("governor"), reports[name].policy("oracle")
    assert governor.floor_violation_min <= oracle.floor_violation_min + 0.5
    assert governor.latency_violation_min <= oracle.latency_violation_min + 1.0


def test_always_most_accurate_fails_a_mission_the_governor_completes(reports):
    failed = [n for n, r in reports.items() if r.quality_bars.most_accurate_fails_where_governor_completes]
    assert failed, "no shipped scenario shows why a governor is needed"


def test_the_oracle_beats_every_policy_that_completes_its_mission(reports):
    for report in reports.values():
        oracle = report.policy("oracle").time_weighted_accuracy
        for policy in report.policies:
            if policy.mission_completed:
                assert policy.time_weighted_accuracy <= oracle * 1.005, (report.scenario, policy.policy)


def test_every_figure_says_it_is_simulated_and_where_the_variants_come_from(reports):
    for report in reports.values():
        assert report.figures == "simulated"
        assert len(report.variant_figures) == len(report.variants) and report.assumptions
        assert all("estimated" in line for line in report.variant_figures)


def test_every_governor_switch_carries_its_reason(reports):
    for report in reports.values():
        for event in report.policy("governor").switch_log:
            assert event.reason and event.reason.startswith(f"switched {event.from_variant} -> {event.to_variant}")


def test_simulate_prints_the_table_and_the_bar(capsys):
    assert main(["governor", "simulate", "--scenario", str(SCENARIOS[0])]) == 0
    out = capsys.readouterr().out
    for policy in ("always-most-accurate", "always-cheapest", "battery-bands", "governor", "oracle"):
        assert policy in out
    assert "SIMULATED" in out and "governor / oracle accuracy:" in out


def test_simulate_json_is_the_report_model(capsys, tmp_path):
    plot = tmp_path / "mission.png"
    assert main(["governor", "simulate", "--scenario", str(SCENARIOS[0]), "--json", "--plot", str(plot)]) == 0
    report = SimulationReport.model_validate(json.loads(capsys.readouterr().out))
    assert report.format == "edged.governor.simulation/v1" and len(report.policies) == 5
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
