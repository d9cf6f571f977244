"""`edged power probe`: which power and battery sources this device has, and a reading from each."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    power = commands.add_parser(
        "power", help="power and battery sources", description="Inspect the power and battery sources."
    )
    sub = power.add_subparsers(title="power commands", metavar="POWER_COMMAND")
    p = sub.add_parser(
        "probe",
        help="every power/battery source found, with a reading, or why it cannot be read",
        description="Auto-detect every power and battery source (power_supply, RAPL, INA hwmon sensors, "
        "the Raspberry Pi 5 PMIC, MAVLink, psutil), read each, and say why the others are missing or "
        "unreadable. With -c, probe the sources the config lists instead (an empty list: auto-detect).",
    )
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.add_argument(
        "--sysfs-root",
        type=Path,
        default=Path("/sys"),
        metavar="DIR",
        help="where sysfs is (default /sys); point it at a copied tree to inspect another device's",
    )
    p.add_argument(
        "--listen",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds to listen for MAVLink on udpin:0.0.0.0:14550 (default 1; 0: don't)",
    )
    p.add_argument("-c", "--config", type=Path, help="probe the sources of this config's `power.sources`")
    p.set_defaults(handler=_run_power_probe)
    power.set_defaults(handler=lambda _args: power.print_help() or 2)


def _run_power_probe(args: argparse.Namespace) -> int:
    from edged.power.probe import probe, render_probe
    from edged.power.sources import SourceContext

    configs = None
    if args.config is not None:
        from edged.config import load_config

        configs = load_config(args.config).power.sources
    report = probe(SourceContext(sysfs_root=args.sysfs_root, listen_s=max(0.0, args.listen)), configs)
    print(report.model_dump_json(indent=2) if args.json else render_probe(report))
    return 0
