"""Energy of a block of work from a source's counter, idle subtracted: what `zoo profile` records when it can."""

from __future__ import annotations

import pytest

from edged.power import SimulatedBatteryConfig, SourceContext
from edged.power.window_meter import WindowEnergyMeter, measured_source


def test_counter_energy_above_idle_is_attributed_to_the_work():
    battery = SimulatedBatteryConfig(type="simulated", capacity_wh=10, idle_w=2.0).open(SourceContext())
    meter = WindowEnergyMeter(battery)

    def ten_inferences() -> None:
        for _ in range(10):
            battery.record_inference(100.0)  # 100 mJ each: 1 J above idle in all

    window = meter.measure(ten_inferences)
    assert window.joules == pytest.approx(1.0, abs=0.02)  # idle (2 W x the window) subtracted
    assert window.quality == "simulated", "a simulated source never yields a 'measured' figure"
    assert "minus idle power" in window.method


def test_no_power_hardware_means_no_measured_source(tmp_path):
    """An empty sysfs (as on this VM: no RAPL, hwmon or battery): profile falls back to the labelled estimate."""
    assert measured_source(SourceContext(sysfs_root=tmp_path, listen_s=0)) is None
