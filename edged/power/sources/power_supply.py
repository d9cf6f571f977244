"""Linux power_supply class (/sys/class/power_supply/*): laptop batteries, UPS gauges, USB and AC supplies.

The kernel writes integers in micro-units: power_now µW, current_now µA, voltage_now µV, energy_* µWh,
charge_* µAh. Drivers disagree on the sign of current_now and power_now, so magnitudes are taken and the
direction comes from `status`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from edged.power.sample import PowerSample
from edged.power.sources.base import (
    Detection,
    PowerSource,
    PowerSourceConfig,
    PowerSourceError,
    SourceContext,
)
from edged.power.sources.sysfs import SysfsDevice

# attribute -> its unit, for the integer attributes we read
_INT_ATTRIBUTES = {
    "present": "0/1",
    "online": "0/1",
    "capacity": "%",
    "power_now": "µW",
    "current_now": "µA",
    "voltage_now": "µV",
    "energy_now": "µWh",
    "energy_full": "µWh",
    "charge_now": "µAh",
    "charge_full": "µAh",
}
_CHARGING_BY_STATUS = {"Charging": True, "Discharging": False, "Not charging": False, "Full": False}


@dataclass(frozen=True)
class SupplyValues:
    """The raw attributes of one supply, in the kernel's units; None where the driver has no such file."""

    kind: str  # Battery, Mains, USB, UPS, Wireless
    status: str | None = None
    present: int | None = None
    online: int | None = None
    capacity: int | None = None
    power_now: int | None = None
    current_now: int | None = None
    voltage_now: int | None = None
    energy_now: int | None = None
    energy_full: int | None = None
    charge_now: int | None = None
    charge_full: int | None = None


def supply_sample(source_id: str, values: SupplyValues, ts: float) -> PowerSample:
    """Convert one supply's raw attributes to a sample; pure, so every unit conversion is testable exactly."""
    notes: list[str] = []
    voltage_v = values.voltage_now / 1e6 if values.voltage_now is not None else None
    current_a = abs(values.current_now) / 1e6 if values.current_now is not None else None
    if values.kind != "Battery":
        state = {1: "online", 0: "offline"}.get(values.online or 0) if values.online is not None else None
        notes.append(f"{values.kind} supply" + (f", {state}" if state else "") + ": no battery state")
        return PowerSample(
            ts=ts,
            source=source_id,
            quality="measured",
            voltage_v=voltage_v,
            current_a=current_a,
            note="; ".join(notes),
        )
    power_w = None
    if values.power_now is not None:
        power_w = abs(values.power_now) / 1e6
    elif values.current_now is not None and values.voltage_now is not None:
        power_w = abs(values.current_now) * values.voltage_now / 1e12
        notes.append("power = current_now × voltage_now")
    battery_wh = None
    if values.energy_now is not None:
        battery_wh = values.energy_now / 1e6
    elif values.charge_now is not None and values.voltage_now is not None:
        battery_wh = values.charge_now * values.voltage_now / 1e12
        notes.append("energy left = charge_now × voltage_now")
    if battery_wh is not None and battery_wh < 0:
        notes.append(f"the gauge reported {battery_wh:g} Wh left: ignored")
        battery_wh = None
    battery_pct = _battery_pct(values)
    if battery_pct is not None and not 0.0 <= battery_pct <= 100.0:
        notes.append(f"the gauge reported {battery_pct:.1f}% (uncalibrated?): clamped")
        battery_pct = min(100.0, max(0.0, battery_pct))
    return PowerSample(
        ts=ts,
        source=source_id,
        quality="measured",
        power_w=power_w,
        voltage_v=voltage_v,
        current_a=current_a,
        battery_pct=battery_pct,
        battery_wh=battery_wh,
        charging=_CHARGING_BY_STATUS.get(values.status or ""),
        note="; ".join(notes) or None,
    )


def _battery_pct(values: SupplyValues) -> float | None:
    if values.capacity is not None:
        return float(values.capacity)
    if values.energy_now is not None and values.energy_full and values.energy_full > 0:
        return 100.0 * values.energy_now / values.energy_full
    if values.charge_now is not None and values.charge_full and values.charge_full > 0:
        return 100.0 * values.charge_now / values.charge_full
    return None


class PowerSupplyConfig(PowerSourceConfig):
    type: Literal["power_supply"]
    name: str = Field(min_length=1, description="directory under /sys/class/power_supply, e.g. BAT0")

    rank: ClassVar[int] = 40

    @property
    def source_id(self) -> str:
        return f"power_supply:{self.name}"

    def open(self, ctx: SourceContext) -> PowerSource:
        return PowerSupplySource(self, ctx)

    @classmethod
    def detect(cls, ctx: SourceContext) -> Detection:
        root = ctx.sys_path("class", "power_supply")
        if not root.is_dir():
            return Detection(absent=f"no {root} (kernel without the power_supply class)")
        names = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not names:
            return Detection(absent=f"{root} is empty: no battery or external supply reported")
        batteries_first = sorted(names, key=lambda n: not _is_battery(root / n, ctx))
        return Detection(found=[cls(type="power_supply", name=n) for n in batteries_first])


def _is_battery(directory: Path, ctx: SourceContext) -> bool:
    try:
        return ctx.read_text(directory / "type").strip() == "Battery"
    except OSError:
        return False


class PowerSupplySource(PowerSource):
    """Reads the attributes the supply had when opened; one that vanishes later is an error, not a silent None."""

    def __init__(self, config: PowerSupplyConfig, ctx: SourceContext) -> None:
        super().__init__(config.source_id)
        self.device = SysfsDevice(ctx.sys_path("class", "power_supply", config.name), ctx, self.id)
        self.clock = ctx.clock
        if not self.device.directory.is_dir():
            raise PowerSourceError(self.id, f"no {self.device.directory}")
        self.kind = self.device.text("type") if self.device.has("type") else "Unknown"
        self.attributes = [name for name in _INT_ATTRIBUTES if self.device.has(name)]
        self.has_status = self.device.has("status")
        self.read()  # fail at open, not at the first tick, when a file is unreadable

    def read(self) -> PowerSample:
        if not self.device.directory.is_dir():
            raise PowerSourceError(self.id, f"{self.device.directory} vanished (battery removed or supply unplugged)")
        raw = {name: self.device.integer(name, _INT_ATTRIBUTES[name]) for name in self.attributes}
        if raw.get("present") == 0:
            raise PowerSourceError(self.id, "no battery present (present = 0)")
        status = self.device.text("status") if self.has_status else None
        values = SupplyValues(kind=self.kind, status=status, **raw)
        return supply_sample(self.id, values, self.clock())
