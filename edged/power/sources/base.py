"""What every power source is: a pydantic config (one arm of the `power.sources` union) that can detect its
devices and open a source, and the source itself, which turns one read into a PowerSample."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from edged.errors import EdgedError
from edged.power.sample import PowerSample


class PowerSourceError(EdgedError):
    """A source that cannot be opened or read. `reason` says why; `remedy`, when known, what fixes it."""

    def __init__(self, source: str, reason: str, remedy: str | None = None) -> None:
        self.source = source
        self.reason = reason
        self.remedy = remedy
        super().__init__(f"{source}: {reason}" + (f" ({remedy})" if remedy else ""))


def read_text_file(path: Path) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


@dataclass(frozen=True)
class SourceContext:
    """Where sources look and how they read: tests and `--sysfs-root` point them at a copied tree, and may inject
    a reader (e.g. one that answers EACCES, which chmod cannot do for root)."""

    sysfs_root: Path = Path("/sys")
    clock: Callable[[], float] = time.time
    read_text: Callable[[Path], str] = read_text_file
    listen_s: float = 1.0  # how long detection may wait for sources that announce themselves (MAVLink); 0: don't

    @property
    def is_this_machine(self) -> bool:
        """False when pointed at a copied tree: sources that cannot be redirected there must say so."""
        return self.sysfs_root == Path("/sys")

    def sys_path(self, *parts: str) -> Path:
        return self.sysfs_root.joinpath(*parts)


@dataclass
class Detection:
    """What auto-detection found for one source type: configs to open, or why there are none."""

    found: list[PowerSourceConfig] = field(default_factory=list)
    absent: str | None = None


class PowerSource(ABC):
    """An opened source. `read` raises PowerSourceError (never anything else on bad input) and is cheap enough
    to call at the sampling rate."""

    def __init__(self, source_id: str) -> None:
        self.id = source_id

    @abstractmethod
    def read(self) -> PowerSample: ...

    def close(self) -> None:
        """Release what `open` took (sockets, serial ports); reading files holds nothing."""
        return None


class PowerSourceConfig(BaseModel):
    """Base of one `power.sources` entry; subclasses add `type: Literal[...]` and their parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str

    # Auto-detected sources are tried in this order (lower first) for the power reading; a configured list keeps
    # its own order. Rail sensors first (they see the whole board), then PMIC rails, the CPU package counter, the
    # battery gauge, the vehicle battery, and battery-percent-only sources.
    rank: ClassVar[int] = 50
    auto_detect: ClassVar[bool] = True

    @property
    def source_id(self) -> str:
        """The `source` its samples carry, known before opening (so a source that never opens can be named)."""
        raise NotImplementedError

    def open(self, ctx: SourceContext) -> PowerSource:
        """Open it; raise PowerSourceError now, not at the first tick, when it clearly cannot be read."""
        raise NotImplementedError

    @classmethod
    def detect(cls, ctx: SourceContext) -> Detection:
        """Find this type's devices; must be quick and must not raise on a machine that lacks them."""
        raise NotImplementedError
