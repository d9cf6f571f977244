"""Logging for a service: plain lines or one JSON object per line, both friendly to journald.

Under systemd, stderr goes to the journal, which timestamps each line itself; both formats then start each line
with its syslog priority (<3>, <4>, <6>, <7>: sd-daemon(3)), which journald takes off and stores as the entry's
PRIORITY, so `journalctl -p warning` works without a journald library.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def priority_prefix(record: logging.LogRecord) -> str:
    return f"<{_PRIORITY.get(record.levelno, 6)}>"


class JsonFormatter(logging.Formatter):
    """`{"ts": ..., "level": "info", "logger": ..., "msg": ...}`, after the priority prefix when writing to journald."""

    def __init__(self, to_journal: bool = False) -> None:
        super().__init__()
        self.to_journal = to_journal

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        text = json.dumps(entry)
        return priority_prefix(record) + text if self.to_journal else text


class JournalFormatter(logging.Formatter):
    """`<6>edged.daemon: message` to journald, `2026-11-28 13:00:00 INFO edged.daemon: message` elsewhere."""

    def __init__(self, to_journal: bool) -> None:
        super().__init__()
        self.to_journal = to_journal

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if self.to_journal:
            return priority_prefix(record) + text
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        return f"{stamp} {record.levelname} {text}"


def stderr_is_journal() -> bool:
    """True when stderr is the stream systemd connected to the journal: JOURNAL_STREAM holds its `device:inode`
    (systemd.exec(5)). A process that inherited the variable but writes elsewhere (a file, a pipe) does not match."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no stderr, or one without a file descriptor
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    to_journal = stderr_is_journal()
    handler.setFormatter(JsonFormatter(to_journal) if fmt == "json" else JournalFormatter(to_journal))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
