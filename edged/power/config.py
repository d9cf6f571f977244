"""The `power` section of the config: how often to sample, and from which sources."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PowerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample_hz: float = Field(2.0, gt=0, le=1000)
