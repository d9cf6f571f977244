"""Logging for a service: plain lines or one JSON object per line, both friendly to journald.

Under systemd, stderr goes to the journal, which timestamps each line itself; the text format adds the syslog
priority prefix (<3>, <4>, <6>, <7>) so `journalctl -p warning` works without a journald library.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class JournalFormatter(logging.Formatter):
    """`<6>edged.daemon: message` under systemd, `2026-11-28 13:00:00 INFO edged.daemon: message` on a terminal."""

    def __init__(self, under_systemd: bool) -> None:
        super().__init__()
        self.under_systemd = under_systemd

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if self.under_systemd:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{text}"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        return f"{stamp} {record.levelname} {text}"


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    under_systemd = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    handler.setFormatter(JsonFormatter() if fmt == "json" else JournalFormatter(under_systemd))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
