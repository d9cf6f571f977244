from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from edged.power.sources import PowerSourceError, SourceContext
from edged.power.sources.psutil_battery import PsutilBatteryConfig, psutil_sample

# psutil's own return type (its module moved between psutil versions, so it is rebuilt here with the same fields)
sbattery = namedtuple("sbattery", ["percent", "secsleft", "power_plugged"])


def test_converts_psutils_battery_and_its_unknown_sentinels() -> None:
    plugged = psutil_sample(
        "psutil", sbattery(percent=64.5, secsleft=psutil.POWER_TIME_UNLIMITED, power_plugged=True), 1.0
    )
    assert (plugged.battery_pct, plugged.charging, plugged.time_remaining_s) == (64.5, True, None)
    on_battery = psutil_sample("psutil", sbattery(percent=40, secsleft=5400, power_plugged=False), 1.0)
    assert (on_battery.battery_pct, on_battery.charging, on_battery.time_remaining_s) == (40.0, False, 5400.0)
    assert not on_battery.has_power  # psutil has no power reading, and the sample does not pretend to
    unknown = psutil_sample("psutil", sbattery(percent=40, secsleft=psutil.POWER_TIME_UNKNOWN, power_plugged=None), 1.0)
    assert unknown.time_remaining_s is None and unknown.charging is None


def test_detection_tells_the_truth_about_this_machine() -> None:
    detection = PsutilBatteryConfig.detect(SourceContext())
    if psutil.sensors_battery() is None:
        assert detection.absent == "psutil.sensors_battery() found no battery"
    else:
        assert [c.source_id for c in detection.found] == ["psutil"]


def test_open_without_a_battery_is_an_error() -> None:
    if psutil.sensors_battery() is not None:
        pytest.skip("this machine has a battery")
    with pytest.raises(PowerSourceError, match="finds no battery"):
        PsutilBatteryConfig(type="psutil").open(SourceContext())


def test_not_used_for_a_copied_sysfs_tree(tmp_path: Path) -> None:
    detection = PsutilBatteryConfig.detect(SourceContext(sysfs_root=tmp_path))
    assert detection.absent == f"skipped: psutil reads this machine's /sys, not {tmp_path}"
