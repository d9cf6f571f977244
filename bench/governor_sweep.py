"""How robust the governor is to missions it was not shaped on: every shipped scenario with other noise seeds and
other starting charges, governor / oracle for each.

    .venv/bin/python -m bench.governor_sweep [--seeds 0 1 2] [--start-offsets -5 0 5]

All figures simulated (deploy/scenarios/README.md). About 40 s on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edged.governor.scenario import LoadedScenario, load_scenario  # noqa: E402
from edged.governor.simulate import ACCURACY_BAR, simulate  # noqa: E402


def variations(loaded: LoadedScenario, seeds: list[int], offsets: list[float]) -> list[tuple[str, LoadedScenario]]:
    out = []
    for seed, offset in itertools.product(seeds, offsets):
        scenario = loaded.scenario
        start = min(100.0, scenario.battery.start_pct + offset)
        if start <= scenario.battery.cutoff_pct:
            continue
        changed = scenario.model_copy(
            update={
                "simulation": scenario.simulation.model_copy(update={"seed": seed}),
                "battery": scenario.battery.model_copy(update={"start_pct": start}),
            }
        )
        out.append((f"seed {seed}, start {start:g}%", LoadedScenario(changed, loaded.variants, loaded.path, [])))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--start-offsets", type=float, nargs="+", default=[-5.0, 0.0, 5.0])
    args = parser.parse_args()
    print("| scenario | worst governor / oracle (where) | mean | below the bar | completes whenever the oracle does |")
    print("|---|---|---|---|---|")
    for path in sorted((ROOT / "deploy" / "scenarios").glob("*.yaml")):
        results = []
        for where, loaded in variations(load_scenario(path), args.seeds, args.start_offsets):
            report = simulate(loaded).report
            results.append((report.quality_bars.governor_vs_oracle or 0.0, where, report.quality_bars))
        worst = min(results, key=lambda r: r[0])
        mean = sum(r[0] for r in results) / len(results)
        below = sum(r[0] < ACCURACY_BAR for r in results)
        completes = all(r[2].completes_when_oracle_does for r in results)
        print(f"| {path.stem} | {worst[0]:.3f} ({worst[1]}) | {mean:.3f} | {below} of {len(results)} | {completes} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
