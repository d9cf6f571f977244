from __future__ import annotations

import shutil

import pytest

from edged.power.sources import PowerSourceError, SourceContext
from edged.power.sources.hwmon import ChannelValues, HwmonConfig, hwmon_sample
from tests.power.sysfs import FakeSysfs, jetson_ina3221, pi_ups_ina219


def open_hwmon(ctx: SourceContext, **fields: object):
    return HwmonConfig.model_validate({"type": "hwmon", **fields}).open(ctx)


def test_pi_ups_ina219_converts_millivolts_milliamps_microwatts_exactly(fs: FakeSysfs, ctx: SourceContext) -> None:
    pi_ups_ina219(fs)
    sample = open_hwmon(ctx, chip="ina219").read()
    assert sample.source == "hwmon:ina219"
    assert sample.power_w == pytest.approx(6.504, abs=1e-12)  # power1_input, not V × I (the chip's own register)
    assert sample.voltage_v == pytest.approx(8.012, abs=1e-12)  # in1 is the bus; in0 is the shunt
    assert sample.current_a == pytest.approx(0.812, abs=1e-12)
    assert sample.charging is None  # the sign of a UPS current depends on the wiring: unknown unless configured
    assert sample.rails == {}


@pytest.mark.parametrize(("charge_sign", "charging"), [("positive", False), ("negative", True)])
def test_configured_charge_sign_tells_charging(
    fs: FakeSysfs, ctx: SourceContext, charge_sign: str, charging: bool
) -> None:
    pi_ups_ina219(fs)  # curr1_input is -812 mA
    assert open_hwmon(ctx, chip="ina219", charge_sign=charge_sign).read().charging is charging


def test_jetson_ina3221_reports_vdd_in_as_total_and_every_rail(fs: FakeSysfs, ctx: SourceContext) -> None:
    jetson_ina3221(fs)
    sample = open_hwmon(ctx, chip="ina3221", device="1-0040").read()
    assert sample.source == "hwmon:ina3221@1-0040"
    assert sample.power_w == pytest.approx(5.072 * 1.256, abs=1e-12)
    assert sample.voltage_v == pytest.approx(5.072, abs=1e-12)
    assert sample.current_a == pytest.approx(1.256, abs=1e-12)
    assert sample.rails == pytest.approx(
        {"VDD_IN": 5.072 * 1.256, "VDD_CPU_GPU_CV": 5.056 * 0.352, "VDD_SOC": 5.064 * 0.560}, abs=1e-12
    )  # the summation channel (curr4, no bus voltage) is not a rail


def test_without_a_total_channel_the_rails_are_summed_and_said_so() -> None:
    channels = [ChannelValues("A", 5000, 100), ChannelValues("B", 3300, 200, power_uw=700_000)]
    sample = hwmon_sample("hwmon:ina3221", channels, 0.0)
    assert sample.power_w == pytest.approx(0.5 + 0.7, abs=1e-12)
    assert sample.voltage_v is None and sample.current_a is None
    assert "not monitor" in (sample.note or "")


def test_disabled_channel_is_left_out(fs: FakeSysfs, ctx: SourceContext) -> None:
    jetson_ina3221(fs)
    fs.write("hwmon", "hwmon1", "in3_enable", 0)
    sample = open_hwmon(ctx, chip="ina3221").read()
    assert set(sample.rails) == {"VDD_IN", "VDD_CPU_GPU_CV"}


def test_detection_finds_ina_chips_by_name_and_i2c_device(fs: FakeSysfs, ctx: SourceContext) -> None:
    jetson_ina3221(fs)
    pi_ups_ina219(fs)
    found = HwmonConfig.detect(ctx).found
    assert sorted(c.source_id for c in found) == ["hwmon:ina219@1-0042", "hwmon:ina3221@1-0040"]


def test_detection_names_the_chips_it_saw_when_none_is_an_ina(fs: FakeSysfs, ctx: SourceContext) -> None:
    fs.device("virtual/thermal/hwmon0", "hwmon", "hwmon0", {"name": "cpu_thermal", "temp1_input": 48250})
    assert HwmonConfig.detect(ctx).absent == "no INA2xx/INA3221 sensor among 1 hwmon chips (names: cpu_thermal)"


def test_unknown_chip_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="ina219"):
        HwmonConfig.model_validate({"type": "hwmon", "chip": "lm75"})


def test_missing_total_channel_names_the_labels(fs: FakeSysfs, ctx: SourceContext) -> None:
    jetson_ina3221(fs)
    with pytest.raises(PowerSourceError, match=r"no channel labelled 'VDD_GPU' \(have: \['VDD_IN'"):
        open_hwmon(ctx, chip="ina3221", total_channel="VDD_GPU")


def test_garbage_current_is_reported(fs: FakeSysfs, ctx: SourceContext) -> None:
    pi_ups_ina219(fs)
    source = open_hwmon(ctx, chip="ina219")
    fs.write("hwmon", "hwmon2", "curr1_input", "nan")
    with pytest.raises(PowerSourceError, match="curr1_input: expected an integer in mA, got 'nan'"):
        source.read()


def test_vanished_power_file_is_reported_not_replaced_by_v_times_i(fs: FakeSysfs, ctx: SourceContext) -> None:
    pi_ups_ina219(fs)
    source = open_hwmon(ctx, chip="ina219")
    fs.path("hwmon", "hwmon2", "power1_input").unlink()
    with pytest.raises(PowerSourceError, match="power1_input vanished"):
        source.read()


def test_unbound_sensor_is_reported(fs: FakeSysfs, ctx: SourceContext) -> None:
    pi_ups_ina219(fs)
    source = open_hwmon(ctx, chip="ina219")
    shutil.rmtree(fs.path("hwmon", "hwmon2").resolve())
    with pytest.raises(PowerSourceError, match="vanished"):
        source.read()
