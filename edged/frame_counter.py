"""Frame numbers that keep increasing across restarts, so subscribers can drop duplicates by number.

The next number is saved every few seconds with a slack added, and exactly on a clean stop. After a crash the
daemon resumes above anything it can have published (a visible jump, never a repeat).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SLACK = 10_000  # more frames than any source delivers between two saves


class FrameCounter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = self._load()

    def _load(self) -> int:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("cannot read %s (%s): frame numbers restart at 0", self.path, exc)
            return 0
        try:
            return max(0, int(text))
        except ValueError:
            log.warning("%s holds %r, not a frame number: frame numbers restart at 0", self.path, text[:40])
            return 0

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
