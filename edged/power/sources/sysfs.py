"""Reading sysfs attributes: one value per file, integers in the kernel's units. Parsing is kept pure; the
reader turns every OS error into a PowerSourceError that says which file and why."""

from __future__ import annotations

import errno
from pathlib import Path

from edged.power.sources.base import PowerSourceError, SourceContext

SYSFS_INT_LIMIT = 2**63  # the kernel writes at most a 64-bit integer; anything larger is garbage


def parse_sysfs_int(text: str, unit: str) -> int:
    """'12345\\n' -> 12345. Raises ValueError naming the unit when the file holds anything else."""
    value = text.strip()
    shown = value if len(value) <= 40 else value[:40] + "..."
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"expected an integer in {unit}, got {shown!r}") from None
    if abs(number) > SYSFS_INT_LIMIT:
        raise ValueError(f"implausible value in {unit}: {shown}")
    return number


class SysfsDevice:
    """One sysfs device directory (a power supply, a hwmon chip, a powercap zone), read through the context."""

    def __init__(self, directory: Path, ctx: SourceContext, source_id: str, remedy: str | None = None) -> None:
        self.directory = directory
        self.ctx = ctx
        self.source_id = source_id
        self.remedy = remedy  # what to do when permission is denied

    def has(self, name: str) -> bool:
        return (self.directory / name).exists()

    def text(self, name: str) -> str:
        path = self.directory / name
        try:
            return self.ctx.read_text(path).strip()
        except FileNotFoundError:
            raise PowerSourceError(self.source_id, f"{path} vanished") from None
        except PermissionError:
            raise PowerSourceError(self.source_id, f"{path}: permission denied", self.remedy) from None
        except IsADirectoryError:
            raise PowerSourceError(self.source_id, f"{path} is a directory, not an attribute file") from None
        except OSError as exc:
            # e.g. ENODATA from a gauge that lost its battery, EIO from an I2C sensor that stopped answering
            reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
            raise PowerSourceError(self.source_id, f"{path}: {reason}") from None

    def optional_text(self, name: str) -> str | None:
        """The attribute's text, or None when the file is absent (read at open time, to learn what exists)."""
        return self.text(name) if self.has(name) else None

    def integer(self, name: str, unit: str) -> int:
        text = self.text(name)
        try:
            return parse_sysfs_int(text, unit)
        except ValueError as exc:
            raise PowerSourceError(self.source_id, f"{self.directory / name}: {exc}") from None
