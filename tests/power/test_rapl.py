from __future__ import annotations

import pytest

from edged.power.sources import PowerSourceError, SourceContext
from edged.power.sources.rapl import CounterWentBackwards, RaplConfig, counter_delta
from tests.power.sysfs import RAPL_MAX_RANGE_UJ, FakeClock, FakeSysfs, denying_reader, rapl


def open_rapl(ctx: SourceContext, **fields: object):
    return RaplConfig.model_validate({"type": "rapl", **fields}).open(ctx)


def test_counter_delta_counts_forward_and_across_the_wrap() -> None:
    assert counter_delta(1_000, 4_500, 10_000) == 3_500
    assert counter_delta(9_000, 500, 10_000) == 1_500  # passed max_energy_range_uj and started again at 0


def test_counter_that_steps_back_is_not_mistaken_for_a_wrap() -> None:
    with pytest.raises(CounterWentBackwards, match="from 5000 to 4000"):
        counter_delta(5_000, 4_000, 10_000)


def test_package_power_is_the_counter_delta_over_the_interval(
    fs: FakeSysfs, ctx: SourceContext, clock: FakeClock
) -> None:
    rapl(fs, package_uj=1_000_000)
    source = open_rapl(ctx)
    clock.advance(0.5)
    fs.write("powercap", "intel-rapl:0", "energy_uj", 4_500_000)
    fs.write("powercap", "intel-rapl:0:0", "energy_uj", 100_000 + 2_000_000)
    sample = source.read()
    assert sample.power_w == pytest.approx(7.0, abs=1e-9)  # 3.5 J in 0.5 s
    assert sample.energy_j == pytest.approx(3.5, abs=1e-12)
    assert sample.rails["package-0"] == pytest.approx(7.0, abs=1e-9)
    assert sample.rails["package-0/core"] == pytest.approx(4.0, abs=1e-9)
    assert sample.rails["package-0/dram"] == 0.0
    assert "CPU package only" in (sample.note or "")


def test_wrap_at_max_energy_range_gives_the_true_delta(fs: FakeSysfs, ctx: SourceContext, clock: FakeClock) -> None:
    rapl(fs, package_uj=RAPL_MAX_RANGE_UJ - 1_000_000)
    source = open_rapl(ctx)
    clock.advance(0.5)
    fs.write("powercap", "intel-rapl:0", "energy_uj", 2_500_000)
    sample = source.read()
    assert sample.energy_j == pytest.approx(3.5, abs=1e-12)
    assert sample.power_w == pytest.approx(7.0, abs=1e-9)


def test_energy_counter_keeps_growing_across_reads(fs: FakeSysfs, ctx: SourceContext, clock: FakeClock) -> None:
    rapl(fs, package_uj=0)
    source = open_rapl(ctx)
    for step in range(1, 4):
        clock.advance(1.0)
        fs.write("powercap", "intel-rapl:0", "energy_uj", step * 2_000_000)
        sample = source.read()
    assert sample.energy_j == pytest.approx(6.0, abs=1e-12)


def test_counter_going_backwards_is_reported_then_rebased(fs: FakeSysfs, ctx: SourceContext, clock: FakeClock) -> None:
    rapl(fs, package_uj=50_000_000)
    source = open_rapl(ctx)
    clock.advance(0.5)
    fs.write("powercap", "intel-rapl:0", "energy_uj", 49_000_000)
    with pytest.raises(PowerSourceError, match=r"intel-rapl:0 \(package-0\): energy_uj went backwards"):
        source.read()
    clock.advance(0.5)
    fs.write("powercap", "intel-rapl:0", "energy_uj", 51_000_000)
    sample = source.read()
    assert sample.power_w == pytest.approx(4.0, abs=1e-9)  # 2 J since the re-based reading, not a negative number
    assert sample.energy_j == pytest.approx(2.0, abs=1e-12)


def test_psys_is_counted_instead_of_the_package_when_present(
    fs: FakeSysfs, ctx: SourceContext, clock: FakeClock
) -> None:
    rapl(fs, package_uj=0, psys_uj=0)
    source = open_rapl(ctx)
    clock.advance(1.0)
    fs.write("powercap", "intel-rapl:0", "energy_uj", 3_000_000)
    fs.write("powercap", "intel-rapl:1", "energy_uj", 9_000_000)
    sample = source.read()
    assert sample.power_w == pytest.approx(9.0, abs=1e-9)
    assert sample.rails["package-0"] == pytest.approx(3.0, abs=1e-9)
    assert "psys" in (sample.note or "")


def test_named_zone_is_counted_alone(fs: FakeSysfs, ctx: SourceContext, clock: FakeClock) -> None:
    rapl(fs, package_uj=0, psys_uj=0)
    source = open_rapl(ctx, zones=["package-0"])
    clock.advance(1.0)
    fs.write("powercap", "intel-rapl:0", "energy_uj", 3_000_000)
    assert source.read().power_w == pytest.approx(3.0, abs=1e-9)
    assert source.id == "rapl:package-0"


def test_unknown_zone_is_an_error_naming_the_zones_there(fs: FakeSysfs, ctx: SourceContext) -> None:
    rapl(fs)
    with pytest.raises(PowerSourceError, match=r"no RAPL zone named package-1 \(have: \['package-0'\]\)"):
        open_rapl(ctx, zones=["package-1"])


def test_root_only_counter_is_reported_with_the_udev_remedy(fs: FakeSysfs, clock: FakeClock) -> None:
    rapl(fs)
    ctx = SourceContext(sysfs_root=fs.root, clock=clock, read_text=denying_reader("energy_uj"))
    with pytest.raises(PowerSourceError) as caught:
        open_rapl(ctx)
    assert "energy_uj: permission denied" in caught.value.reason
    assert "CVE-2020-8694" in (caught.value.remedy or "")
    assert 'SUBSYSTEM=="powercap"' in (caught.value.remedy or "")


def test_garbage_counter_is_reported(fs: FakeSysfs, ctx: SourceContext, clock: FakeClock) -> None:
    rapl(fs)
    source = open_rapl(ctx)
    fs.write("powercap", "intel-rapl:0", "energy_uj", "")
    with pytest.raises(PowerSourceError, match="expected an integer in µJ, got ''"):
        source.read()


def test_detection_without_powercap_explains(fs: FakeSysfs, ctx: SourceContext) -> None:
    detection = RaplConfig.detect(ctx)
    assert not detection.found
    assert "no RAPL here" in (detection.absent or "")


def test_detection_finds_rapl(fs: FakeSysfs, ctx: SourceContext) -> None:
    rapl(fs)
    assert [c.source_id for c in RaplConfig.detect(ctx).found] == ["rapl"]
