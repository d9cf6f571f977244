"""Frame numbers that keep increasing across restarts, so subscribers can drop duplicates by number.

Where the numbers go over MQTT, the outbox commits each frame's number with its message, so a restart after a clean
stop or a kill -9 resumes at exactly the next number: a gap a subscriber sees is a dropped frame, never a restart.
Without an outbox (or when it has never stored a frame) a file is the record: saved every few seconds with a slack
added and exactly on a clean stop, so a crash resumes above anything published (a visible jump, never a repeat). A
file that cannot be read or holds no number resumes at the wall clock in milliseconds: above any number an earlier
run can have reached (it would have had to run faster than 1,000 fps since 1970), so still never a repeat.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

SLACK = 10_000  # more frames than any source delivers between two saves


class FrameCounter:
    def __init__(self, path: Path, last_published: int | None = None) -> None:
        """`last_published`: the newest number the outbox committed, when there is one; numbering resumes after it."""
        self.path = path
        self.base = last_published + 1 if last_published is not None else self._load()

    def _load(self) -> int:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            return _above_any_earlier_number(f"cannot read {self.path} ({exc})")
        if not text.isdigit():
            return _above_any_earlier_number(f"{self.path} holds {text[:40]!r}, not a frame number")
        return int(text)

    def save(self, next_index: int, clean: bool = False) -> None:
        """Persist base + next_index (+ SLACK unless this is a clean stop). Atomic: write, then rename."""
        value = self.base + next_index + (0 if clean else SLACK)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(f"{value}\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot save the frame counter to %s: %s", self.path, exc)


def _above_any_earlier_number(problem: str) -> int:
    resume = int(time.time() * 1000)
    log.error(
        "%s: frame numbers resume at %d (the clock in ms), above any an earlier run can have used", problem, resume
    )
    return resume
