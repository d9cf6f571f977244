"""What every benchmark reports: a ratio measured in one run, its target, PASS or MISS, and why when it misses.

This machine is shared and noisy, so an absolute figure alone means little: each outcome is a ratio of two things
measured side by side in the same run (or of a measurement to its target), with the raw figures behind it in
`detail`. A bench prints its outcomes as it goes and, given `--outcomes FILE`, writes them as JSON for
`bench.run_all`, which prints the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = ROOT / "edged" / "demo" / "vtest_10s.mp4"
DEFAULT_ZOO = ROOT / "model_zoo"
UNEXPLAINED = "no explanation found; rerun on a quiet machine to tell noise from a regression"


@dataclass(frozen=True)
class Outcome:
    """One measured figure against its target. `target` None: reported for information, nothing to pass."""

    name: str
    value: float
    target: float | None = None
    at_least: bool = True  # value >= target passes (False: value <= target passes)
    unit: str = "x"
    detail: str = ""
    why_missed: str = ""  # the reason, when known; required reading when the target is missed

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        ok = self.value >= self.target if self.at_least else self.value <= self.target
        return "PASS" if ok else "MISS"

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "-"
        return f"{'>=' if self.at_least else '<='} {_number(self.target)}{_suffix(self.unit)}"

    @property
    def value_text(self) -> str:
        return f"{_number(self.value)}{_suffix(self.unit)}"

    def line(self) -> str:
        text = f"{self.name}: {self.value_text} (target {self.target_text}) {self.verdict}"
        if self.detail:
            text += f" - {self.detail}"
        if self.verdict == "MISS":
            text += f"\n    MISSED: {self.why_missed or UNEXPLAINED}"
        return text


def _number(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 10_000:
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:.3g}"


def _suffix(unit: str) -> str:
    return "" if unit == "x" else f" {unit}"


class Reporter:
    """Prints outcomes as they come and keeps them for the JSON file."""

    def __init__(self, bench: str) -> None:
        self.bench = bench
        self.outcomes: list[Outcome] = []

    def add(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        print(f"  {outcome.line()}", flush=True)
        return outcome

    def write(self, path: Path | None) -> None:
        if path is not None:
            document = {"bench": self.bench, "outcomes": [asdict(o) for o in self.outcomes]}
            path.write_text(json.dumps(document, indent=1))


def read_outcomes(path: Path) -> list[Outcome]:
    return [Outcome(**o) for o in json.loads(path.read_text())["outcomes"]]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--outcomes", type=Path, help="write the outcomes here as JSON (for bench.run_all)")


def heading(text: str) -> None:
    print(f"\n== {text}", flush=True)


def fail(message: str) -> None:
    """A bench that cannot run at all (no broker, no zoo) says why and exits non-zero."""
    print(f"bench: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)
