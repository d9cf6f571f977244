"""The sampler: one thread that reads every power source at a fixed rate and survives them coming and going.

Each tick it reads every working source and hands over one PowerReading: the sample of the best source that
measures power, the best that knows the battery, and all of them. A source that fails is reported once (a log
line and a PowerEvent), skipped, and tried again every `retry_s`; the next best takes over its role meanwhile and
it gets the role back when it recovers. Sources are best first: the configured order, or auto-detection's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from edged.power.config import PowerConfig
from edged.power.sample import PowerSample
from edged.power.sources import (
    PowerSource,
    PowerSourceConfig,
    PowerSourceError,
    SourceContext,
    detected_configs,
)

log = logging.getLogger(__name__)

Role = Literal["power", "battery"]
T = TypeVar("T")


class PowerReading(BaseModel):
    """One tick of the sampler."""

    model_config = ConfigDict(frozen=True)

    ts: float
    power: PowerSample | None = Field(description="the best working source that measures power; None: none does")
    battery: PowerSample | None = Field(description="the best working source that knows the battery")
    samples: list[PowerSample] = Field(description="every source read this tick")
    unreadable: dict[str, str] = Field(default_factory=dict, description="source -> why it cannot be read now")


class PowerEvent(BaseModel):
    """A change worth telling: a source failed or recovered, or a role moved to another source."""

    model_config = ConfigDict(frozen=True)

    ts: float
    kind: Literal["source_failed", "source_recovered", "role_changed"]
    source: str | None = Field(description="the source concerned; for role_changed the new one (None: no source)")
    role: Role | None = None
    previous: str | None = None
    reason: str | None = None
    message: str


@dataclass
class _Slot:
    """One source as the sampler tracks it. Owned by the sampler's thread."""

    config: PowerSourceConfig
    source: PowerSource | None = None
    failure: str | None = None
    retry_at: float = 0.0
    last: PowerSample | None = None

    @property
    def id(self) -> str:
        return self.config.source_id


class PowerSampler:
    """Reads `configs` at `sample_hz`. Use `start()`/`stop()` for the thread, or `step()` to drive it by hand."""

    def __init__(
        self,
        configs: Sequence[PowerSourceConfig],
        *,
        sample_hz: float = 2.0,
        retry_s: float = 5.0,
        ctx: SourceContext | None = None,
        on_reading: Callable[[PowerReading], None] | None = None,
        on_event: Callable[[PowerEvent], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = [_Slot(config) for config in configs]
        self.period_s = 1.0 / sample_hz
        self.retry_s = retry_s
        self.ctx = ctx or SourceContext()
        self.on_reading = on_reading
        self.on_event = on_event
        self.monotonic = monotonic
        self.roles: dict[Role, str | None] = {"power": None, "battery": None}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._callback_failed = False

    @classmethod
    def from_config(
        cls,
        config: PowerConfig,
        ctx: SourceContext | None = None,
        on_reading: Callable[[PowerReading], None] | None = None,
        on_event: Callable[[PowerEvent], None] | None = None,
    ) -> PowerSampler:
        """The configured sources, or, when the list is empty, every source auto-detection finds now."""
        ctx = ctx or SourceContext()
        configs = list(config.sources) or detected_configs(ctx)
        if not configs:
            log.warning("no power or battery source found: energy figures will come from the zoo profiles only")
        return cls(
            configs,
            sample_hz=config.sample_hz,
            retry_s=config.retry_s,
            ctx=ctx,
            on_reading=on_reading,
            on_event=on_event,
        )

    def source(self, source_id: str) -> PowerSource | None:
        """The opened source with this id (e.g. the simulated battery, to record inferences into)."""
        return next((slot.source for slot in self.slots if slot.id == source_id), None)

    # --- one tick --------------------------------------------------------------------------------------------------

    def step(self) -> PowerReading:
        """Read every source that is working or due for a retry; choose the roles; report what changed."""
        now = self.monotonic()
        for slot in self.slots:
            if slot.failure is None or now >= slot.retry_at:
                self._read(slot, now)
        working = [slot for slot in self.slots if slot.failure is None and slot.last is not None]
        power = next((s.last for s in working if s.last is not None and s.last.has_power), None)
        battery = next((s.last for s in working if s.last is not None and s.last.has_battery), None)
        self._set_role("power", power)
        self._set_role("battery", battery)
        reading = PowerReading(
            ts=self.ctx.clock(),
            power=power,
            battery=battery,
            samples=[slot.last for slot in working if slot.last is not None],
            unreadable={slot.id: slot.failure for slot in self.slots if slot.failure is not None},
        )
        self._notify(self.on_reading, reading)
        return reading

    def _read(self, slot: _Slot, now: float) -> None:
        try:
            slot.last = self._read_or_reopen(slot)
        except PowerSourceError as exc:
            self._failed(slot, exc.reason + (f" ({exc.remedy})" if exc.remedy else ""), now)
        except Exception as exc:  # a bug in a source must not stop the sampler; say it once, with the traceback
            if slot.failure is None:
                log.exception("power source %s raised", slot.id)
            self._failed(slot, f"unexpected error: {exc!r}", now)
        else:
            if slot.failure is not None:
                self._event("source_recovered", slot.id, message=f"power source {slot.id} is readable again")
                slot.failure = None

    def _read_or_reopen(self, slot: _Slot) -> PowerSample:
        """Read; after a failure, read the same source once more and then open it afresh (a re-plugged sensor
        or a reloaded driver comes back under new files)."""
        if slot.source is not None:
            try:
                return slot.source.read()
            except PowerSourceError:
                if slot.failure is None:
                    raise
            self._close(slot)
        slot.source = slot.config.open(self.ctx)
        return slot.source.read()

    def _failed(self, slot: _Slot, reason: str, now: float) -> None:
        slot.retry_at = now + self.retry_s
        slot.last = None
        already_failing, slot.failure = slot.failure is not None, reason
        if already_failing:  # reported when it started; retries only say it at debug level
            log.debug("power source %s still unreadable: %s", slot.id, reason)
            return
        self._event("source_failed", slot.id, reason=reason, message=f"power source {slot.id} failed: {reason}")

    def _set_role(self, role: Role, sample: PowerSample | None) -> None:
        new = sample.source if sample is not None else None
        previous = self.roles[role]
        if new == previous:
            return
        self.roles[role] = new
        message = f"{role} reading now from {new or 'no source'}" + (f" (was {previous})" if previous else "")
        self._event("role_changed", new, role=role, previous=previous, message=message)

    def _event(self, kind: str, source: str | None, **fields: object) -> None:
        event = PowerEvent.model_validate({"ts": self.ctx.clock(), "kind": kind, "source": source, **fields})
        lost = kind == "source_failed" or (kind == "role_changed" and source is None)
        level = logging.WARNING if lost else logging.INFO
        log.log(level, "%s", event.message)
        self._notify(self.on_event, event)

    def _notify(self, callback: Callable[[T], None] | None, value: T) -> None:
        if callback is None:
            return
        try:
            callback(value)
        except Exception:
            if not self._callback_failed:  # a consumer's bug: say it once, keep sampling
                log.exception("power sampler callback %r raised (further errors logged at debug)", callback)
                self._callback_failed = True
            else:
                log.debug("power sampler callback raised again", exc_info=True)

    # --- the thread -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        for slot in self.slots:
            self._close(slot)

    def _run(self) -> None:
        next_tick = self.monotonic()
        while not self._stop.is_set():
            self.step()
            next_tick += self.period_s
            delay = next_tick - self.monotonic()
            if delay < 0:  # fell behind (a slow source): skip the missed ticks rather than burst
                next_tick, delay = self.monotonic(), 0.0
            self._stop.wait(delay)

    def _close(self, slot: _Slot) -> None:
        if slot.source is not None:
            try:
                slot.source.close()
            except Exception:
                log.debug("closing power source %s failed", slot.id, exc_info=True)
            slot.source = None
