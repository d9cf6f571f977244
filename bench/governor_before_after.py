"""The governor before and after a change, on the same simulated missions: every scenario in deploy/scenarios.

    .venv/bin/python -m bench.governor_before_after [--before d1fbdc8] [--markdown]

"Before" is the governor of an earlier commit (its decision, correction, budget and config modules, read with
`git show` into a throw-away package), driven by today's simulator: the same world, the same noise, the same oracle.
Today's scenario features it does not know (extra loads, the pipeline's per-frame overhead) still happen to the
device; it is only not told about the overhead, as it could not be. Every figure is simulated (see
deploy/scenarios/README.md for what the scenarios assume).
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edged.governor.oracle import plan  # noqa: E402
from edged.governor.scenario import load_scenario  # noqa: E402
from edged.governor.simulate import GovernorPolicy, Observation, PolicyResult, run_policy  # noqa: E402
from edged.governor.world import World, build_world  # noqa: E402

OLD_MODULES = ("config", "correction", "budget", "decision", "governor", "needs", "profiles")
BEFORE_PACKAGE = "governor_before"


def import_before(ref: str, into: Path) -> object:
    """The governor package of commit `ref`, importable as `governor_before`."""
    package = into / BEFORE_PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in OLD_MODULES:
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{ref}:edged/governor/{name}.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (package / f"{name}.py").write_text(text.replace("edged.governor.", f"{BEFORE_PACKAGE}."))
    sys.path.insert(0, str(into))
    return importlib.import_module(f"{BEFORE_PACKAGE}.governor")


class BeforePolicy(GovernorPolicy):
    """Today's simulation harness around the earlier governor."""

    def __init__(self, world: World, module: object) -> None:
        super().__init__(world)
        decision = importlib.import_module(f"{BEFORE_PACKAGE}.decision")
        config = importlib.import_module(f"{BEFORE_PACKAGE}.config")
        profiles = importlib.import_module(f"{BEFORE_PACKAGE}.profiles")
        known = set(config.GovernorConfig.model_fields)
        settings = world.scenario.governor.model_dump(include=known, exclude={"correction"})
        old_correction = set(config.CorrectionConfig.model_fields)
        settings["correction"] = world.scenario.governor.correction.model_dump(include=old_correction)
        fields = set(profiles.VariantProfile.model_fields)
        variants = [profiles.VariantProfile.model_validate(v.model_dump(include=fields)) for v in world.variants]
        self.governor = module.Governor(config.GovernorConfig.model_validate(settings), variants)  # type: ignore[attr-defined]
        self.inputs = decision.GovernorInputs

    def act(self, seen: Observation) -> tuple[int, float]:
        decision = self.governor.tick(self.inputs(**self.observed(seen)))  # it knows no per-frame overhead
        return self.index[decision.variant], decision.fps


def compare(ref: str) -> list[tuple[str, PolicyResult, PolicyResult, PolicyResult]]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        module = import_before(ref, Path(scratch))
        for path in sorted((ROOT / "deploy" / "scenarios").glob("*.yaml")):
            world = build_world(load_scenario(path))
            oracle_plan = plan(world)
            from edged.governor.simulate import OraclePolicy

            oracle = run_policy(world, OraclePolicy(world, oracle_plan)).result
            before = run_policy(world, BeforePolicy(world, module)).result
            after = run_policy(world, GovernorPolicy(world)).result
            rows.append((path.stem, before, after, oracle))
    return rows


def cell(result: PolicyResult, oracle: PolicyResult) -> str:
    ratio = result.time_weighted_accuracy / oracle.time_weighted_accuracy
    done = "" if result.mission_completed else f", FAILED at {result.failed_at_min:.0f} min"
    return f"{ratio:.3f} ({result.switches} switches, {result.mean_fps:.1f} fps{done})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="d1fbdc8", help="the commit whose governor is 'before'")
    args = parser.parse_args()
    rows = compare(args.before)
    print(
        f"| scenario | before ({args.before}): governor / oracle | after | oracle's accuracy | below floor "
        "before / after / oracle |"
    )
    print("|---|---|---|---|---|")
    for name, before, after, oracle in rows:
        floors = (
            f"{before.floor_violation_min:.1f} / {after.floor_violation_min:.1f} / {oracle.floor_violation_min:.1f} min"
        )
        accuracy = f"{oracle.time_weighted_accuracy:.4f}"
        print(f"| {name} | {cell(before, oracle)} | {cell(after, oracle)} | {accuracy} | {floors} |")
    print("\nall figures simulated; the oracle knows the whole mission (deploy/scenarios/README.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
