"""psutil.sensors_battery(): battery percent and time left on any OS psutil knows; no power reading."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from edged.power.sample import PowerSample
from edged.power.sources.base import (
    Detection,
    PowerSource,
    PowerSourceConfig,
    PowerSourceError,
    SourceContext,
)

PSUTIL_NOTE = "battery percent only (no power reading); charging = on external power"


def psutil_sample(source_id: str, battery: Any, ts: float) -> PowerSample:
    """From psutil's sbattery(percent, secsleft, power_plugged); its sentinels for 'unknown' become None."""
    import psutil

    secs = battery.secsleft
    known_secs = secs not in (psutil.POWER_TIME_UNKNOWN, psutil.POWER_TIME_UNLIMITED) and secs is not None
    return PowerSample(
        ts=ts,
        source=source_id,
        quality="measured",
        battery_pct=float(battery.percent),
        charging=battery.power_plugged,
        time_remaining_s=float(secs) if known_secs and secs >= 0 else None,
        note=PSUTIL_NOTE,
    )


def _sensors_battery() -> Any:
    import psutil

    reader = getattr(psutil, "sensors_battery", None)
    if reader is None:
        raise PowerSourceError("psutil", "psutil has no sensors_battery() on this platform")
    return reader()


class PsutilBatteryConfig(PowerSourceConfig):
    type: Literal["psutil"]

    rank: ClassVar[int] = 60

    @property
    def source_id(self) -> str:
        return "psutil"

    def open(self, ctx: SourceContext) -> PowerSource:
        return PsutilBatterySource(self, ctx)

    @classmethod
    def detect(cls, ctx: SourceContext) -> Detection:
        if not ctx.is_this_machine:
            return Detection(absent=f"skipped: psutil reads this machine's /sys, not {ctx.sysfs_root}")
        try:
            battery = _sensors_battery()
        except PowerSourceError as exc:
            return Detection(absent=exc.reason)
        if battery is None:
            return Detection(absent="psutil.sensors_battery() found no battery")
        return Detection(found=[cls(type="psutil")])


class PsutilBatterySource(PowerSource):
    def __init__(self, config: PsutilBatteryConfig, ctx: SourceContext) -> None:
        super().__init__(config.source_id)
        self.clock = ctx.clock
        self.read()

    def read(self) -> PowerSample:
        battery = _sensors_battery()
        if battery is None:
            raise PowerSourceError(self.id, "psutil.sensors_battery() finds no battery")
        return psutil_sample(self.id, battery, self.clock())
