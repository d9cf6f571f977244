from __future__ import annotations

import os
import shutil

import pytest

from edged.power.sources import PowerSourceError, SourceContext
from edged.power.sources.power_supply import PowerSupplyConfig, SupplyValues, supply_sample
from tests.power.sysfs import FakeSysfs, charge_reporting_battery, denying_reader, laptop_battery


def open_supply(ctx: SourceContext, name: str):
    return PowerSupplyConfig(type="power_supply", name=name).open(ctx)


def test_laptop_battery_converts_microwatts_and_microwatt_hours_exactly(fs: FakeSysfs, ctx: SourceContext) -> None:
    laptop_battery(fs)
    sample = open_supply(ctx, "BAT0").read()
    assert sample.source == "power_supply:BAT0"
    assert sample.quality == "measured"
    assert sample.power_w == pytest.approx(7.231, abs=1e-12)
    assert sample.voltage_v == pytest.approx(11.923, abs=1e-12)
    assert sample.battery_wh == pytest.approx(17.88, abs=1e-12)
    assert sample.battery_pct == 83.0  # `capacity` wins over energy_now / energy_full
    assert sample.charging is False
    assert sample.ts == ctx.clock()


def test_battery_without_power_now_uses_current_times_voltage_and_charge(fs: FakeSysfs, ctx: SourceContext) -> None:
    charge_reporting_battery(fs)
    sample = open_supply(ctx, "BAT1").read()
    assert sample.power_w == pytest.approx(1.034 * 12.231, abs=1e-12)
    assert sample.current_a == pytest.approx(1.034, abs=1e-12)  # the driver's negative sign is not a direction
    assert sample.battery_wh == pytest.approx(2.891 * 12.231, abs=1e-12)
    assert sample.battery_pct == pytest.approx(100 * 2891000 / 3380000, abs=1e-12)
    assert sample.charging is True
    assert "current_now × voltage_now" in (sample.note or "")


def test_mains_supply_reports_online_state_but_no_power_or_battery(fs: FakeSysfs, ctx: SourceContext) -> None:
    laptop_battery(fs)
    sample = open_supply(ctx, "AC").read()
    assert not sample.has_power and not sample.has_battery
    assert sample.note == "Mains supply, offline: no battery state"


@pytest.mark.parametrize(
    ("status", "charging"),
    [("Charging", True), ("Discharging", False), ("Full", False), ("Not charging", False), ("Unknown", None)],
)
def test_status_tells_the_direction(status: str, charging: bool | None) -> None:
    values = SupplyValues(kind="Battery", status=status, power_now=5_000_000)
    assert supply_sample("power_supply:BAT0", values, 0.0).charging is charging


def test_detection_lists_batteries_before_external_supplies(fs: FakeSysfs, ctx: SourceContext) -> None:
    laptop_battery(fs)
    detection = PowerSupplyConfig.detect(ctx)
    assert [c.source_id for c in detection.found] == ["power_supply:BAT0", "power_supply:AC"]


def test_detection_without_supplies_says_so(fs: FakeSysfs, ctx: SourceContext) -> None:
    (fs.root / "class" / "power_supply").mkdir(parents=True)
    assert "is empty" in (PowerSupplyConfig.detect(ctx).absent or "")


def test_garbage_in_a_file_is_reported_with_file_and_unit(fs: FakeSysfs, ctx: SourceContext) -> None:
    laptop_battery(fs)
    source = open_supply(ctx, "BAT0")
    fs.write("power_supply", "BAT0", "power_now", "7.2W\x00\x00")
    with pytest.raises(PowerSourceError, match=r"BAT0/power_now: expected an integer in µW, got '7.2W"):
        source.read()


def test_a_file_that_vanishes_mid_run_is_an_error_not_a_silent_none(fs: FakeSysfs, ctx: SourceContext) -> None:
    laptop_battery(fs)
    source = open_supply(ctx, "BAT0")
    fs.path("power_supply", "BAT0", "power_now").unlink()
    with pytest.raises(PowerSourceError, match="power_now vanished"):
        source.read()


def test_a_removed_battery_is_reported(fs: FakeSysfs, ctx: SourceContext) -> None:
    laptop_battery(fs)
    source = open_supply(ctx, "BAT0")
    shutil.rmtree(fs.path("power_supply", "BAT0").resolve())
    with pytest.raises(PowerSourceError, match="vanished"):
        source.read()


def test_an_empty_bay_is_reported(fs: FakeSysfs, ctx: SourceContext) -> None:
    laptop_battery(fs)
    fs.write("power_supply", "BAT0", "present", 0)
    with pytest.raises(PowerSourceError, match="no battery present"):
        open_supply(ctx, "BAT0")


def test_permission_denied_is_reported(fs: FakeSysfs, ctx: SourceContext) -> None:
    laptop_battery(fs)
    denied = SourceContext(sysfs_root=fs.root, clock=ctx.clock, read_text=denying_reader("energy_now"))
    with pytest.raises(PowerSourceError, match="energy_now: permission denied"):
        open_supply(denied, "BAT0")


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root reads a chmod 000 file; test_permission_denied_is_reported covers it"
)
def test_chmod_000_file_is_reported_as_permission_denied(fs: FakeSysfs, ctx: SourceContext) -> None:
    laptop_battery(fs)
    fs.path("power_supply", "BAT0", "energy_now").chmod(0)
    with pytest.raises(PowerSourceError, match="permission denied"):
        open_supply(ctx, "BAT0")


def test_an_attribute_that_is_a_directory_is_reported(fs: FakeSysfs, ctx: SourceContext) -> None:
    laptop_battery(fs)
    source = open_supply(ctx, "BAT0")
    path = fs.path("power_supply", "BAT0", "voltage_now")
    path.unlink()
    path.mkdir()
    with pytest.raises(PowerSourceError, match="voltage_now is a directory"):
        source.read()
