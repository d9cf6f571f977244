"""Frame numbers across restarts when the outbox cannot say where they stopped: never a repeat."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edged.frame_counter import SLACK, FrameCounter


def test_the_outbox_last_frame_wins_over_the_file(tmp_path: Path) -> None:
    (tmp_path / "frame_counter").write_text("50000\n")  # a crash's slack
    assert FrameCounter(tmp_path / "frame_counter", last_published=41).base == 42


def test_without_an_outbox_a_crash_resumes_above_the_slack_and_a_clean_stop_exactly(tmp_path: Path) -> None:
    path = tmp_path / "frame_counter"
    first = FrameCounter(path)
    first.save(120)  # periodic save: a kill -9 may follow
    assert FrameCounter(path).base == 120 + SLACK
    first.save(130, clean=True)
    assert FrameCounter(path).base == 130


@pytest.mark.parametrize("content", ["garbage\n", "", "\x00\x00", "-5", "1e9"])
def test_a_damaged_file_resumes_above_any_number_an_earlier_run_used(tmp_path: Path, content: str, caplog) -> None:
    path = tmp_path / "frame_counter"
    path.write_text(content)
    before_ms = int(time.time() * 1000)
    assert FrameCounter(path).base >= before_ms
    assert "resume at" in caplog.text and str(path) in caplog.text


def test_an_unreadable_file_resumes_above_any_number_an_earlier_run_used(tmp_path: Path) -> None:
    path = tmp_path / "frame_counter"
    path.mkdir()  # reading it fails with an OSError, as an SD card's I/O error would
    before_ms = int(time.time() * 1000)
    assert FrameCounter(path).base >= before_ms
