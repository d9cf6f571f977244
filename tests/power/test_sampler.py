from __future__ import annotations

import itertools
import logging
import shutil
import threading
import time
from typing import ClassVar, Literal

import pytest

from edged.power.config import PowerConfig
from edged.power.meter import EnergyMeter
from edged.power.sample import PowerSample
from edged.power.sampler import PowerEvent, PowerReading, PowerSampler
from edged.power.sources import PowerSource, PowerSourceConfig, SourceContext
from edged.power.sources.hwmon import HwmonConfig
from edged.power.sources.power_supply import PowerSupplyConfig
from edged.power.sources.simulated import SimulatedBattery
from tests.power.sysfs import FakeClock, FakeSysfs, laptop_battery, pi_ups_ina219, rapl

INA219 = HwmonConfig(type="hwmon", chip="ina219")
BAT0 = PowerSupplyConfig(type="power_supply", name="BAT0")


def make_sampler(ctx: SourceContext, clock: FakeClock, configs: list[PowerSourceConfig], **kw: object):
    events: list[PowerEvent] = []
    sampler = PowerSampler(configs, retry_s=5.0, ctx=ctx, on_event=events.append, monotonic=clock, **kw)  # type: ignore[arg-type]
    return sampler, events


def test_auto_detected_roles_take_power_from_rapl_and_battery_from_bat0(
    fs: FakeSysfs, ctx: SourceContext, clock: FakeClock
) -> None:
    laptop_battery(fs)
    rapl(fs)
    readings: list[PowerReading] = []
    sampler = PowerSampler.from_config(PowerConfig(), ctx, on_reading=readings.append)
    sampler.step()
    assert [slot.id for slot in sampler.slots] == ["rapl", "power_supply:BAT0", "power_supply:AC"]
    assert readings[0].power is not None and readings[0].power.source == "rapl"
    assert readings[0].battery is not None and readings[0].battery.source == "power_supply:BAT0"
    assert len(readings[0].samples) == 3


def test_a_vanished_source_falls_back_to_the_next_best_and_is_reported_once(
    fs: FakeSysfs, ctx: SourceContext, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    pi_ups_ina219(fs)
    laptop_battery(fs)
    sampler, events = make_sampler(ctx, clock, [INA219, BAT0])
    assert sampler.step().power.source == "hwmon:ina219"  # type: ignore[union-attr]
    events.clear()
    hwmon_dir = fs.path("hwmon", "hwmon2").resolve()
    shutil.rmtree(hwmon_dir)
    with caplog.at_level(logging.INFO, logger="edged.power.sampler"):
        readings = []
        for _ in range(30):  # 15 s at 2 Hz: two retries, both failing the same way
            clock.advance(0.5)
            readings.append(sampler.step())
    assert all(r.power is not None and r.power.source == "power_supply:BAT0" for r in readings)
    assert [(e.kind, e.source) for e in events] == [
        ("source_failed", "hwmon:ina219"),
        ("role_changed", "power_supply:BAT0"),
    ]
    assert "vanished" in (events[0].reason or "")
    assert events[1].previous == "hwmon:ina219" and events[1].role == "power"
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.WARNING
    assert "hwmon:ina219" in readings[-1].unreadable


def test_a_recovered_source_gets_its_role_back(fs: FakeSysfs, ctx: SourceContext, clock: FakeClock) -> None:
    pi_ups_ina219(fs)
    laptop_battery(fs)
    sampler, events = make_sampler(ctx, clock, [INA219, BAT0])
    sampler.step()
    fs.write("hwmon", "hwmon2", "curr1_input", "garbage")
    clock.advance(0.5)
    assert sampler.step().power.source == "power_supply:BAT0"  # type: ignore[union-attr]
    fs.write("hwmon", "hwmon2", "curr1_input", -812)
    clock.advance(1.0)
    assert sampler.step().power.source == "power_supply:BAT0"  # type: ignore[union-attr]  # not retried yet
    clock.advance(5.0)
    reading = sampler.step()
    assert reading.power is not None and reading.power.source == "hwmon:ina219"
    assert reading.unreadable == {}
    kinds = [(e.kind, e.source) for e in events]
    assert kinds[-2:] == [("source_recovered", "hwmon:ina219"), ("role_changed", "hwmon:ina219")]
    failed = next(e for e in events if e.kind == "source_failed")
    assert "expected an integer in mA, got 'garbage'" in (failed.reason or "")


def test_losing_every_power_source_is_reported_as_no_source(
    fs: FakeSysfs, ctx: SourceContext, clock: FakeClock
) -> None:
    pi_ups_ina219(fs)
    sampler, events = make_sampler(ctx, clock, [INA219])
    sampler.step()
    shutil.rmtree(fs.path("hwmon", "hwmon2").resolve())
    clock.advance(0.5)
    reading = sampler.step()
    assert reading.power is None and reading.samples == []
    assert events[-1].kind == "role_changed" and events[-1].source is None
    assert events[-1].message == "power reading now from no source (was hwmon:ina219)"


def test_a_source_unreadable_from_the_start_is_reported_and_retried(
    fs: FakeSysfs, ctx: SourceContext, clock: FakeClock
) -> None:
    sampler, events = make_sampler(ctx, clock, [BAT0])
    assert sampler.step().power is None
    assert events[0].kind == "source_failed" and "no " in (events[0].reason or "")
    laptop_battery(fs)  # the battery is put in
    clock.advance(5.0)
    assert sampler.step().battery is not None


class _BrokenConfig(PowerSourceConfig):
    """A source with a bug (not a PowerSourceError): the sampler must survive it too."""

    type: Literal["broken-for-test"]
    rank: ClassVar[int] = 99

    @property
    def source_id(self) -> str:
        return "broken"

    def open(self, ctx: SourceContext) -> PowerSource:
        return _BrokenSource("broken")


class _BrokenSource(PowerSource):
    def read(self) -> PowerSample:
        raise ZeroDivisionError("division by zero")


def test_a_buggy_source_is_reported_not_fatal(fs: FakeSysfs, ctx: SourceContext, clock: FakeClock) -> None:
    laptop_battery(fs)
    sampler, events = make_sampler(ctx, clock, [_BrokenConfig(type="broken-for-test"), BAT0])
    reading = sampler.step()
    assert reading.power is not None and reading.power.source == "power_supply:BAT0"
    assert events[0].kind == "source_failed" and events[0].source == "broken"
    assert reading.unreadable == {"broken": "unexpected error: ZeroDivisionError('division by zero')"}


def test_a_failing_consumer_does_not_stop_sampling(
    fs: FakeSysfs, ctx: SourceContext, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    laptop_battery(fs)

    def broken_consumer(reading: PowerReading) -> None:
        raise ValueError("consumer bug")

    sampler = PowerSampler([BAT0], ctx=ctx, on_reading=broken_consumer, monotonic=clock)
    for _ in range(3):
        assert sampler.step().battery is not None
    assert sum("consumer bug" in (r.exc_text or "") or r.exc_info is not None for r in caplog.records) == 1


def test_the_thread_samples_at_its_rate_and_stops(fs: FakeSysfs) -> None:
    laptop_battery(fs)
    readings: list[PowerReading] = []
    enough = threading.Event()

    def collect(reading: PowerReading) -> None:
        readings.append(reading)
        if len(readings) >= 5:
            enough.set()

    sampler = PowerSampler([BAT0], sample_hz=50.0, ctx=SourceContext(sysfs_root=fs.root), on_reading=collect)
    sampler.start()
    try:
        assert enough.wait(2.0), "five readings at 50 Hz did not come within 2 s"
    finally:
        sampler.stop()
    count = len(readings)
    assert all(r.power is not None and r.power.power_w == pytest.approx(7.231) for r in readings)
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(readings)]
    assert all(0.005 < gap < 0.5 for gap in gaps[:4])  # paced at ~20 ms, not a busy loop
    enough.wait(0.1)
    assert len(readings) == count  # stopped


def test_nothing_found_is_said_once(ctx: SourceContext, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        sampler = PowerSampler.from_config(PowerConfig(), ctx)
    assert sampler.slots == []
    assert sampler.step().power is None
    assert [r.getMessage() for r in caplog.records] == [
        "no power or battery source found: energy figures will come from the zoo profiles only"
    ]


def test_sampler_meter_and_simulated_battery_wired_as_the_daemon_does() -> None:
    meter = EnergyMeter()
    config = PowerConfig.model_validate(
        {"sample_hz": 50, "sources": [{"type": "simulated", "idle_w": 0.0, "inference_mj": 80.0}]}
    )
    sampler = PowerSampler.from_config(config, on_reading=lambda reading: meter.add_sample(reading.power))
    sampler.start()
    try:
        deadline = time.monotonic() + 0.4
        while time.monotonic() < deadline:
            battery = sampler.source("simulated")
            with meter.inference("demo"):
                time.sleep(0.005)
                if isinstance(battery, SimulatedBattery):
                    battery.record_inference(40.0)  # the active variant's profiled figure
    finally:
        sampler.stop()
    result = meter.energy_per_inference_mj()
    assert result.quality == "simulated" and result.source == "simulated" and result.variant == "demo"
    assert result.inferences > 20
    assert result.mj == pytest.approx(40.0, rel=0.1)
