"""Log lines as journald receives them: a syslog priority prefix when stderr is the journal's stream (JOURNAL_STREAM
names its device:inode, as systemd sets it), in both formats; plain lines anywhere else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LOG_SOME = """
import logging
from edged.logs import configure_logging
configure_logging("DEBUG", sys.argv[1])
log = logging.getLogger("edged.test")
log.debug("d"); log.info("i"); log.warning("w"); log.error("e"); log.critical("c")
"""


def logged(tmp_path: Path, fmt: str, journal_stream: str | None) -> list[str]:
    """Run a process whose stderr is a file; JOURNAL_STREAM "match" names that very file, as systemd would."""
    out = tmp_path / "stderr"
    with out.open("wb") as stderr:
        env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
        if journal_stream == "match":
            stat = os.fstat(stderr.fileno())
            journal_stream = f"{stat.st_dev}:{stat.st_ino}"
        if journal_stream is not None:
            env["JOURNAL_STREAM"] = journal_stream
        subprocess.run([sys.executable, "-c", "import sys\n" + LOG_SOME, fmt], stderr=stderr, env=env, check=True)
    return out.read_text().splitlines()


def test_json_lines_to_the_journal_carry_the_syslog_priority(tmp_path: Path) -> None:
    lines = logged(tmp_path, "json", "match")
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    entries = [json.loads(line[3:]) for line in lines]
    assert [e["level"] for e in entries] == ["debug", "info", "warning", "error", "critical"]
    assert entries[2]["msg"] == "w" and entries[2]["logger"] == "edged.test"


def test_text_lines_to_the_journal_carry_the_syslog_priority_and_no_timestamp(tmp_path: Path) -> None:
    assert logged(tmp_path, "text", "match")[2] == "<4>edged.test: w"


@pytest.mark.parametrize("journal_stream", [None, "1:2", "not-a-stream"], ids=["unset", "another-stream", "garbage"])
def test_lines_elsewhere_are_plain(tmp_path: Path, journal_stream: str | None) -> None:
    """Unset, or inherited from a service by a process that writes somewhere else: no prefix."""
    json_lines = logged(tmp_path, "json", journal_stream)
    assert [json.loads(line)["level"] for line in json_lines] == ["debug", "info", "warning", "error", "critical"]
    text_lines = logged(tmp_path, "text", journal_stream)
    assert text_lines[2].endswith(" WARNING edged.test: w") and not text_lines[2].startswith("<")
