from __future__ import annotations

from pathlib import Path

import pytest

from edged.power.sources import PowerSourceError, SourceContext
from edged.power.sources.pi5_pmic import Pi5PmicConfig, parse_pmic_adc, pmic_sample

PMIC_OUTPUT = (Path(__file__).parent / "fixtures" / "pi5_pmic_read_adc.txt").read_text()


def fake_vcgencmd(directory: Path, body: str) -> Path:
    """A real executable standing in for vcgencmd: the source runs it as a subprocess."""
    program = directory / "vcgencmd"
    program.write_text(f"#!/bin/sh\n{body}\n")
    program.chmod(0o755)
    return program


def test_parse_reads_every_rail_current_and_voltage() -> None:
    amps, volts = parse_pmic_adc(PMIC_OUTPUT)
    assert len(amps) == 12 and len(volts) == 14
    assert amps["VDD_CORE"] == 0.6944 and volts["VDD_CORE"] == 0.8802724
    assert volts["EXT5V"] == 5.15451 and "EXT5V" not in amps  # the 5 V input has no current sensor


def test_power_is_the_sum_of_rails_that_have_current_and_voltage() -> None:
    amps, volts = parse_pmic_adc(PMIC_OUTPUT)
    sample = pmic_sample("pi5_pmic", PMIC_OUTPUT, 0.0)
    assert sample.power_w == pytest.approx(sum(amps[r] * volts[r] for r in amps), abs=1e-12)
    assert sample.rails["VDD_CORE"] == pytest.approx(0.6944 * 0.8802724, abs=1e-12)
    assert sample.voltage_v == 5.15451
    assert "not seen" in (sample.note or "")  # says what the PMIC cannot see


def test_source_runs_vcgencmd(tmp_path: Path) -> None:
    (tmp_path / "out.txt").write_text(PMIC_OUTPUT)
    program = fake_vcgencmd(tmp_path, f'[ "$1" = pmic_read_adc ] && cat {tmp_path / "out.txt"}')
    source = Pi5PmicConfig(type="pi5_pmic", vcgencmd=str(program)).open(SourceContext())
    sample = source.read()
    assert sample.source == "pi5_pmic" and sample.quality == "measured"
    assert sample.power_w == pytest.approx(pmic_sample("x", PMIC_OUTPUT, 0.0).power_w, abs=1e-12)


def test_older_pi_without_pmic_says_it_is_not_a_pi5(tmp_path: Path) -> None:
    program = fake_vcgencmd(tmp_path, "echo 'error=1 error_msg=\"Command not registered\"'")
    with pytest.raises(PowerSourceError, match=r"not a Raspberry Pi 5\?\): error=1 .*Command not registered"):
        Pi5PmicConfig(type="pi5_pmic", vcgencmd=str(program)).open(SourceContext())


def test_failing_vcgencmd_is_reported_with_what_it_said(tmp_path: Path) -> None:
    program = fake_vcgencmd(tmp_path, "echo 'VCHI initialization failed' >&2; exit 255")
    with pytest.raises(PowerSourceError, match=r"failed \(255\): VCHI initialization failed"):
        Pi5PmicConfig(type="pi5_pmic", vcgencmd=str(program)).open(SourceContext())


def test_missing_vcgencmd_is_reported(tmp_path: Path) -> None:
    with pytest.raises(PowerSourceError, match="not found"):
        Pi5PmicConfig(type="pi5_pmic", vcgencmd=str(tmp_path / "nope")).open(SourceContext())


def test_hung_vcgencmd_times_out(tmp_path: Path) -> None:
    program = fake_vcgencmd(tmp_path, "exec sleep 5")
    with pytest.raises(PowerSourceError, match=r"took over 0\.2 s"):
        Pi5PmicConfig(type="pi5_pmic", vcgencmd=str(program), timeout_s=0.2).open(SourceContext())
