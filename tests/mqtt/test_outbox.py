"""The durable outbox on its own: order, acknowledgement, the bound, persistence, one owner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edged.mqtt.outbox import Outbox, OutboxError


def fill(outbox: Outbox, count: int, start: int = 0) -> list[int]:
    return [outbox.append("edged/cam1/detections", f"{i}".encode(), qos=1) for i in range(start, start + count)]


def payloads(outbox: Outbox) -> list[bytes]:
    return [m.payload for m in outbox.read_after(0, 1_000_000)]


def test_messages_come_back_in_insertion_order_until_acknowledged(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_messages=1000)
    ids = fill(outbox, 5)
    assert payloads(outbox) == [b"0", b"1", b"2", b"3", b"4"]
    assert [m.payload for m in outbox.read_after(ids[1], 2)] == [b"2", b"3"]
    assert outbox.remove([ids[0], ids[2]]) == 2
    assert payloads(outbox) == [b"1", b"3", b"4"]
    assert outbox.depth == 3
    outbox.close()


def test_oldest_are_dropped_past_the_bound_and_counted(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_messages=3)
    fill(outbox, 5)
    assert payloads(outbox) == [b"2", b"3", b"4"]
    assert (outbox.depth, outbox.dropped) == (3, 2)
    outbox.close()


def test_contents_and_drop_count_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path, max_messages=3)
    ids = fill(outbox, 4)
    outbox.close()
    reopened = Outbox(path, max_messages=3)
    assert payloads(reopened) == [b"1", b"2", b"3"]
    assert (reopened.depth, reopened.dropped) == (3, 1)
    new_id = reopened.append("t", b"4", qos=1)
    assert new_id > ids[-1], "ids never go back, even after the newest was acknowledged"
    reopened.close()


def test_ids_keep_growing_after_the_outbox_empties(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_messages=10)
    ids = fill(outbox, 3)
    outbox.remove(ids)
    assert outbox.append("t", b"x", qos=1) > ids[-1]
    outbox.close()


def test_acknowledging_a_dropped_message_is_harmless(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_messages=2)
    ids = fill(outbox, 3)  # ids[0] dropped
    assert outbox.remove([ids[0], ids[1]]) == 1
    assert outbox.depth == 1
    outbox.close()


def test_a_second_process_cannot_open_the_same_outbox(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path, max_messages=10)
    code = f"from edged.mqtt.outbox import Outbox; Outbox({str(path)!r}, 10)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "in use by pid" in result.stderr and "one edged per outbox" in result.stderr
    outbox.close()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_a_file_that_is_not_an_outbox_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError, match="not a usable outbox"):
        Outbox(path, max_messages=10)


def test_appending_after_close_is_a_clear_error(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_messages=10)
    outbox.close()
    outbox.close()  # idempotent
    with pytest.raises(OutboxError, match="the outbox is closed"):
        outbox.append("t", b"x", qos=1)


def test_a_counter_commits_with_its_message_and_outlives_its_acknowledgement(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    outbox = Outbox(path, max_messages=10)
    assert outbox.counter("last_frame") is None
    ids = [outbox.append("t", b"x", qos=1, counters={"last_frame": frame}) for frame in (7, 8, 9)]
    outbox.remove(ids)
    outbox.close()
    reopened = Outbox(path, max_messages=10)
    assert reopened.counter("last_frame") == 9
    reopened.close()


def test_a_message_that_cannot_be_stored_leaves_its_counter_as_it_was(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", max_messages=10)
    outbox.append("t", b"x", qos=1, counters={"last_frame": 1})
    with pytest.raises(OutboxError, match="cannot store"):
        outbox.append("t", None, qos=1, counters={"last_frame": 2})  # type: ignore[arg-type]  # NOT NULL payload
    assert outbox.counter("last_frame") == 1
    assert outbox.depth == 1
    outbox.close()
