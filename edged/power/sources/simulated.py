"""A simulated battery for demos and tests: a device power model draining a battery of known capacity.

Power = idle power + the energy of the inferences recorded since the last read, plus optional Gaussian noise on
the power reading (the energy counter stays exact). Every sample says `simulated`.
"""

from __future__ import annotations

import random
import threading
from typing import ClassVar, Literal

from pydantic import Field

from edged.power.sample import PowerSample
from edged.power.sources.base import Detection, PowerSource, PowerSourceConfig, SourceContext


class SimulatedBatteryConfig(PowerSourceConfig):
    type: Literal["simulated"]
    capacity_wh: float = Field(20.0, gt=0)
    start_pct: float = Field(100.0, ge=0, le=100)
    idle_w: float = Field(2.0, ge=0, description="the device's power when not inferring")
    inference_mj: float = Field(
        50.0, ge=0, description="energy per inference when the caller does not pass the active variant's profile"
    )
    noise_w: float = Field(0.0, ge=0, description="standard deviation of noise added to the power reading")
    seed: int | None = Field(0, description="noise seed (null: a different run each time)")

    rank: ClassVar[int] = 90
    auto_detect: ClassVar[bool] = False

    @property
    def source_id(self) -> str:
        return "simulated"

    def open(self, ctx: SourceContext) -> PowerSource:
        return SimulatedBattery(self, ctx)

    @classmethod
    def detect(cls, ctx: SourceContext) -> Detection:
        return Detection(absent="never auto-detected: configure `type: simulated` for demos and tests")


class SimulatedBattery(PowerSource):
    """The inference worker calls `record_inference`; the sampler calls `read`. A lock keeps them apart."""

    def __init__(self, config: SimulatedBatteryConfig, ctx: SourceContext) -> None:
        super().__init__(config.source_id)
        self.config = config
        self.clock = ctx.clock
        self.random = random.Random(config.seed)
        self.lock = threading.Lock()
        self.consumed_j = 0.0
        self.pending_inference_j = 0.0
        self.last_ts = self.clock()

    def record_inference(self, energy_mj: float | None = None) -> None:
        """One inference happened; `energy_mj` is the active variant's profile figure (default: the config's)."""
        with self.lock:
            self.pending_inference_j += (self.config.inference_mj if energy_mj is None else energy_mj) / 1e3

    def read(self) -> PowerSample:
        ts = self.clock()
        with self.lock:
            dt = max(0.0, ts - self.last_ts)
            spent_j = self.config.idle_w * dt + self.pending_inference_j
            self.consumed_j += spent_j
            self.pending_inference_j = 0.0
            self.last_ts = ts
        power_w = spent_j / dt if dt > 0 else self.config.idle_w
        if self.config.noise_w:
            power_w = max(0.0, power_w + self.random.gauss(0.0, self.config.noise_w))
        start_wh = self.config.capacity_wh * self.config.start_pct / 100
        left_wh = max(0.0, start_wh - self.consumed_j / 3600)
        return PowerSample(
            ts=ts,
            source=self.id,
            quality="simulated",
            power_w=power_w,
            energy_j=self.consumed_j,
            battery_pct=100 * left_wh / self.config.capacity_wh,
            battery_wh=left_wh,
            charging=False,
            time_remaining_s=left_wh * 3600 / power_w if power_w > 0 else None,
            note=f"simulated battery: {self.config.capacity_wh:g} Wh, idle {self.config.idle_w:g} W",
        )
