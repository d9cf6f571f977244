"""INA2xx / INA3221 current sensors through hwmon (/sys/class/hwmon/hwmon*): Pi UPS HATs, Jetson rails.

Units as the kernel writes them: in*_input mV (bus voltage; the ina2xx in0 is the shunt), curr*_input mA,
power*_input µW. Channel i pairs curr{i} with in{i}; labels (in{i}_label, e.g. VDD_IN on a Jetson) name them.
hwmonN numbers change between boots, so a config names the chip and its I2C device instead.
"""

from __future__ import annotations

import os
import re
import typing
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

InaChip = Literal["ina209", "ina219", "ina220", "ina226", "ina230", "ina231", "ina233", "ina238", "ina260", "ina3221"]
INA_CHIPS: tuple[str, ...] = typing.get_args(InaChip)
# Labels that carry the whole board's input on the boards we know (Jetson: VDD_IN); others are sub-rails.
TOTAL_LABELS = ("VDD_IN", "VIN")
_CURRENT_FILE = re.compile(r"^curr(\d+)_input$")


@dataclass(frozen=True)
class ChannelValues:
    """One channel in the kernel's units; power_uw is None where the chip has no power register."""

    label: str
    bus_mv: int
    current_ma: int
    power_uw: int | None = None


def channel_power_w(channel: ChannelValues) -> float:
    if channel.power_uw is not None:
        return abs(channel.power_uw) / 1e6  # INA3221/226 report reverse flow as negative; direction is `charging`
    return abs(channel.current_ma) * channel.bus_mv / 1e6


def hwmon_sample(
    source_id: str,
    channels: list[ChannelValues],
    ts: float,
    total_label: str | None = None,
    charge_sign: Literal["positive", "negative"] | None = None,
) -> PowerSample:
    """One sample from a chip's channels: the total channel when there is one, else the sum of the channels."""
    rails = {c.label: channel_power_w(c) for c in channels}
    total = next((c for c in channels if c.label == total_label), None)
    if total is None and len(channels) == 1:
        total = channels[0]
    if total is not None:
        power_w, voltage_v, current_a = rails[total.label], total.bus_mv / 1e3, abs(total.current_ma) / 1e3
        note = None if len(channels) == 1 else f"{total.label} is the board input; other channels are sub-rails"
    else:
        power_w, voltage_v, current_a = sum(rails.values()), None, None
        note = "sum of this sensor's channels: rails it does not monitor are not counted"
    charging = None
    if charge_sign is not None and total is not None and total.current_ma != 0:
        charging = (total.current_ma > 0) == (charge_sign == "positive")
    return PowerSample(
        ts=ts,
        source=source_id,
        quality="measured",
        power_w=power_w,
        voltage_v=voltage_v,
        current_a=current_a,
        charging=charging,
        rails=rails if len(channels) > 1 else {},
        note=note,
    )


@dataclass(frozen=True)
class _Channel:
    index: int
    label: str
    has_power: bool  # seen at open: a power file that vanishes later is an error, not a silent V×I


class HwmonConfig(PowerSourceConfig):
    type: Literal["hwmon"]
    chip: InaChip = Field(description="the hwmon `name`, e.g. ina219")
    device: str | None = Field(None, description="I2C device when there are several, e.g. '1-0040'")
    total_channel: str | None = Field(
        None, description="label of the channel that carries the whole board; default: VDD_IN or VIN, else the sum"
    )
    charge_sign: Literal["positive", "negative"] | None = Field(
        None, description="sign of the current while the battery charges (sensor on a UPS battery); null: unknown"
    )

    rank: ClassVar[int] = 10

    @property
    def source_id(self) -> str:
        return f"hwmon:{self.chip}" + (f"@{self.device}" if self.device else "")

    def open(self, ctx: SourceContext) -> PowerSource:
        return HwmonSource(self, ctx)

    @classmethod
    def detect(cls, ctx: SourceContext) -> Detection:
        root = ctx.sys_path("class", "hwmon")
        if not root.is_dir():
            return Detection(absent=f"no {root}")
        chips = [(path, _chip_name(path, ctx)) for path in sorted(root.iterdir())]
        found: list[PowerSourceConfig] = [
            cls.model_validate({"type": "hwmon", "chip": name, "device": _i2c_device(path)})
            for path, name in chips
            if name in INA_CHIPS
        ]
        if not found:
            names = ", ".join(sorted({n for _, n in chips if n})) or "none"
            return Detection(absent=f"no INA2xx/INA3221 sensor among {len(chips)} hwmon chips (names: {names})")
        return Detection(found=found)


def _chip_name(path: Path, ctx: SourceContext) -> str:
    try:
        return ctx.read_text(path / "name").strip()
    except OSError:
        return ""


def _i2c_device(hwmon_dir: Path) -> str | None:
    """'1-0040' for .../i2c-1/1-0040/hwmon/hwmon2 (the stable name of the sensor on its bus)."""
    if (hwmon_dir / "device").exists():
        return Path(os.path.realpath(hwmon_dir / "device")).name
    real = Path(os.path.realpath(hwmon_dir))
    return real.parent.parent.name if real.parent.name == "hwmon" else None


class HwmonSource(PowerSource):
    def __init__(self, config: HwmonConfig, ctx: SourceContext) -> None:
        super().__init__(config.source_id)
        self.config = config
        self.clock = ctx.clock
        self.device = SysfsDevice(self._find(ctx), ctx, self.id)
        self.channels = self._channels()
        if not self.channels:
            raise PowerSourceError(self.id, f"{self.device.directory}: no enabled channel with curr*_input")
        labels = [channel.label for channel in self.channels]
        self.total_label = config.total_channel or next((t for t in TOTAL_LABELS if t in labels), None)
        if config.total_channel and config.total_channel not in labels:
            raise PowerSourceError(self.id, f"no channel labelled {config.total_channel!r} (have: {labels})")
        self.read()

    def _find(self, ctx: SourceContext) -> Path:
        root = ctx.sys_path("class", "hwmon")
        candidates = sorted(root.iterdir()) if root.is_dir() else []
        for path in candidates:
            if _chip_name(path, ctx) == self.config.chip and self.config.device in (None, _i2c_device(path)):
                return path
        raise PowerSourceError(self.id, f"no hwmon chip {self.config.chip} under {root}")

    def _channels(self) -> list[_Channel]:
        """Every enabled channel; the ina3221 sum channel (curr4) has no bus voltage of its own."""
        channels = []
        currents = (_CURRENT_FILE.match(p.name) for p in self.device.directory.iterdir())
        for index in sorted(int(m.group(1)) for m in currents if m):
            if not self.device.has(f"in{index}_input") or (self.config.chip == "ina3221" and index > 3):
                continue
            if self.device.has(f"in{index}_enable") and self.device.text(f"in{index}_enable") == "0":
                continue
            label = self.device.optional_text(f"in{index}_label") or self.device.optional_text(f"curr{index}_label")
            has_power = self.device.has(f"power{index}_input")
            channels.append(_Channel(index, label or f"{self.config.chip}.{index}", has_power))
        return channels

    def read(self) -> PowerSample:
        if not self.device.directory.is_dir():
            raise PowerSourceError(self.id, f"{self.device.directory} vanished (sensor unbound or unplugged)")
        values = [self._read_channel(channel) for channel in self.channels]
        return hwmon_sample(self.id, values, self.clock(), self.total_label, self.config.charge_sign)

    def _read_channel(self, channel: _Channel) -> ChannelValues:
        i = channel.index
        return ChannelValues(
            label=channel.label,
            bus_mv=self.device.integer(f"in{i}_input", "mV"),
            current_ma=self.device.integer(f"curr{i}_input", "mA"),
            power_uw=self.device.integer(f"power{i}_input", "µW") if channel.has_power else None,
        )
