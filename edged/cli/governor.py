"""`edged governor simulate`: replay a mission scenario under several policies and the offline oracle."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    governor = commands.add_parser(
        "governor",
        help="the power governor: simulate missions",
        description="Work with the governor that picks the variant and fps.",
    )
    sub = governor.add_subparsers(title="governor commands", metavar="GOVERNOR_COMMAND")
    p = sub.add_parser(
        "simulate",
        help="replay a scenario; compare policies with the offline oracle",
        description="Replay a mission scenario (battery, mission length, accuracy floors, slow-downs, meter "
        "bias and noise, variant figures) under always-most-accurate, always-cheapest, battery-bands, the "
        "governor and an offline oracle (dynamic programming over time x energy that knows the whole mission). "
        "Every figure printed is simulated.",
        epilog="example: edged governor simulate --scenario deploy/scenarios/drone-survey.yaml --plot drone.png",
    )
    p.add_argument("--scenario", type=Path, required=True, help="scenario YAML (see deploy/scenarios/)")
    p.add_argument("--json", action="store_true", help="one JSON document (edged.governor.simulation/v1)")
    p.add_argument("--plot", type=Path, metavar="PNG", help="battery, variant and floor over time per policy")
    p.set_defaults(handler=_run_simulate)
    governor.set_defaults(handler=lambda _args: governor.print_help() or 2)


def _run_simulate(args: argparse.Namespace) -> int:
    from edged.governor.report import render_report
    from edged.governor.scenario import load_scenario
    from edged.governor.simulate import simulate

    loaded = load_scenario(args.scenario)
    simulation = simulate(loaded)
    if args.plot:
        from edged.governor.plot import plot_simulation

        plot_simulation(simulation, args.plot)
    if args.json:
        print(simulation.report.model_dump_json(indent=2))
    else:
        print(render_report(simulation.report))
        if args.plot:
            print(f"\nplot: {args.plot}")
    return 0
