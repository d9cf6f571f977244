"""The durable outbox: messages wait here, on disk, until the broker has acknowledged them.

SQLite in WAL mode from the standard library. A message is committed before `append` returns, so once the daemon has
handed a result over it survives a broker outage, a daemon restart and a kill -9 (WAL with synchronous=NORMAL: every
commit survives a process crash; a power cut may lose the last commits since the last checkpoint, never corrupt the
file). Rows are read back in insertion order (ids only grow while the outbox is open; the class assigns them, which
is half the cost of AUTOINCREMENT), removed only on acknowledgement, and the oldest are dropped only past
`max_messages` — each drop is counted in the file, so the total survives restarts and appears in `stats`.

One process owns an outbox at a time (an flock on `<path>.lock`): two senders on one file would duplicate and
reorder everything. The class is thread-safe; one lock serialises the daemon's appends and the sender's reads.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from edged.errors import EdgedError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('dropped', 0);
"""


class OutboxError(EdgedError):
    """The outbox file cannot be opened, is not an outbox, or is in use by another process."""


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """A bounded, ordered, durable queue of MQTT messages."""

    def __init__(self, path: str | Path, max_messages: int) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        self.path = Path(path)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        self._closed = False
        self._lockfile = _claim(self.path)
        try:
            self._db = _open(self.path)
            self._depth = int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
            self._next_id = int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0]) + 1
            self._dropped = int(self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            self._lockfile.close()
            raise OutboxError(f"{self.path}: not a usable outbox ({exc}); move it away to start afresh") from None

    @property
    def depth(self) -> int:
        """Messages waiting for acknowledgement."""
        return self._depth

    @property
    def dropped(self) -> int:
        """Messages dropped because the outbox was full, ever (persisted)."""
        return self._dropped

    def append(
        self, topic: str, payload: bytes, qos: int, retain: bool = False, counters: Mapping[str, int] | None = None
    ) -> int:
        """Store one message durably; drop the oldest past the bound. Returns its id.

        `counters` are set in the same transaction: a number the message carries (its frame) is then known exactly
        after a kill -9, committed if and only if the message is, and outlives the message's acknowledgement."""
        with self._lock:
            if self._closed:
                raise OutboxError(f"{self.path}: the outbox is closed (publishing after MqttLink.stop()?)")
            message_id = self._next_id
            try:
                self._db.execute("BEGIN")
                self._db.execute(
                    "INSERT INTO messages (id, topic, payload, qos, retain) VALUES (?, ?, ?, ?, ?)",
                    (message_id, topic, payload, qos, int(retain)),
                )
                for name, value in (counters or {}).items():
                    self._db.execute(
                        "INSERT INTO counters (name, value) VALUES (?, ?) "
                        "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                        (name, value),
                    )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:  # disk full, I/O error: this message is not stored; the stored ones stay
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise OutboxError(f"{self.path}: cannot store a message ({exc}); is the disk full?") from None
            self._next_id += 1
            self._depth += 1
            if self._depth > self.max_messages:
                self._drop_oldest(self._depth - self.max_messages)
            return message_id

    def counter(self, name: str) -> int | None:
        """A counter set by `append` (None if no message ever set it)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def read_after(self, after_id: int, limit: int) -> list[OutboxMessage]:
        """Up to `limit` messages with id > after_id, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [OutboxMessage(int(i), str(t), bytes(p), int(q), bool(r)) for i, t, p, q, r in rows]

    def remove(self, ids: list[int]) -> int:
        """Forget acknowledged messages (ids already dropped are ignored). Returns how many were removed."""
        if not ids:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN")
                removed = 0
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    removed += self._db.execute(f"DELETE FROM messages WHERE id IN ({marks})", chunk).rowcount
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:  # a DELETE in WAL mode needs disk space too
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise OutboxError(f"{self.path}: cannot remove acknowledged messages ({exc})") from None
            self._depth -= removed
            return removed

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
                self._lockfile.close()

    def _drop_oldest(self, count: int) -> None:
        self._db.execute("BEGIN")
        removed = self._db.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?)", (count,)
        ).rowcount
        self._db.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped'", (removed,))
        self._db.execute("COMMIT")
        self._depth -= removed
        self._dropped += removed


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    return db


def _claim(path: Path) -> IO[str]:
    """Hold an exclusive lock on `<path>.lock` for as long as this process has the outbox open."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lockfile = open(path.with_name(path.name + ".lock"), "a+")  # noqa: SIM115 (held until close())
    except OSError as exc:
        raise OutboxError(f"{path}: cannot create the outbox ({exc.strerror})") from None
    try:
        fcntl.flock(lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lockfile.seek(0)
        pid = lockfile.read().strip()
        lockfile.close()
        owner = f"pid {pid}" if pid.isdigit() else "another process"
        raise OutboxError(f"{path}: in use by {owner}; one edged per outbox (set mqtt.outbox_path)") from None
    lockfile.seek(0)
    lockfile.truncate()
    lockfile.write(str(os.getpid()))
    lockfile.flush()
    return lockfile
