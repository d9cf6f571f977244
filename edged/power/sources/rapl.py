"""Intel RAPL through powercap (/sys/class/powercap/intel-rapl:*; AMD Zen uses the same interface).

Each zone has an energy counter, energy_uj, that wraps at max_energy_range_uj. Power is the counter's delta over
the time between reads; the delta is only trusted as a wrap when the counter passed the top, anything else that
goes backwards is reported and the counter re-based. Since the CVE-2020-8694 fix energy_uj is root-only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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

PERMISSION_REMEDY = (
    "since the CVE-2020-8694 fix energy_uj is readable by root only: run edged as root, or let its group read the "
    "counters with a udev rule, e.g. /etc/udev/rules.d/70-edged-rapl.rules: "
    'SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chgrp edged /sys%p/energy_uj", '
    'RUN+="/bin/chmod g+r /sys%p/energy_uj" (then: udevadm trigger --subsystem-match=powercap)'
)
_TOP_ZONE = re.compile(r"^intel-rapl:(\d+)$")
_SUB_ZONE = re.compile(r"^intel-rapl:(\d+):(\d+)$")


class CounterWentBackwards(ValueError):
    """An energy counter that decreased without passing the top of its range: a reset, not a wrap."""


def counter_delta(previous: int, current: int, max_range: int) -> int:
    """µJ spent between two readings of a counter that wraps to 0 after `max_range`.

    A decrease is a wrap only if the counter must have passed the top: the wrapped delta is then less than half
    the range (at the sampling rates we use, a real delta is many orders of magnitude smaller than the range).
    """
    if current >= previous:
        return current - previous
    wrapped = max_range - previous + current
    if 0 <= wrapped < max_range // 2:
        return wrapped
    raise CounterWentBackwards(
        f"went backwards from {previous} to {current} µJ, which is not a wrap at max_energy_range_uj={max_range}"
    )


@dataclass
class _Zone:
    label: str  # 'package-0', 'package-0/core', 'psys'
    device: SysfsDevice
    max_range: int
    last: int
    top_level: bool


class RaplConfig(PowerSourceConfig):
    type: Literal["rapl"]
    zones: list[str] | None = Field(
        None,
        description="top-level zone names to add up, e.g. [package-0]; default: psys when the platform has it "
        "(the whole SoC platform), else every package",
    )

    rank: ClassVar[int] = 30

    @property
    def source_id(self) -> str:
        return "rapl" if not self.zones else "rapl:" + "+".join(self.zones)

    def open(self, ctx: SourceContext) -> PowerSource:
        return RaplSource(self, ctx)

    @classmethod
    def detect(cls, ctx: SourceContext) -> Detection:
        root = ctx.sys_path("class", "powercap")
        if not root.is_dir():
            return Detection(
                absent=f"no {root}: no RAPL here (not an Intel/AMD x86 CPU, a VM that hides it, "
                "or the intel_rapl_common module is not loaded)"
            )
        if not any(_TOP_ZONE.match(p.name) for p in root.iterdir()):
            return Detection(absent=f"no intel-rapl:N zones under {root}")
        return Detection(found=[cls(type="rapl")])


class RaplSource(PowerSource):
    def __init__(self, config: RaplConfig, ctx: SourceContext) -> None:
        super().__init__(config.source_id)
        self.clock = ctx.clock
        self.zones = _open_zones(ctx, self.id)
        names = {z.label for z in self.zones if z.top_level}
        if config.zones:
            missing = sorted(set(config.zones) - names)
            if missing:
                raise PowerSourceError(self.id, f"no RAPL zone named {', '.join(missing)} (have: {sorted(names)})")
            self.counted = set(config.zones)
        else:
            self.counted = {"psys"} if "psys" in names else {n for n in names if n.startswith("package")}
        if not self.counted:
            raise PowerSourceError(self.id, f"no package or psys zone to count (have: {sorted(names)})")
        self.note = (
            "RAPL psys: the SoC platform, not peripherals or display"
            if self.counted == {"psys"}
            else f"RAPL {'+'.join(sorted(self.counted))}: CPU package only, not DRAM or the rest of the machine"
        )
        self.energy_uj = 0
        self.last_ts = self.clock()

    def read(self) -> PowerSample:
        ts = self.clock()
        raws = [zone.device.integer("energy_uj", "µJ") for zone in self.zones]
        deltas = []
        for zone, raw in zip(self.zones, raws):
            try:
                deltas.append(counter_delta(zone.last, raw, zone.max_range))
            except CounterWentBackwards as exc:
                self._rebase(raws, ts)
                where = f"{zone.device.directory.name} ({zone.label})"
                raise PowerSourceError(self.id, f"{where}: energy_uj {exc}; counter re-based") from None
        dt = ts - self.last_ts
        self._rebase(raws, ts)
        counted_uj = sum(d for z, d in zip(self.zones, deltas) if z.top_level and z.label in self.counted)
        self.energy_uj += counted_uj
        rails = {z.label: d / 1e6 / dt for z, d in zip(self.zones, deltas)} if dt > 0 else {}
        return PowerSample(
            ts=ts,
            source=self.id,
            quality="measured",
            power_w=counted_uj / 1e6 / dt if dt > 0 else None,
            energy_j=self.energy_uj / 1e6,
            rails=rails,
            note=self.note,
        )

    def _rebase(self, raws: list[int], ts: float) -> None:
        for zone, raw in zip(self.zones, raws):
            zone.last = raw
        self.last_ts = ts


def _open_zones(ctx: SourceContext, source_id: str) -> list[_Zone]:
    root = ctx.sys_path("class", "powercap")
    if not root.is_dir():
        raise PowerSourceError(source_id, f"no {root}")
    entries = sorted(root.iterdir(), key=lambda p: [int(n) for n in re.findall(r"\d+", p.name)])
    top_names: dict[str, str] = {}
    zones = []
    for path in entries:
        top, sub = _TOP_ZONE.match(path.name), _SUB_ZONE.match(path.name)
        if not (top or sub):
            continue
        device = SysfsDevice(path, ctx, source_id, PERMISSION_REMEDY)
        name = device.text("name")
        if top:
            top_names[top.group(1)] = name
            label = name
        else:
            assert sub is not None
            label = f"{top_names.get(sub.group(1), 'zone' + sub.group(1))}/{name}"
        max_range = device.integer("max_energy_range_uj", "µJ")
        zones.append(_Zone(label, device, max_range, device.integer("energy_uj", "µJ"), top_level=bool(top)))
    if not zones:
        raise PowerSourceError(source_id, f"no intel-rapl:N zones under {root}")
    return zones
