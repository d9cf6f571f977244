"""Power and battery sources -> a PowerSample stream; energy per inference.

What the daemon, the governor and the profiler use:

- `PowerSampler.from_config(config.power, on_reading=..., on_event=...)`, `.start()` / `.stop()`: a thread that
  reads every source at `sample_hz`; each tick a `PowerReading` (best power sample, best battery sample, all
  samples); a failing source becomes a `PowerEvent` and the next best takes over.
- `EnergyMeter`: `with meter.inference(variant_id): ...` around each inference, `meter.add_sample(reading.power)`
  each tick, `meter.energy_per_inference_mj()` -> `EnergyPerInference` (mJ, quality, source, idle power).
- `probe(SourceContext())` -> `ProbeReport`: what `edged power probe` prints.
- `SimulatedBattery.record_inference(mj)`: the demo battery drains by the active variant's profiled energy.
"""

from edged.power.config import MeterConfig, PowerConfig
from edged.power.meter import EnergyMeter, EnergyPerInference
from edged.power.probe import ProbedSource, ProbeReport, probe, render_probe
from edged.power.sample import PowerSample, Quality
from edged.power.sampler import PowerEvent, PowerReading, PowerSampler
from edged.power.sources import (
    SOURCE_TYPES,
    AnyPowerSourceConfig,
    PowerSource,
    PowerSourceConfig,
    PowerSourceError,
    SourceContext,
    detect_all,
    detected_configs,
)
from edged.power.sources.simulated import SimulatedBattery, SimulatedBatteryConfig

__all__ = [
    "SOURCE_TYPES",
    "AnyPowerSourceConfig",
    "EnergyMeter",
    "EnergyPerInference",
    "MeterConfig",
    "PowerConfig",
    "PowerEvent",
    "PowerReading",
    "PowerSample",
    "PowerSampler",
    "PowerSource",
    "PowerSourceConfig",
    "PowerSourceError",
    "ProbeReport",
    "ProbedSource",
    "Quality",
    "SimulatedBattery",
    "SimulatedBatteryConfig",
    "SourceContext",
    "detect_all",
    "detected_configs",
    "probe",
    "render_probe",
]
