from __future__ import annotations

from collections.abc import Sequence

import pytest

from edged.power.config import MeterConfig
from edged.power.meter import EnergyMeter
from edged.power.sample import PowerSample, Quality
from edged.power.sources import SourceContext
from edged.power.sources.simulated import SimulatedBattery, SimulatedBatteryConfig
from tests.power.sysfs import FakeClock

Windows = Sequence[tuple[float, float]]
# Timestamps are Unix seconds (~1.7e9), whose float spacing is 0.24 µs: good to 1e-6 of a 50 ms window.
REL = 1e-6


class Rig:
    """Plays a device: inference windows at given times, a source sampled every `period_s`, in time order."""

    def __init__(self, meter: EnergyMeter, clock: FakeClock, source: str = "rapl", quality: Quality = "measured"):
        self.meter, self.clock, self.source, self.quality = meter, clock, source, quality
        self.energy_j = 100.0  # the counter never starts at 0 on a real device

    def sample(self, power_w: float | None = None, counter: bool = True) -> None:
        energy = self.energy_j if counter else None
        self.meter.add_sample(
            PowerSample(ts=self.clock.now, source=self.source, quality=self.quality, energy_j=energy, power_w=power_w)
        )

    def run(
        self,
        seconds: float,
        windows: Windows = (),
        idle_w: float = 2.0,
        busy_w: float = 10.0,
        period_s: float = 0.5,
        variant: str | None = None,
        counter: bool = True,
    ) -> None:
        start, start_energy = self.clock.now, self.energy_j

        def energy_at(t: float) -> float:
            busy = sum(max(0.0, min(e, t) - s) for s, e in windows if s < t)
            return start_energy + idle_w * t + (busy_w - idle_w) * busy

        # at one instant: a window ends, then the source is sampled, then the next window starts
        events = [(e, 0, "end") for _, e in windows] + [(s, 2, "start") for s, _ in windows]
        events += [(k * period_s, 1, "sample") for k in range(1, round(seconds / period_s) + 1)]
        for t, _, kind in sorted(events):
            self.clock.now = start + t
            self.energy_j = energy_at(t)
            if kind == "start":
                self.meter.start_inference(variant)
            elif kind == "end":
                self.meter.end_inference()
            else:
                in_window = any(s <= t < e for s, e in windows)
                self.sample(power_w=None if counter else (busy_w if in_window else idle_w), counter=counter)


def back_to_back(seconds: float, length: float) -> list[tuple[float, float]]:
    return [(i * length, (i + 1) * length) for i in range(round(seconds / length))]


def one_per_interval(seconds: float, length: float, period_s: float = 0.5) -> list[tuple[float, float]]:
    return [(i * period_s + 0.2, i * period_s + 0.2 + length) for i in range(round(seconds / period_s))]


@pytest.fixture
def meter(clock: FakeClock) -> EnergyMeter:
    return EnergyMeter(MeterConfig(horizon_s=60.0), clock=clock)


@pytest.fixture
def rig(meter: EnergyMeter, clock: FakeClock) -> Rig:
    rig = Rig(meter, clock)
    rig.sample()
    return rig


def test_back_to_back_inference_is_measured_from_counter_deltas(meter: EnergyMeter, rig: Rig) -> None:
    rig.run(2.0, back_to_back(2.0, 0.1), busy_w=10.0, variant="int8")
    result = meter.energy_per_inference_mj()
    assert result.mj == pytest.approx(1000.0, rel=REL)  # 10 W for 0.1 s
    assert result.inferences == pytest.approx(20.0, rel=REL)
    assert (result.quality, result.source, result.variant) == ("measured", "rapl", "int8")
    assert result.method == "energy counter over inference windows / inferences"
    assert result.reason is None


def test_power_readings_are_integrated_when_there_is_no_counter(meter: EnergyMeter, clock: FakeClock) -> None:
    rig = Rig(meter, clock, source="hwmon:ina219")
    rig.sample(power_w=6.0, counter=False)
    rig.run(2.0, back_to_back(2.0, 0.05), idle_w=6.0, busy_w=6.0, counter=False)
    result = meter.energy_per_inference_mj()
    assert result.mj == pytest.approx(300.0, rel=REL)  # 6 W for 50 ms
    assert result.method == "power integrated over inference windows / inferences"
    assert result.quality == "measured"


def test_sparse_inference_subtracts_the_idle_power_it_learnt(meter: EnergyMeter, rig: Rig) -> None:
    rig.run(2.0, idle_w=2.0)  # no inference: the meter learns the idle power
    rig.run(3.0, one_per_interval(3.0, 0.05), idle_w=2.0, busy_w=12.0)
    result = meter.energy_per_inference_mj()
    assert result.idle_power_w == pytest.approx(2.0, rel=REL)
    assert result.mj == pytest.approx(600.0, rel=REL)  # 12 W for 50 ms, the idle rest taken out exactly
    assert result.quality == "estimated"
    assert "idle power 2.000 W subtracted" in (result.reason or "")
    assert "filled 10%" in (result.reason or "")


def test_sparse_inference_without_idle_power_assumes_uniform_power_and_says_so(meter: EnergyMeter, rig: Rig) -> None:
    rig.run(3.0, one_per_interval(3.0, 0.05), idle_w=2.0, busy_w=12.0)
    result = meter.energy_per_inference_mj()
    assert result.mj == pytest.approx(150.0, rel=REL)  # 1.5 J per 0.5 s interval, shared by time
    assert result.quality == "estimated"
    assert "power assumed uniform" in (result.reason or "")


def test_each_variant_gets_its_own_figure(meter: EnergyMeter, rig: Rig) -> None:
    rig.run(1.0, back_to_back(1.0, 0.1), busy_w=10.0, variant="baseline")
    rig.run(1.0, back_to_back(1.0, 0.1), busy_w=4.0, variant="int8")
    assert meter.energy_per_inference_mj("baseline").mj == pytest.approx(1000.0, rel=REL)
    assert meter.energy_per_inference_mj().variant == "int8"  # the one that ran last
    assert meter.energy_per_inference_mj().mj == pytest.approx(400.0, rel=REL)


def test_a_new_source_starts_a_new_measurement(meter: EnergyMeter, rig: Rig, clock: FakeClock) -> None:
    rig.run(1.0, back_to_back(1.0, 0.1), busy_w=10.0)
    battery = Rig(meter, clock, source="power_supply:BAT0")
    battery.sample(power_w=5.0, counter=False)
    battery.run(1.0, back_to_back(1.0, 0.1), idle_w=5.0, busy_w=5.0, counter=False)
    result = meter.energy_per_inference_mj()
    assert result.source == "power_supply:BAT0"
    assert result.mj == pytest.approx(500.0, rel=REL)  # nothing of the RAPL figure mixed in
    assert result.inferences == pytest.approx(10.0, rel=REL)


def test_inference_energy_accumulates_across_sources_by_quality(meter: EnergyMeter, rig: Rig, clock: FakeClock) -> None:
    rig.run(1.0, back_to_back(1.0, 0.1), busy_w=10.0)  # resolved by a measured counter: 10 J
    rig.run(3.0, one_per_interval(3.0, 0.05), idle_w=2.0, busy_w=12.0)  # sparse: estimated, 6 x 0.15 J (uniform)
    simulated = Rig(meter, clock, source="simulated", quality="simulated")
    simulated.sample(power_w=4.0, counter=False)
    simulated.run(1.0, back_to_back(1.0, 0.1), idle_w=4.0, busy_w=4.0, counter=False)  # a new source: 4 J
    spent = meter.inference_energy_j()
    assert spent["measured"] == pytest.approx(10.0, rel=REL)
    assert spent["estimated"] == pytest.approx(0.9, rel=REL)
    assert spent["simulated"] == pytest.approx(4.0, rel=REL)
    assert meter.energy_per_inference_mj().source == "simulated", (
        "the per-inference figure restarted; the total did not"
    )


def test_counter_going_backwards_is_skipped_never_a_negative_energy(meter: EnergyMeter, rig: Rig) -> None:
    rig.run(1.0, back_to_back(1.0, 0.1), busy_w=10.0)
    rig.energy_j -= 50.0  # a counter reset between two reads
    rig.run(1.0, back_to_back(1.0, 0.1), busy_w=10.0)
    result = meter.energy_per_inference_mj()
    assert result.skipped_intervals == 1
    assert result.mj == pytest.approx(1000.0, rel=REL)
    assert result.inferences == pytest.approx(15.0, rel=REL)  # the 5 in the broken interval are not counted


def test_a_gap_in_readings_is_not_bridged(meter: EnergyMeter, rig: Rig, clock: FakeClock) -> None:
    rig.run(1.0, back_to_back(1.0, 0.1), busy_w=10.0)
    meter.add_sample(None)  # the power source failed this tick
    clock.advance(0.5)
    rig.energy_j += 3.0
    rig.sample()
    rig.run(1.0, back_to_back(1.0, 0.1), busy_w=10.0)
    result = meter.energy_per_inference_mj()
    assert result.mj == pytest.approx(1000.0, rel=REL)
    assert result.inferences == pytest.approx(20.0, rel=REL)


def test_an_interval_waits_for_the_running_inference(meter: EnergyMeter, rig: Rig, clock: FakeClock) -> None:
    meter.start_inference("v")
    clock.advance(0.5)
    rig.energy_j += 5.0
    rig.sample()
    assert meter.energy_per_inference_mj().mj is None
    assert meter.energy_per_inference_mj().reason == "an inference is still running"
    clock.advance(0.5)
    meter.end_inference()
    rig.energy_j += 5.0
    rig.sample()
    result = meter.energy_per_inference_mj()
    assert result.mj == pytest.approx(10_000.0, rel=REL)  # one inference of 1 s at 10 W
    assert result.inferences == pytest.approx(1.0, rel=REL)


def test_an_inference_that_raises_still_counts(meter: EnergyMeter, rig: Rig, clock: FakeClock) -> None:
    with pytest.raises(RuntimeError), meter.inference("v"):
        clock.advance(0.5)
        rig.energy_j += 5.0
        raise RuntimeError("engine failed")
    rig.sample()
    assert meter.energy_per_inference_mj().mj == pytest.approx(5000.0, rel=REL)


def test_old_inferences_leave_the_horizon(clock: FakeClock) -> None:
    meter = EnergyMeter(MeterConfig(horizon_s=2.0), clock=clock)
    rig = Rig(meter, clock)
    rig.sample()
    rig.run(1.0, back_to_back(1.0, 0.1))
    rig.run(3.0)
    result = meter.energy_per_inference_mj()
    assert result.mj is None
    assert "no inference window covered" in (result.reason or "")


def test_without_a_power_reading_there_is_no_figure_and_it_says_why(meter: EnergyMeter, clock: FakeClock) -> None:
    assert meter.energy_per_inference_mj().reason == "no power reading yet"
    meter.add_sample(PowerSample(ts=clock.now, source="psutil", quality="measured", battery_pct=50.0))
    result = meter.energy_per_inference_mj()
    assert result.mj is None and result.quality is None
    assert result.reason == "psutil gives no power reading (battery state only)"


def test_a_simulated_battery_gives_a_simulated_figure(clock: FakeClock) -> None:
    config = SimulatedBatteryConfig(type="simulated", idle_w=2.0, inference_mj=50.0)
    battery = config.open(SourceContext(clock=clock))
    assert isinstance(battery, SimulatedBattery)
    meter = EnergyMeter(clock=clock)
    meter.add_sample(battery.read())
    for _ in range(4):
        for _ in range(5):
            with meter.inference("sim"):
                clock.advance(0.1)
                battery.record_inference()
        meter.add_sample(battery.read())
    result = meter.energy_per_inference_mj()
    assert result.mj == pytest.approx(50.0 + 2.0 * 0.1 * 1000, rel=REL)  # the inference plus idle power meanwhile
    assert result.quality == "simulated"
