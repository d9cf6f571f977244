"""The YAML config: valid files load, and every mistake is reported with its field and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.cli import main
from edged.config import load_config
from edged.errors import ConfigError

VALID = """\
source:
  type: file
  path: clips/gate.mp4
  loop: true
zoo:
  path: zoo
engine:
  threads: 4
mqtt:
  host: broker.local
  password: ${EDGED_TEST_PASSWORD}
  tls:
    ca_certs: /etc/ssl/ca.pem
governor:
  accuracy_floor: 0.2
  fps_target: 8
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edged.yaml"
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_valid_config_loads_with_defaults_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGED_TEST_PASSWORD", "s3cret")
    config = load_config(write(tmp_path, VALID))
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == "s3cret"
    assert config.engine.threads == 4
    assert config.engine.allow_spinning is False  # a default
    assert config.detection.nms_iou == 0.5
    assert config.source.type == "file" and config.source.loop


def test_relative_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGED_TEST_PASSWORD", "x")
    config = load_config(write(tmp_path, VALID))
    assert config.source.path == tmp_path.resolve() / "clips" / "gate.mp4"
    assert config.zoo.path == tmp_path.resolve() / "zoo"
    assert config.mqtt.tls is not None and config.mqtt.tls.ca_certs == Path("/etc/ssl/ca.pem")


def test_unknown_key_is_an_error_with_line_and_suggestion(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGED_TEST_PASSWORD", "x")
    path = write(tmp_path, VALID.replace("  host: broker.local", "  hots: broker.local"))
    (problem,) = problems_of(path)
    assert f"{path}:10: mqtt.hots: unknown key (did you mean 'host'?)" == problem


def test_typo_inside_a_union_arm_suggests_that_arms_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGED_TEST_PASSWORD", "x")
    (problem,) = problems_of(write(tmp_path, VALID.replace("  loop: true", "  lopo: true")))
    assert ":4: source.lopo: unknown key (did you mean 'loop'?)" in problem


def test_missing_environment_variable_names_the_line(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGED_TEST_PASSWORD", raising=False)
    (problem,) = problems_of(write(tmp_path, VALID))
    assert ":11: mqtt.password: environment variable EDGED_TEST_PASSWORD is not set" in problem


def test_env_default_is_used_when_unset(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGED_TEST_PASSWORD", raising=False)
    config = load_config(write(tmp_path, VALID.replace("${EDGED_TEST_PASSWORD}", "${EDGED_TEST_PASSWORD:-fallback}")))
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == "fallback"


def test_every_problem_is_reported_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGED_TEST_PASSWORD", "x")
    text = VALID.replace("threads: 4", "threads: many").replace("accuracy_floor: 0.2", "accuracy_floor: 1.7")
    problems = problems_of(write(tmp_path, text))
    assert len(problems) == 2
    assert any(":8: engine.threads:" in p and "'many'" in p for p in problems)
    assert any(":15: governor.accuracy_floor:" in p and "less than or equal to 1" in p for p in problems)


def test_unknown_source_type_lists_the_known_ones(tmp_path):
    (problem,) = problems_of(write(tmp_path, "source:\n  type: camra\n"))
    assert ":2: source" in problem
    for known in ("camera", "file", "stream", "folder", "gstreamer"):
        assert known in problem


def test_cross_field_rule_is_reported(tmp_path):
    text = "source: {type: camera}\ngovernor:\n  fps_target: 2\n  fps_min: 5\n"
    (problem,) = problems_of(write(tmp_path, text))
    assert "governor" in problem and "fps_min (5.0) must not exceed fps_target (2.0)" in problem


def test_yaml_syntax_error_names_the_line(tmp_path):
    (problem,) = problems_of(write(tmp_path, "source:\n  type: file\n  path: [unclosed\nzoo: {}\n"))
    assert "invalid YAML" in problem and f"{tmp_path / 'edged.yaml'}:" in problem


def test_missing_file_is_a_clear_error(tmp_path):
    assert problems_of(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_config_check_command_exit_codes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGED_TEST_PASSWORD", "x")
    good = write(tmp_path, VALID)
    assert main(["config", "check", str(good)]) == 0
    assert "valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("threads: 4", "threads: 0").replace("loop: true", "loops: true"))
    assert main(["config", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "2 problems" in err and "engine.threads" in err and "source.loops" in err
    assert "Traceback" not in err


def test_config_check_show_prints_the_effective_config(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.setenv("EDGED_TEST_PASSWORD", "hunter2-secret")
    assert main(["config", "check", "--show", str(write(tmp_path, VALID))]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["engine"]["threads"] == 4 and shown["logging"]["level"] == "INFO"
    assert "hunter2-secret" not in out and shown["mqtt"]["password"] == "**********"
    assert load_config(write(tmp_path, VALID)).mqtt.password.get_secret_value() == "hunter2-secret"


def test_config_check_warns_about_files_missing_here_and_run_refuses_them(tmp_path, monkeypatch, capsys):
    """A file source that does not exist made `edged run` stop at once with status 0 (a clean stop)."""
    monkeypatch.setenv("EDGED_TEST_PASSWORD", "x")
    path = write(tmp_path, VALID)
    assert main(["config", "check", str(path)]) == 0  # it may be a config for another machine
    err = capsys.readouterr().err
    assert f"warning: {path}:3: source.path: no such file" in err and "gate.mp4" in err
    assert f"{path}:6: zoo.path: no zoo.yaml in" in err
    assert main(["run", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    assert "source.path: no such file" in err and "zoo.path" in err and "Traceback" not in err


def test_config_check_warns_when_the_floor_is_above_every_variant_of_the_zoo(profiled_zoo, tmp_path, capsys):
    config = tmp_path / "edged.yaml"
    config.write_text(
        f"source: {{type: camera, device: 0}}\nzoo: {{path: {profiled_zoo}, device_class: ci-test}}\n"
        "governor:\n  accuracy_floor: 0.5\n"
    )
    assert main(["config", "check", str(config)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {config}:4: governor.accuracy_floor: 0.5 is above every variant" in err
    assert "nanodet-m-320, has 0.270" in err
    config.write_text(config.read_text().replace("0.5", "0.25"))
    assert main(["config", "check", str(config)]) == 0
    assert "accuracy_floor" not in capsys.readouterr().err
