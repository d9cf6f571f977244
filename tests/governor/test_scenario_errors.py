"""Bad scenario files get an error naming the file, the field and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.cli import main
from edged.errors import ConfigError
from edged.governor.scenario import load_scenario

VALID = """\
name: tiny
mission_min: 10
device: {name: test rig, idle_w: 2.0}
battery:
  capacity_wh: 5.0
  start_pct: 90
zoo:
  variants:
    - {id: a, accuracy: 0.3, latency_p50_ms: 40, latency_p95_ms: 50, energy_mj: 150, energy_quality: estimated}
    - {id: b, accuracy: 0.2, latency_p50_ms: 20, latency_p95_ms: 25, energy_mj: 60, energy_quality: estimated}
governor:
  fps_target: 5
  mission_minutes: 10
simulation: {step_s: 5, oracle_step_s: 60}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    return info.value.problems


def test_a_valid_scenario_loads(tmp_path):
    loaded = load_scenario(write(tmp_path, VALID))
    assert [v.id for v in loaded.variants] == ["a", "b"] and loaded.scenario.battery.cutoff_pct == 0


def test_a_typo_names_the_line_and_suggests_the_key(tmp_path):
    problems = problems_of(write(tmp_path, VALID.replace("start_pct: 90", "start_pc: 90")))
    assert any(":6: battery.start_pc: unknown key (did you mean 'start_pct'?)" in p for p in problems)
    assert any(":5: battery.start_pct: Field required" in p for p in problems)


def test_a_missing_field_is_named(tmp_path):
    problems = problems_of(write(tmp_path, VALID.replace("  capacity_wh: 5.0\n", "")))
    assert any(":5: battery.capacity_wh: Field required" in p for p in problems)


def test_a_wrong_type_names_the_field_the_line_and_the_value(tmp_path):
    (problem,) = problems_of(write(tmp_path, VALID.replace("mission_min: 10", "mission_min: ten")))
    assert ":2: mission_min:" in problem and "'ten'" in problem


def test_an_inline_variant_error_points_into_the_list(tmp_path):
    (problem,) = problems_of(write(tmp_path, VALID.replace("accuracy: 0.2,", "accuracy: 2.0,")))
    assert ":10: zoo.variants[1].accuracy:" in problem and "less than or equal to 1" in problem


def test_a_timeline_event_after_the_mission_is_refused(tmp_path):
    text = VALID + "floors:\n  - {at_min: 12, floor: 0.3}\n"
    (problem,) = problems_of(write(tmp_path, text))
    assert "after the mission ends (10 min): floors at 12 min" in problem


def test_an_unquoted_time_of_day_is_refused_with_advice(tmp_path):
    text = VALID.replace("  mission_minutes: 10\n", "  mission_end: 18:00\n") + "start_time: '17:50'\n"
    (problem,) = problems_of(write(tmp_path, text))
    assert "governor.mission_end" in problem and "write the time in quotes" in problem


def test_a_zoo_without_the_device_class_profile_names_the_variant(tmp_path):
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "zoo.yaml").write_text(
        "family: f\nlabels: [person]\nvariants:\n"
        "  - id: only\n    technique: baseline\n    format: onnx\n    file: m.onnx\n"
        f"    sha256: '{'0' * 64}'\n    input: {{size: [320, 320]}}\n    decoder: yolox\n"
        "    profiles:\n      pi5:\n        latency: {p50_ms: 40, p95_ms: 50, threads: 4}\n"
    )
    zoo = "zoo:\n  manifest: zoo\n  device_class: pi5\n"
    text = VALID[: VALID.index("zoo:")] + zoo + VALID[VALID.index("governor:") :]
    (problem,) = problems_of(write(tmp_path, text))
    assert "zoo.device_class" in problem and "variant 'only' profile 'pi5' lacks accuracy, energy" in problem


def test_a_zoo_with_full_profiles_is_read_from_the_manifest(tmp_path):
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "zoo.yaml").write_text(
        "family: f\nlabels: [person]\nvariants:\n"
        "  - id: only\n    technique: baseline\n    format: onnx\n    file: m.onnx\n"
        f"    sha256: '{'0' * 64}'\n    input: {{size: [320, 320]}}\n    decoder: yolox\n"
        "    profiles:\n      pi5:\n"
        "        accuracy: {eval_set: coco-val-dev, map50_95: 0.3, map50: 0.5}\n"
        "        latency: {p50_ms: 40, p95_ms: 50, threads: 4}\n"
        "        energy: {mj_per_inference: 120, quality: measured, method: INA219}\n"
    )
    zoo = "zoo:\n  manifest: zoo\n  device_class: pi5\n"
    text = VALID[: VALID.index("zoo:")] + zoo + VALID[VALID.index("governor:") :]
    loaded = load_scenario(write(tmp_path, text))
    assert loaded.variants[0].energy_mj == 120 and "profile 'pi5'" in loaded.figures[0]


def test_the_cli_lists_every_problem_and_exits_1(tmp_path, capsys):
    text = VALID.replace("start_pct: 90", "start_pct: 190").replace("idle_w: 2.0", "idle_w: -1")
    assert main(["governor", "simulate", "--scenario", str(write(tmp_path, text))]) == 1
    err = capsys.readouterr().err
    assert "2 problems" in err and ":3: device.idle_w:" in err and ":6: battery.start_pct:" in err


def test_a_missing_scenario_file_is_a_clear_error(tmp_path, capsys):
    assert main(["governor", "simulate", "--scenario", str(tmp_path / "nope.yaml")]) == 1
    assert "file not found" in capsys.readouterr().err
