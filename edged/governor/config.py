"""The governor's policy, as it appears in the `governor` section of the config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GovernorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["auto", "pinned", "eco", "performance"] = "auto"
    accuracy_floor: float = Field(0.0, ge=0.0, le=1.0, description="minimum mAP50-95 the variant must have")
    latency_slo_ms: float = Field(250.0, gt=0, description="p95 latency the variant must keep")
    fps_target: float = Field(5.0, gt=0)
    fps_min: float = Field(1.0, gt=0)
    reserve_wh: float = Field(0.0, ge=0, description="battery energy never to spend")
    mission_minutes: float | None = Field(None, gt=0, description="known mission length; enables budgeting")
    min_dwell_s: float = Field(10.0, ge=0, description="minimum time between switches")
    switch_up_margin: float = Field(
        0.1, ge=0, le=1, description="headroom needed before switching to a costlier variant"
    )

    @model_validator(mode="after")
    def _fps_order(self) -> GovernorConfig:
        if self.fps_min > self.fps_target:
            raise ValueError(f"fps_min ({self.fps_min}) must not exceed fps_target ({self.fps_target})")
        return self
