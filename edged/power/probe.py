"""`edged power probe`: every source this device has, a reading from each, and why the others cannot be read."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from edged.power.sample import PowerSample
from edged.power.sources import (
    SOURCE_TYPES,
    PowerSource,
    PowerSourceConfig,
    PowerSourceError,
    SourceContext,
)

# Counter sources (RAPL) need two reads some time apart to give power; this is the time between them.
SETTLE_S = 0.25


class ProbedSource(BaseModel):
    type: str
    source: str | None = Field(description="the `source` its samples carry; None when nothing was found")
    status: Literal["ok", "unreadable", "absent"]
    sample: PowerSample | None = None
    reason: str | None = Field(None, description="why it is absent or cannot be read")
    remedy: str | None = None
    config: dict[str, Any] | None = Field(None, description="the `power.sources` entry that selects it")


class ProbeReport(BaseModel):
    sysfs_root: str
    configured: bool = Field(description="true: the sources came from a config file, not auto-detection")
    sources: list[ProbedSource]
    power_source: str | None = Field(description="where the sampler would take power from")
    battery_source: str | None = Field(description="where the sampler would take the battery state from")


def probe(ctx: SourceContext, configs: Sequence[PowerSourceConfig] | None = None) -> ProbeReport:
    """Open and read `configs`, or every auto-detected source (and say why each missing type is missing)."""
    entries: list[ProbedSource] = []
    opened: list[tuple[ProbedSource, PowerSource]] = []
    for config in _candidates(ctx, configs, entries):
        entry = ProbedSource(type=config.type, source=config.source_id, status="ok", config=_entry(config))
        entries.append(entry)
        try:
            opened.append((entry, config.open(ctx)))
        except PowerSourceError as exc:
            entry.status, entry.reason, entry.remedy = "unreadable", exc.reason, exc.remedy
    if opened:
        time.sleep(SETTLE_S)
    for entry, source in opened:
        try:
            entry.sample = source.read()
        except PowerSourceError as exc:
            entry.status, entry.reason, entry.remedy = "unreadable", exc.reason, exc.remedy
        finally:
            source.close()
    entries.sort(key=lambda e: _order(e, configs))
    readable = [e.sample for e in entries if e.sample is not None]
    return ProbeReport(
        sysfs_root=str(ctx.sysfs_root),
        configured=bool(configs),
        sources=entries,
        power_source=next((s.source for s in readable if s.has_power), None),
        battery_source=next((s.source for s in readable if s.has_battery), None),
    )


def _candidates(
    ctx: SourceContext, configs: Sequence[PowerSourceConfig] | None, entries: list[ProbedSource]
) -> list[PowerSourceConfig]:
    if configs:
        return list(configs)
    found: list[PowerSourceConfig] = []
    for name, config_type in SOURCE_TYPES.items():
        detection = config_type.detect(ctx)
        found.extend(detection.found)
        if not detection.found:
            entries.append(ProbedSource(type=name, source=None, status="absent", reason=detection.absent))
    return found


def _order(entry: ProbedSource, configs: Sequence[PowerSourceConfig] | None) -> int:
    if configs:
        return 0  # sort is stable: the configured order
    return SOURCE_TYPES[entry.type].rank


def _entry(config: PowerSourceConfig) -> dict[str, Any]:
    """The config entry, defaults left out, as a user would write it."""
    return config.model_dump(mode="json", exclude_defaults=True) | {"type": config.type}


# --- text --------------------------------------------------------------------------------------------------------


def render_probe(report: ProbeReport) -> str:
    lines = [
        f"power sources ({'as configured' if report.configured else 'auto-detected'}, sysfs at {report.sysfs_root}):"
    ]
    width = max([len(e.source or e.type) for e in report.sources] + [12])
    for entry in report.sources:
        name = (entry.source or entry.type).ljust(width)
        if entry.sample is not None:
            lines.append(f"  {name}  ok           {describe_sample(entry.sample)}")
            if entry.sample.rails:
                rails = ", ".join(f"{k} {v:.3f} W" for k, v in entry.sample.rails.items())
                lines.append(f"  {'':{width}}               rails: {rails}")
            if entry.sample.note:
                lines.append(f"  {'':{width}}               note: {entry.sample.note}")
        else:
            lines.append(f"  {name}  {entry.status:<11}  {entry.reason}")
            if entry.remedy:
                lines.append(f"  {'':{width}}               fix: {entry.remedy}")
    lines.append(f"power reading from:   {report.power_source or 'none (energy per inference: zoo profiles only)'}")
    lines.append(f"battery reading from: {report.battery_source or 'none'}")
    return "\n".join(lines)


def describe_sample(sample: PowerSample) -> str:
    parts = []
    if sample.power_w is not None:
        parts.append(f"{sample.power_w:.3f} W")
    if sample.voltage_v is not None:
        parts.append(f"{sample.voltage_v:.3f} V")
    if sample.current_a is not None:
        parts.append(f"{sample.current_a:.3f} A")
    if sample.energy_j is not None:
        parts.append(f"counter {sample.energy_j:.3f} J")
    if sample.battery_pct is not None:
        wh = f" ({sample.battery_wh:.2f} Wh)" if sample.battery_wh is not None else ""
        parts.append(f"battery {sample.battery_pct:.1f}%{wh}")
    if sample.charging is not None:
        parts.append("charging" if sample.charging else "not charging")
    if sample.time_remaining_s is not None:
        parts.append(f"{sample.time_remaining_s / 60:.0f} min left")
    return ", ".join(parts or ["no values"]) + f" [{sample.quality}]"
