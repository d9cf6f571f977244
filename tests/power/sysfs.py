"""Fake sysfs trees, laid out like the kernel's: attribute files under /sys/devices/..., and /sys/class/<class>/<name>
symlinks to them. Values are what real devices write (integers in the kernel's units, one per file, newline)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from edged.power.sources.base import read_text_file

RAPL_MAX_RANGE_UJ = 262143328850  # max_energy_range_uj of a Skylake-era laptop package


class FakeSysfs:
    def __init__(self, root: Path) -> None:
        self.root = root

    def device(self, devpath: str, cls: str, name: str, attrs: dict[str, object]) -> Path:
        """Create /sys/devices/<devpath> with `attrs` and the /sys/class/<cls>/<name> link to it."""
        directory = self.root / "devices" / devpath
        directory.mkdir(parents=True)
        for attr, value in attrs.items():
            (directory / attr).write_text(f"{value}\n")
        link = self.root / "class" / cls / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(directory, link.parent))
        return directory

    def write(self, cls: str, name: str, attr: str, value: object) -> None:
        (self.root / "class" / cls / name / attr).write_text(f"{value}\n")

    def path(self, cls: str, name: str, attr: str = "") -> Path:
        return self.root / "class" / cls / name / attr if attr else self.root / "class" / cls / name


def laptop_battery(fs: FakeSysfs) -> None:
    """A ThinkPad: BAT0 reports power and energy (µW, µWh), AC is a Mains supply."""
    acpi = "LNXSYSTM:00/LNXSYBUS:00/PNP0A08:00/device:00/PNP0C0A:00"
    fs.device(
        f"{acpi}/power_supply/BAT0",
        "power_supply",
        "BAT0",
        {
            "type": "Battery",
            "status": "Discharging",
            "present": 1,
            "technology": "Li-ion",
            "cycle_count": 312,
            "voltage_min_design": 11460000,
            "voltage_now": 11923000,
            "power_now": 7231000,
            "energy_full_design": 24050000,
            "energy_full": 21520000,
            "energy_now": 17880000,
            "capacity": 83,
            "capacity_level": "Normal",
            "model_name": "01AV423",
            "manufacturer": "SMP",
        },
    )
    fs.device(
        "LNXSYSTM:00/LNXSYBUS:00/ACPI0003:00/power_supply/AC", "power_supply", "AC", {"type": "Mains", "online": 0}
    )


def charge_reporting_battery(fs: FakeSysfs) -> None:
    """A gauge that reports charge (µAh) and current (µA) but neither power nor energy nor capacity."""
    fs.device(
        "platform/ACPI0001:00/power_supply/BAT1",
        "power_supply",
        "BAT1",
        {
            "type": "Battery",
            "status": "Charging",
            "present": 1,
            "voltage_now": 12231000,
            "current_now": -1034000,  # some drivers sign the current; the magnitude is what counts
            "charge_full": 3380000,
            "charge_now": 2891000,
        },
    )


def pi_ups_ina219(fs: FakeSysfs) -> None:
    """A Raspberry Pi UPS HAT: INA219 at 0x42 on i2c-1 on the battery lead, discharging (negative current)."""
    fs.device(
        "platform/soc/fe804000.i2c/i2c-1/1-0042/hwmon/hwmon2",
        "hwmon",
        "hwmon2",
        {
            "name": "ina219",
            "in0_input": -8,  # shunt voltage, mV
            "in1_input": 8012,  # bus voltage, mV
            "curr1_input": -812,  # mA
            "power1_input": 6504000,  # µW
            "shunt_resistor": 10000,
            "update_interval": 1,
        },
    )


def jetson_ina3221(fs: FakeSysfs) -> None:
    """A Jetson Orin Nano: INA3221 at 0x40 on i2c-1, three labelled rails, VDD_IN the board input."""
    rails = [("VDD_IN", 5072, 1256, 6280), ("VDD_CPU_GPU_CV", 5056, 352, 1760), ("VDD_SOC", 5064, 560, 2800)]
    attrs: dict[str, object] = {"name": "ina3221", "update_interval": 1100}
    for i, (label, bus_mv, curr_ma, shunt_uv) in enumerate(rails, start=1):
        attrs |= {
            f"in{i}_label": label,
            f"in{i}_input": bus_mv,
            f"in{i}_enable": 1,
            f"curr{i}_input": curr_ma,
            f"curr{i}_crit": 32760,
            f"in{i + 3}_input": shunt_uv,  # shunt voltage, µV
            f"shunt{i}_resistor": 5000,
        }
    attrs |= {"in7_input": 10840, "curr4_input": 2168}  # the summation channel: no bus voltage of its own
    fs.device("platform/bus@0/c240000.i2c/i2c-1/1-0040/hwmon/hwmon1", "hwmon", "hwmon1", attrs)
    fs.device("virtual/thermal/hwmon0", "hwmon", "hwmon0", {"name": "cpu_thermal", "temp1_input": 48250})


def rapl(fs: FakeSysfs, package_uj: int = 1_000_000, psys_uj: int | None = None) -> None:
    """Package 0 with core, uncore and dram sub-zones (and a psys platform zone when `psys_uj` is given)."""
    base = "virtual/powercap/intel-rapl"
    control = fs.root / "devices" / base
    control.mkdir(parents=True)
    (control / "enabled").write_text("1\n")
    (fs.root / "class" / "powercap").mkdir(parents=True)
    (fs.root / "class" / "powercap" / "intel-rapl").symlink_to(os.path.relpath(control, fs.root / "class/powercap"))
    zone = {"max_energy_range_uj": RAPL_MAX_RANGE_UJ, "enabled": 1}
    fs.device(f"{base}/intel-rapl:0", "powercap", "intel-rapl:0", zone | {"name": "package-0", "energy_uj": package_uj})
    for i, name in enumerate(["core", "uncore", "dram"]):
        fs.device(
            f"{base}/intel-rapl:0/intel-rapl:0:{i}",
            "powercap",
            f"intel-rapl:0:{i}",
            zone | {"name": name, "energy_uj": 100_000 * (i + 1)},
        )
    if psys_uj is not None:
        fs.device(f"{base}/intel-rapl:1", "powercap", "intel-rapl:1", zone | {"name": "psys", "energy_uj": psys_uj})


def denying_reader(*denied: str) -> Callable[[Path], str]:
    """A reader that answers EACCES for files with these names, as a root-only file does to a normal user (chmod
    cannot make that happen for root, and the tests may run as root)."""

    def read(path: Path) -> str:
        if path.name in denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return read_text_file(path)

    return read


class FakeClock:
    """A clock the test moves by hand; sources and the meter read it as time.time."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
