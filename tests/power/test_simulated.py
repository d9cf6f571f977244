from __future__ import annotations

import pytest

from edged.power.sources import SourceContext
from edged.power.sources.simulated import SimulatedBattery, SimulatedBatteryConfig
from tests.power.sysfs import FakeClock


def open_battery(clock: FakeClock, **fields: object) -> SimulatedBattery:
    config = SimulatedBatteryConfig.model_validate({"type": "simulated", **fields})
    source = config.open(SourceContext(clock=clock))
    assert isinstance(source, SimulatedBattery)
    return source


def test_drains_by_idle_power_and_recorded_inferences(clock: FakeClock) -> None:
    battery = open_battery(clock, capacity_wh=10.0, start_pct=50.0, idle_w=2.0, inference_mj=100.0)
    clock.advance(10.0)
    for _ in range(30):
        battery.record_inference()  # the config's 100 mJ each
    battery.record_inference(400.0)  # the active variant's profile figure
    sample = battery.read()
    spent_j = 2.0 * 10.0 + 30 * 0.1 + 0.4
    assert sample.energy_j == pytest.approx(spent_j, abs=1e-12)
    assert sample.power_w == pytest.approx(spent_j / 10.0, abs=1e-12)
    assert sample.battery_wh == pytest.approx(5.0 - spent_j / 3600, abs=1e-12)
    assert sample.battery_pct == pytest.approx(100 * (5.0 - spent_j / 3600) / 10.0, abs=1e-12)
    assert sample.charging is False


def test_every_sample_says_simulated(clock: FakeClock) -> None:
    battery = open_battery(clock)
    clock.advance(1.0)
    sample = battery.read()
    assert sample.quality == "simulated"
    assert sample.source == "simulated"
    assert "simulated" in (sample.note or "")


def test_empty_battery_stays_at_zero(clock: FakeClock) -> None:
    battery = open_battery(clock, capacity_wh=0.001, start_pct=100.0, idle_w=10.0)
    clock.advance(60.0)
    sample = battery.read()
    assert sample.battery_wh == 0.0 and sample.battery_pct == 0.0


def test_noise_is_on_power_only_and_reproducible(clock: FakeClock) -> None:
    first = open_battery(clock, idle_w=5.0, noise_w=0.5, seed=7)
    second = open_battery(clock, idle_w=5.0, noise_w=0.5, seed=7)
    clock.advance(1.0)
    a, b = first.read(), second.read()
    assert a.power_w == b.power_w != 5.0
    assert a.energy_j == pytest.approx(5.0, abs=1e-12)  # the counter stays exact


def test_never_auto_detected() -> None:
    assert SimulatedBatteryConfig.detect(SourceContext()).found == []
