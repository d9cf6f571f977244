"""`edged completion bash`: the generated script, sourced in a real bash, completes commands, options, choices and
file names the way a user's Tab would (the completion function called as bash calls it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COMPLETE = """
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
_shtab_edged
printf '%s\\n' "${COMPREPLY[@]}"
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "edged", "completion", "bash"], capture_output=True, text=True, check=True, timeout=60
    )
    path = tmp_path_factory.mktemp("completion") / "edged.bash"
    path.write_text(done.stdout)
    return path


def tab(script: Path, *words: str, cwd: Path | None = None) -> list[str]:
    bash = shutil.which("bash")
    assert bash, "bash is needed for its own completion"
    done = subprocess.run(
        [bash, "-c", COMPLETE, "complete", str(script), "edged", *words], capture_output=True, text=True, cwd=cwd
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_commands_subcommands_and_options_complete(script: Path) -> None:
    assert tab(script, "") == ["run", "detect", "watch", "zoo", "governor", "power", "config", "completion"]
    assert tab(script, "zoo", "pro") == ["profile"]
    assert tab(script, "zoo", "profile", "--assumed") == ["--assumed-power-w"]
    assert "--assumed-power-w" not in tab(script, "zoo", "report", "--")
    assert tab(script, "completion", "") == ["bash", "zsh", "tcsh"]


def test_paths_complete_as_file_names(script: Path, tmp_path: Path) -> None:
    (tmp_path / "edged.yaml").touch()
    (tmp_path / "clips").mkdir()
    assert tab(script, "run", "-c", "ed", cwd=tmp_path) == ["edged.yaml"]
    assert tab(script, "detect", "cl", cwd=tmp_path) == ["clips"]
