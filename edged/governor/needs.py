"""The accuracy floor users ask for, as it changes at run time.

The config sets a base floor; commands (MQTT `set/accuracy_floor`) replace it, for good or for a while
("high accuracy for 60 s"). The object is immutable and never reads a clock: every method takes `now_s`, so the
daemon can swap it atomically between threads and the simulator can replay a timeline of commands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class FloorCommand(BaseModel):
    """A request to change the floor: `floor: null` returns to the configured base."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    floor: float | None = Field(ge=0, le=1, description="minimum mAP50-95; null: back to the configured floor")
    for_s: float | None = Field(None, gt=0, description="expires after this long; null: until changed")
    source: str = Field("command", description="who asked, for the decision's reason")


@dataclass(frozen=True)
class FloorOverride:
    floor: float
    set_at_s: float
    expires_at_s: float | None
    source: str

    def active(self, now_s: float) -> bool:
        return self.expires_at_s is None or now_s < self.expires_at_s


@dataclass(frozen=True)
class AccuracyNeeds:
    """The base floor plus the overrides in force; the newest unexpired override wins.

    A lasting override replaces everything before it; a temporary one sits on top, and when it expires whatever
    was in force beneath it (a lasting override, or the base) comes back.
    """

    base: float = 0.0
    overrides: tuple[FloorOverride, ...] = ()

    def apply(self, command: FloorCommand, now_s: float) -> AccuracyNeeds:
        if command.floor is None:
            return AccuracyNeeds(self.base)
        return self.with_floor(command.floor, now_s, command.for_s, command.source)

    def with_floor(
        self, floor: float, now_s: float, for_s: float | None = None, source: str = "command"
    ) -> AccuracyNeeds:
        if not (math.isfinite(floor) and 0.0 <= floor <= 1.0):
            raise ValueError(f"accuracy floor must be within 0..1, got {floor}")
        if not math.isfinite(now_s) or (for_s is not None and not (math.isfinite(for_s) and for_s > 0)):
            raise ValueError(f"a floor needs a finite time and a positive duration (now {now_s}, for {for_s})")
        expires = None if for_s is None else now_s + for_s
        override = FloorOverride(floor, now_s, expires, source)
        kept = self.pruned(now_s).overrides if expires is not None else ()
        return AccuracyNeeds(self.base, (*kept, override))

    def pruned(self, now_s: float) -> AccuracyNeeds:
        """The same needs without expired overrides (keeps the stack short)."""
        return AccuracyNeeds(self.base, tuple(o for o in self.overrides if o.active(now_s)))

    def in_force(self, now_s: float) -> FloorOverride | None:
        for override in reversed(self.overrides):
            if override.active(now_s):
                return override
        return None

    def floor_at(self, now_s: float) -> float:
        override = self.in_force(now_s)
        return self.base if override is None else override.floor

    def expires_at(self, now_s: float) -> float | None:
        """When the floor in force ends (None: it lasts); lets the governor borrow energy for a passing need."""
        override = self.in_force(now_s)
        return None if override is None else override.expires_at_s

    def describe(self, now_s: float) -> str:
        override = self.in_force(now_s)
        if override is None:
            return f"floor {self.base:.3f} (configured)"
        until = "" if override.expires_at_s is None else f", {override.expires_at_s - now_s:.0f} s left"
        return f"floor {override.floor:.3f} ({override.source}{until})"
