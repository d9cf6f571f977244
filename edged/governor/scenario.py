"""Scenario files for `edged governor simulate`: a device, a battery, a mission and what happens during it.

A scenario says where each figure comes from: inline variant figures carry a `source`, energy figures their
quality (measured / estimated), and `assumptions` lists what the device figures assume. Every output of the
simulator repeats them, and labels its own figures simulated.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edged.errors import ConfigError, EdgedError
from edged.governor.config import GovernorConfig
from edged.governor.profiles import VariantProfile, profiles_from_variants
from edged.yamlfile import YamlDocument, load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScenarioVariant(VariantProfile):
    """A variant's figures written into the scenario, with where they come from."""

    source: str | None = Field(None, description="where these figures come from")


class ScenarioZoo(_Strict):
    """Either a zoo manifest and the device class whose profiles to use, or inline variant figures."""

    manifest: Path | None = Field(None, description="zoo directory or zoo.yaml, relative to the scenario file")
    device_class: str | None = Field(None, description="profile key in the manifest")
    variants: list[ScenarioVariant] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> ScenarioZoo:
        if (self.manifest is None) == (self.variants is None):
            raise ValueError("give either manifest (with device_class) or variants")
        if self.manifest is not None and not self.device_class:
            raise ValueError("manifest needs device_class: the profile key to read")
        if self.variants is not None:
            ids = [v.id for v in self.variants]
            twice = sorted({i for i in ids if ids.count(i) > 1})
            if twice:
                raise ValueError(f"variant ids used twice: {', '.join(twice)}")
        return self


class DeviceSpec(_Strict):
    name: str = Field(min_length=1, description="the device the figures describe (or are scaled to)")
    idle_w: float = Field(ge=0, description="device power with the camera on and no inference")
    frame_overhead_mj: float = Field(
        0.0, ge=0, description="the pipeline's own energy per processed frame (decode, message, outbox, publish)"
    )


class BatterySpec(_Strict):
    capacity_wh: float = Field(gt=0)
    start_pct: float = Field(gt=0, le=100)
    cutoff_pct: float = Field(0.0, ge=0, lt=100, description="at or below this level the mission has failed")
    gauge_resolution_pct: float = Field(0.1, ge=0, le=10, description="the fuel gauge reports in these steps")

    @model_validator(mode="after")
    def _starts_above_cutoff(self) -> BatterySpec:
        if self.start_pct <= self.cutoff_pct:
            raise ValueError(f"start_pct ({self.start_pct}) must be above cutoff_pct ({self.cutoff_pct})")
        return self


class PowerMeterSpec(_Strict):
    bias: float = Field(0.0, ge=-0.5, le=1.0, description="relative error of every reading: 0.1 reads 10% high")
    noise_w: float = Field(0.0, ge=0, description="std of one reading's random error, in watts")


class FloorEvent(_Strict):
    """An accuracy-floor command during the mission (as MQTT `set/accuracy_floor` would send it)."""

    at_min: float = Field(ge=0)
    floor: float | None = Field(ge=0, le=1, description="null: back to the configured floor")
    for_min: float | None = Field(None, gt=0, description="the command expires after this long")


class Slowdown(_Strict):
    """A period when the device runs slower (thermal throttling): latency and energy per inference scale."""

    from_min: float = Field(ge=0)
    to_min: float = Field(gt=0)
    latency: float = Field(1.0, gt=0, description="latency multiplier")
    energy: float = Field(1.0, gt=0, description="energy-per-inference multiplier")

    @model_validator(mode="after")
    def _ordered(self) -> Slowdown:
        if self.to_min <= self.from_min:
            raise ValueError(f"to_min ({self.to_min}) must be after from_min ({self.from_min})")
        return self


class HarvestPeriod(_Strict):
    """Power flowing into the battery (a solar panel) during a period."""

    from_min: float = Field(ge=0)
    to_min: float = Field(gt=0)
    watts: float = Field(ge=0)


class LoadEvent(_Strict):
    """Extra draw that does not depend on the variant (a gimbal, a radio, a heater, gusts on the motors' rail):
    the device's power rises by it whatever runs, and the governor is not told; it sees it in the meter."""

    from_min: float = Field(ge=0)
    to_min: float = Field(gt=0)
    watts: float = Field(ge=0, description="step: the draw; ramp: the draw reached at to_min; bursts: each burst's")
    shape: Literal["step", "ramp", "bursts"] = Field("step", description="constant, rising linearly from 0, or on/off")
    period_s: float = Field(60.0, gt=0, description="bursts: one burst starts every period_s")
    duty: float = Field(0.3, gt=0, le=1, description="bursts: share of each period the burst lasts")
    noise_w: float = Field(0.0, ge=0, description="std of the draw's step-to-step variation while on, in watts")

    @model_validator(mode="after")
    def _ordered(self) -> LoadEvent:
        if self.to_min <= self.from_min:
            raise ValueError(f"to_min ({self.to_min}) must be after from_min ({self.from_min})")
        return self

    def watts_at(self, t_s: float) -> float:
        """The draw at `t_s` before noise (0 outside the event)."""
        start, end = self.from_min * 60.0, self.to_min * 60.0
        if not start <= t_s < end:
            return 0.0
        if self.shape == "ramp":
            return self.watts * (t_s - start) / (end - start)
        if self.shape == "bursts":
            return self.watts if (t_s - start) % self.period_s < self.duty * self.period_s else 0.0
        return self.watts


class SimulationSpec(_Strict):
    step_s: float = Field(1.0, gt=0, le=600, description="simulation (and governor tick) step")
    oracle_step_s: float = Field(30.0, gt=0, description="the oracle decides once per this period")
    energy_grid: int = Field(400, ge=50, le=5000, description="energy levels in the oracle's dynamic program")
    oracle_fps_levels: int = Field(4, ge=1, le=10, description="fps levels the oracle may choose from")
    seed: int = Field(0, description="seed of the meter and latency noise")
    latency_jitter: float = Field(0.05, ge=0, le=1, description="relative std of a latency reading")

    @model_validator(mode="after")
    def _whole_steps(self) -> SimulationSpec:
        if self.oracle_step_s < self.step_s:
            raise ValueError(f"oracle_step_s ({self.oracle_step_s}) must be at least step_s ({self.step_s})")
        return self


class Scenario(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    assumptions: list[str] = Field(default_factory=list, description="what the figures assume; printed with them")
    mission_min: float = Field(gt=0, description="how long the mission lasts; the battery must hold out")
    start_time: dt.time | None = Field(None, description="wall-clock time at the start ('18:00'), for mission_end")
    device: DeviceSpec
    battery: BatterySpec
    power_meter: PowerMeterSpec = Field(default_factory=PowerMeterSpec)
    floors: list[FloorEvent] = Field(default_factory=list)
    slowdowns: list[Slowdown] = Field(default_factory=list)
    harvest: list[HarvestPeriod] = Field(default_factory=list)
    loads: list[LoadEvent] = Field(default_factory=list, description="extra draw, whatever variant runs")
    zoo: ScenarioZoo
    governor: GovernorConfig = Field(description="the policy under test; fps and SLO apply to every policy")
    simulation: SimulationSpec = Field(default_factory=SimulationSpec)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        late = [f"floors at {e.at_min:g} min" for e in self.floors if e.at_min >= self.mission_min]
        late += [f"slowdown from {s.from_min:g} min" for s in self.slowdowns if s.from_min >= self.mission_min]
        late += [f"harvest from {h.from_min:g} min" for h in self.harvest if h.from_min >= self.mission_min]
        late += [f"load from {x.from_min:g} min" for x in self.loads if x.from_min >= self.mission_min]
        if late:
            raise ValueError(f"after the mission ends ({self.mission_min:g} min): {', '.join(late)}")
        if self.governor.mission_end is not None and self.start_time is None:
            raise ValueError("governor.mission_end needs start_time (the wall-clock time the mission starts)")
        if self.zoo.variants is not None and self.governor.pinned_variant is not None:
            ids = [v.id for v in self.zoo.variants]
            if self.governor.pinned_variant not in ids:
                raise ValueError(f"governor.pinned_variant '{self.governor.pinned_variant}' is not among {ids}")
        return self


@dataclass(frozen=True)
class LoadedScenario:
    scenario: Scenario
    variants: list[VariantProfile]
    path: Path
    figures: list[str]  # where the variant figures come from, one line per variant


def load_scenario(path: str | Path) -> LoadedScenario:
    """Read, validate and resolve a scenario; errors name the file, the field and the line."""
    path = Path(path)
    document = load_yaml(path)
    scenario = document.validate(Scenario)
    variants, figures = _variants(scenario, path, document)
    return LoadedScenario(scenario, variants, path, figures)


def _variants(scenario: Scenario, path: Path, document: YamlDocument) -> tuple[list[VariantProfile], list[str]]:
    zoo = scenario.zoo
    if zoo.variants is not None:
        figures = [f"{v.id} [energy {v.energy_quality}]: {v.source or 'source not stated'}" for v in zoo.variants]
        return list(zoo.variants), figures
    assert zoo.manifest is not None and zoo.device_class is not None
    from edged.zoo.manifest import load_zoo  # the zoo pulls in the vision stack: only when a scenario names one

    manifest = zoo.manifest if zoo.manifest.is_absolute() else path.resolve().parent / zoo.manifest
    try:
        loaded = load_zoo(manifest, verify_files=False)
        profiles = profiles_from_variants(loaded.variants, zoo.device_class)
    except ConfigError as exc:
        raise ConfigError([f"{path}: zoo.manifest: {problem}" for problem in exc.problems]) from None
    except EdgedError as exc:
        line = document.line_of(("zoo", "device_class"))
        raise ConfigError([f"{path}:{line}: zoo.device_class: {exc}"]) from None
    figures = [f"{p.id} [energy {p.energy_quality}]: profile '{zoo.device_class}' of {manifest}" for p in profiles]
    return profiles, figures
