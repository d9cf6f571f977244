from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edged.cli import main
from edged.power.probe import ProbeReport, probe, render_probe
from edged.power.sources import SOURCE_TYPES, SourceContext
from tests.power.sysfs import FakeClock, FakeSysfs, denying_reader, jetson_ina3221, laptop_battery, rapl


def run_probe(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["power", "probe", "--listen", "0", *args]) == 0
    return capsys.readouterr().out


def test_json_report_lists_every_source_of_a_copied_tree(fs: FakeSysfs, capsys: pytest.CaptureFixture[str]) -> None:
    laptop_battery(fs)
    rapl(fs)
    jetson_ina3221(fs)
    report = ProbeReport.model_validate_json(run_probe(capsys, "--json", "--sysfs-root", str(fs.root)))
    by_source = {e.source or e.type: e for e in report.sources}
    assert by_source["hwmon:ina3221@1-0040"].status == "ok"
    assert by_source["hwmon:ina3221@1-0040"].config == {"type": "hwmon", "chip": "ina3221", "device": "1-0040"}
    assert by_source["rapl"].sample is not None and by_source["rapl"].sample.power_w == 0.0  # the fake counter is still
    assert by_source["power_supply:BAT0"].sample.battery_pct == 83.0  # type: ignore[union-attr]
    assert by_source["psutil"].status == "absent" and "not " + str(fs.root) in (by_source["psutil"].reason or "")
    assert by_source["mavlink"].reason in ("not listened for (listen time 0)",) or "edged[mavlink]" in (
        by_source["mavlink"].reason or ""
    )
    assert report.power_source == "hwmon:ina3221@1-0040"  # the board-input sensor ranks first
    assert report.battery_source == "power_supply:BAT0"
    assert [e.source or e.type for e in report.sources][:2] == ["hwmon:ina3221@1-0040", "pi5_pmic"]


def test_text_report_gives_readings_rails_and_notes(fs: FakeSysfs, capsys: pytest.CaptureFixture[str]) -> None:
    jetson_ina3221(fs)
    out = run_probe(capsys, "--sysfs-root", str(fs.root))
    assert "hwmon:ina3221@1-0040  ok           6.370 W, 5.072 V, 1.256 A [measured]" in out
    assert "rails: VDD_IN 6.370 W, VDD_CPU_GPU_CV 1.780 W, VDD_SOC 2.836 W" in out
    assert "power reading from:   hwmon:ina3221@1-0040" in out
    assert "battery reading from: none" in out


def test_unreadable_source_shows_why_and_the_fix(fs: FakeSysfs, clock: FakeClock) -> None:
    rapl(fs)
    ctx = SourceContext(sysfs_root=fs.root, clock=clock, read_text=denying_reader("energy_uj"), listen_s=0)
    report = probe(ctx)
    entry = next(e for e in report.sources if e.type == "rapl")
    assert entry.status == "unreadable" and entry.sample is None
    text = render_probe(report)
    assert "energy_uj: permission denied" in text
    assert "fix: since the CVE-2020-8694 fix energy_uj is readable by root only" in text


def test_a_source_that_vanishes_between_detection_and_reading_is_unreadable(fs: FakeSysfs, clock: FakeClock) -> None:
    laptop_battery(fs)
    ctx = SourceContext(sysfs_root=fs.root, clock=clock, listen_s=0)
    config = next(c for c in SOURCE_TYPES["power_supply"].detect(ctx).found if c.source_id == "power_supply:BAT0")
    shutil.rmtree(fs.path("power_supply", "BAT0").resolve())
    report = probe(ctx, [config])
    assert report.configured and report.sources[0].status == "unreadable"
    assert "no " in (report.sources[0].reason or "")


def test_this_machine_is_described_truthfully(capsys: pytest.CaptureFixture[str]) -> None:
    report = ProbeReport.model_validate_json(run_probe(capsys, "--json"))
    assert report.sysfs_root == "/sys"
    types = {e.type for e in report.sources}
    assert types == set(SOURCE_TYPES)  # every type is accounted for: found, or absent with a reason
    for entry in report.sources:
        assert (entry.status == "ok") == (entry.sample is not None)
        assert entry.status == "ok" or entry.reason
    if not Path("/sys/class/powercap").exists():
        assert next(e for e in report.sources if e.type == "rapl").status == "absent"


def test_probe_of_a_config_reads_its_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "edged.yaml"
    config.write_text(
        "source: {type: folder, path: images}\n"
        "power:\n"
        "  sources:\n"
        "    - {type: simulated, capacity_wh: 50, start_pct: 80, idle_w: 3}\n"
    )
    report = json.loads(run_probe(capsys, "--json", "-c", str(config)))
    assert report["configured"] is True
    (entry,) = report["sources"]
    assert entry["status"] == "ok" and entry["sample"]["quality"] == "simulated"
    assert entry["sample"]["battery_pct"] == pytest.approx(80.0, abs=1e-3)
    assert report["power_source"] == "simulated"


def test_config_with_an_unknown_source_type_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "edged.yaml"
    config.write_text("source: {type: folder, path: images}\npower:\n  sources:\n    - type: rapl2\n")
    assert main(["power", "probe", "--listen", "0", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert "edged.yaml:4: power.sources[0]" in err
    assert "'rapl'" in err and "'power_supply'" in err  # the types that exist
