"""The governor's policy, as it appears in the `governor` section of the config.

Defaults live here and only here; the decision code reads every threshold from this model.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GovernorMode = Literal["auto", "pinned", "eco", "performance"]
Relaxation = Literal["fps", "budget", "floor"]

DEFAULT_DEGRADATION: list[Relaxation] = ["fps", "budget", "floor"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatteryBand(_Strict):
    """Below `below_pct` of battery, limit power: a fixed budget, or whatever makes the battery last `runtime_h`."""

    below_pct: float = Field(gt=0, le=100, description="the band applies at or below this battery level")
    budget_w: float | None = Field(None, ge=0, description="fixed power budget in this band")
    runtime_h: float | None = Field(None, gt=0, description="budget = energy above the reserve / this many hours")

    @model_validator(mode="after")
    def _one_limit(self) -> BatteryBand:
        if (self.budget_w is None) == (self.runtime_h is None):
            raise ValueError("a battery band sets exactly one of budget_w or runtime_h")
        return self


class CorrectionConfig(_Strict):
    """How much to trust measurements over the zoo's profile (the noise model of the Kalman filters)."""

    latency_noise: float = Field(0.1, gt=0, le=1, description="relative std of one latency reading")
    power_noise_w: float = Field(0.2, gt=0, description="std of one power reading, in watts")
    drift_per_min: float = Field(
        0.05, ge=0, description="how far (relative std) the true ratios may wander in a minute; higher = faster"
    )
    variant_learning_rate: float = Field(
        0.05, ge=0, le=1, description="how fast a variant's own deviation from the device-wide ratio is learnt"
    )
    energy_drift_per_min: float = Field(
        0.01,
        ge=0,
        description="how far (relative std) the device-wide energy-per-inference ratio may wander in a minute; kept "
        "slow, so that readings from one variant at one fps (which cannot tell the two apart) move base power",
    )
    variant_memory_s: float = Field(
        600.0,
        ge=0,
        description="time constant with which a variant's own deviation fades back to the device-wide ratio while "
        "it does not run; 0 keeps it for good",
    )
    load_drift_w_per_min: float = Field(
        0.3,
        ge=0,
        description="how far (std, watts) base power may move in a minute: extra draw that does not depend on the "
        "variant (gimbal, radio, heater, gusts); higher = followed faster",
    )
    load_horizon_s: float = Field(
        300.0,
        ge=0,
        description="decisions plan with base power averaged over this long: a shorter burst is paid from the "
        "energy reserve, not by switching; 0 plans with the latest estimate",
    )
    gauge_window_pct: float = Field(
        5.0, gt=0, le=50, description="battery drop (% of capacity) over which the meter is checked against the gauge"
    )
    gauge_smoothing_s: float = Field(
        300.0,
        ge=0,
        description="time constant pulling the energy estimate (meter-integrated) towards the fuel gauge; "
        "smooths a coarse gauge; 0 uses the gauge as it reads",
    )
    gauge_trust: float = Field(
        0.5, ge=0, le=1, description="weight of each meter-vs-gauge comparison; 0 never rescales the meter"
    )


class GovernorConfig(_Strict):
    mode: GovernorMode = Field(
        "auto",
        description="auto: most accurate affordable; pinned: `pinned_variant` always; eco: cheapest meeting the "
        "floor; performance: most accurate meeting the latency SLO, power ignored",
    )
    pinned_variant: str | None = Field(None, description="the variant `pinned` mode runs")
    accuracy_floor: float = Field(0.0, ge=0.0, le=1.0, description="minimum mAP50-95 the variant must have")
    latency_slo_ms: float = Field(250.0, gt=0, description="p95 latency the variant must keep")
    fps_target: float = Field(5.0, gt=0)
    fps_min: float = Field(1.0, gt=0)
    reserve_wh: float = Field(0.0, ge=0, description="battery energy never to spend")
    reserve_pct: float = Field(0.0, ge=0, le=100, description="the same, as a share of capacity (larger one wins)")
    mission_minutes: float | None = Field(None, gt=0, description="known mission length; enables budgeting")
    mission_end: dt.time | dt.datetime | None = Field(
        None, description="known mission end, a time of day ('07:00') or a date-time; enables budgeting"
    )
    idle_power_w: float | None = Field(
        None, ge=0, description="device power with no inference; null: learnt from the power readings"
    )
    battery_bands: list[BatteryBand] = Field(
        default_factory=list, description="power limits by battery level, used when no mission end is known"
    )
    band_hysteresis_pct: float = Field(2.0, ge=0, le=50, description="battery rise needed to leave a band")
    min_dwell_s: float = Field(10.0, ge=0, description="minimum time between switches")
    switch_up_margin: float = Field(
        0.1,
        ge=0,
        le=1,
        description="headroom needed before switching to a costlier variant, as a share of the budget left for "
        "inference once idle power is paid",
    )
    energy_hysteresis_pct: float = Field(
        0.5,
        ge=0,
        le=10,
        description="with a mission end: energy (share of battery capacity, at most half the reserve) the running "
        "variant may fall behind the plan before the governor gives up accuracy or fps; a burst of extra draw is "
        "paid from it and made back in calm air. Needs a reserve",
    )
    degradation_order: list[Relaxation] = Field(
        default_factory=lambda: list(DEFAULT_DEGRADATION),
        description="what gives way, in order, when no variant meets every need: lower fps, exceed the power "
        "budget (cheapest variant meeting the floor), or drop below the accuracy floor",
    )
    correction: CorrectionConfig = Field(default_factory=CorrectionConfig)

    @field_validator("mission_end", mode="before")
    @classmethod
    def _not_a_number(cls, value: Any) -> Any:
        """YAML 1.1 reads an unquoted 18:00 as the number 1080 (base 60): refuse it rather than guess."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError("write the time in quotes, e.g. '18:00' (YAML reads unquoted 18:00 as a number)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> GovernorConfig:
        if self.fps_min > self.fps_target:
            raise ValueError(f"fps_min ({self.fps_min}) must not exceed fps_target ({self.fps_target})")
        if self.mode == "pinned" and not self.pinned_variant:
            raise ValueError("mode 'pinned' needs pinned_variant")
        if self.mission_minutes is not None and self.mission_end is not None:
            raise ValueError("set mission_minutes or mission_end, not both")
        if sorted(self.degradation_order) != sorted(DEFAULT_DEGRADATION):
            raise ValueError(f"degradation_order must list each of {DEFAULT_DEGRADATION} once")
        levels = [band.below_pct for band in self.battery_bands]
        if len(set(levels)) != len(levels):
            raise ValueError("two battery bands share the same below_pct")
        return self

    def bands_by_depth(self) -> list[BatteryBand]:
        """Bands from the mildest (highest below_pct) to the deepest."""
        return sorted(self.battery_bands, key=lambda band: -band.below_pct)


def mission_end_s(policy: GovernorConfig, start_s: float, start_wall: dt.datetime) -> float | None:
    """The mission end on the governor's clock (`start_s` is that clock's reading at wall time `start_wall`).

    The governor itself never reads a clock; the daemon calls this once at start, with both readings.
    A time of day already past today means tomorrow (a night mission that ends at 07:00).
    """
    if policy.mission_minutes is not None:
        return start_s + policy.mission_minutes * 60.0
    end = policy.mission_end
    if end is None:
        return None
    if isinstance(end, dt.datetime):
        if end.tzinfo is not None and start_wall.tzinfo is None:
            end = end.astimezone().replace(tzinfo=None)
        elif end.tzinfo is None and start_wall.tzinfo is not None:
            end = end.replace(tzinfo=start_wall.tzinfo)
        return start_s + (end - start_wall).total_seconds()
    end_today = dt.datetime.combine(start_wall.date(), end, tzinfo=start_wall.tzinfo)
    if end_today <= start_wall:
        end_today += dt.timedelta(days=1)
    return start_s + (end_today - start_wall).total_seconds()
