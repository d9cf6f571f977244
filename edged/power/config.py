"""The `power` section of the config: how often to sample, from which sources, and how energy is attributed."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from edged.power.sources import AnyPowerSourceConfig


class MeterConfig(BaseModel):
    """How the energy meter turns power readings into energy per inference."""

    model_config = ConfigDict(extra="forbid")

    horizon_s: float = Field(60.0, gt=0, description="energy per inference averages over this much recent time")
    resolved_duty: float = Field(
        0.9,
        gt=0,
        le=1,
        description="a sampling interval that inference fills at least this much is read as inference power "
        "directly (measured); below it the idle share must be estimated",
    )


class PowerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample_hz: float = Field(2.0, gt=0, le=1000)
    sources: list[AnyPowerSourceConfig] = Field(
        default_factory=list,
        description="power and battery sources, best first; empty: auto-detect",
    )
    retry_s: float = Field(5.0, gt=0, description="how often an unreadable source is tried again")
    meter: MeterConfig = Field(default_factory=MeterConfig)
