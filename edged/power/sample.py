"""What every power source yields: one PowerSample per reading, honest about how it was obtained."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# measured: read from a sensor or gauge. estimated: derived under a stated assumption. simulated: a model, not a device.
Quality = Literal["measured", "estimated", "simulated"]


class PowerSample(BaseModel):
    """One reading of one source. Fields a source cannot see stay None; `note` says what the source leaves out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ts: float = Field(description="when it was read, Unix seconds")
    source: str = Field(description="which source, e.g. 'power_supply:BAT0', 'rapl', 'hwmon:ina3221@1-0040'")
    quality: Quality
    power_w: float | None = Field(None, description="power drawn now (always >= 0; see `charging` for direction)")
    voltage_v: float | None = None
    current_a: float | None = Field(None, description="magnitude of the current (always >= 0)")
    energy_j: float | None = Field(
        None,
        description="energy counter that only grows; only differences between samples of one source mean anything",
    )
    battery_pct: float | None = Field(None, description="state of charge, 0..100")
    battery_wh: float | None = Field(None, description="energy left in the battery")
    charging: bool | None = None
    time_remaining_s: float | None = Field(None, description="the source's own estimate of time left, when it has one")
    rails: dict[str, float] = Field(default_factory=dict, description="power per rail or sub-domain, W")
    note: str | None = Field(None, description="what this reading covers and what it cannot see")

    @property
    def has_power(self) -> bool:
        """True when this sample can tell how much energy is being spent."""
        return self.power_w is not None or self.energy_j is not None

    @property
    def has_battery(self) -> bool:
        """True when this sample can tell how much battery is left."""
        return self.battery_pct is not None or self.battery_wh is not None
