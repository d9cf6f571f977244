"""`edged run` without -c: the file $EDGED_CONFIG names, else the system config, else the demo; the log says which.

The runs are real: `edged run` in a process of its own, over the whole demo clip with the shipped zoo, detections on
stdout (MQTT off). The system config's path is the module's constant, pointed at a temporary file (never /etc).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edged.cli import run as run_cli
from edged.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = ROOT / "edged" / "demo" / "vtest_10s.mp4"

EDGED_RUN = """
import sys
from pathlib import Path
import edged.cli.run
from edged.cli import main
edged.cli.run.SYSTEM_CONFIG = Path(sys.argv[1])
sys.exit(main(["run"]))
"""


def write_config(directory: Path, variant: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "source": {"type": "file", "path": str(DEMO_CLIP), "realtime": False},
        "zoo": {"path": str(ROOT / "model_zoo")},
        "governor": {"mode": "pinned", "pinned_variant": variant},
        "mqtt": {"enabled": False},
    }
    path = directory / "edged.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def edged_run(system_config: Path, edged_config: Path | None) -> tuple[list[dict], str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGED_CONFIG", "JOURNAL_STREAM")}
    if edged_config is not None:
        env["EDGED_CONFIG"] = str(edged_config)
    done = subprocess.run(
        [sys.executable, "-c", EDGED_RUN, str(system_config)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def test_edged_config_is_run_before_the_system_config_and_the_log_says_so(tmp_path: Path) -> None:
    system = write_config(tmp_path / "etc", "yolox-ft-192")
    named = write_config(tmp_path / "home", "yolox-relu-256-int8")
    frames, log = edged_run(system, named)
    assert len(frames) == 100 and {f["variant"] for f in frames} == {"yolox-relu-256-int8"}
    assert f"config: {named} ($EDGED_CONFIG)" in log


def test_the_system_config_is_run_when_no_other_is_named(tmp_path: Path) -> None:
    system = write_config(tmp_path / "etc", "yolox-ft-192")
    frames, log = edged_run(system, None)
    assert len(frames) == 100 and {f["variant"] for f in frames} == {"yolox-ft-192"}
    assert f"config: {system} (no -c or $EDGED_CONFIG, {system} exists)" in log


def test_without_any_config_it_is_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGED_CONFIG", raising=False)
    monkeypatch.setattr(run_cli, "SYSTEM_CONFIG", tmp_path / "absent.yaml")
    assert run_cli.config_to_run(None) == (None, f"no -c, $EDGED_CONFIG or {tmp_path / 'absent.yaml'}")


def test_c_wins_over_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGED_CONFIG", str(write_config(tmp_path / "home", "yolox-ft-192")))
    monkeypatch.setattr(run_cli, "SYSTEM_CONFIG", write_config(tmp_path / "etc", "yolox-ft-192"))
    assert run_cli.config_to_run(tmp_path / "given.yaml") == (tmp_path / "given.yaml", "-c")


def test_an_edged_config_that_names_no_file_is_an_error_not_the_demo(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EDGED_CONFIG", str(tmp_path / "typo.yaml"))
    with pytest.raises(ConfigError, match=r"typo.yaml: file not found \(named by \$EDGED_CONFIG\)"):
        run_cli.config_to_run(None)


def test_a_system_config_this_user_may_not_read_is_an_error_not_the_demo(tmp_path: Path, monkeypatch) -> None:
    """/etc/edged is root:edged 0750; tests run as root here, so the refusal is the kernel's answer, played."""

    class Forbidden(type(tmp_path)):  # type: ignore[misc]
        def is_file(self) -> bool:
            raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.delenv("EDGED_CONFIG", raising=False)
    monkeypatch.setattr(run_cli, "SYSTEM_CONFIG", Forbidden(tmp_path / "etc" / "edged.yaml"))
    with pytest.raises(ConfigError, match=r"edged.yaml: permission denied \(run as the edged user, or give -c FILE\)"):
        run_cli.config_to_run(None)
