"""`make bench`: every benchmark, one after the other, then a summary of their ratios against the quality bars.

    .venv/bin/python -m bench.run_all [--zoo model_zoo] [--soak-minutes 10] [--results out/bench/RESULTS.md]

Each bench runs in its own process (so one's threads and memory do not skew the next) and writes its outcomes
as JSON; its output is shown as it runs. The summary lists every outcome with its target and PASS / MISS, and for
each miss, why. With --results the whole run (machine, date, summary, full output) is written as Markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import DEFAULT_ZOO, ROOT, Outcome, read_outcomes


def benches(zoo: Path, soak_minutes: float) -> list[tuple[str, list[str]]]:
    return [
        ("bench_governor", ["--zoo", str(zoo)]),
        ("bench_engines", ["--zoo", str(zoo)]),
        ("bench_mqtt", []),
        ("bench_pipeline", ["--zoo", str(zoo)]),
        ("bench_memory", ["--zoo", str(zoo), "--soak-minutes", str(soak_minutes)]),
    ]


def run_bench(module: str, arguments: list[str], outcomes: Path, transcript: list[str]) -> list[Outcome]:
    command = [sys.executable, "-m", f"bench.{module}", *arguments, "--outcomes", str(outcomes)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        print(line, end="", flush=True)
        transcript.append(line)
    if process.wait() != 0 or not outcomes.exists():
        failed = Outcome(f"{module} did not complete", float(process.returncode), 0, at_least=False, unit="exit code")
        return [failed]
    return read_outcomes(outcomes)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        found = re.search(r"^Model name:\s*(.+)$", lscpu, re.MULTILINE)
        model = found.group(1).strip() if found else model
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores (lscpu), Python {platform.python_version()}, {platform.system()}"


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def summary(outcomes: list[Outcome]) -> list[str]:
    width = max(len(o.name) for o in outcomes)
    lines = [f"{'outcome'.ljust(width)}  {'measured':>14}  {'target':>16}  result"]
    for o in outcomes:
        lines.append(f"{o.name.ljust(width)}  {o.value_text:>14}  {o.target_text:>16}  {o.verdict}")
    missed = [o for o in outcomes if o.verdict == "MISS"]
    if missed:
        lines.append("")
        lines.append("why the misses:")
        lines += [f"- {o.name}: {o.why_missed or 'not explained'}" for o in missed]
    passed = sum(o.verdict == "PASS" for o in outcomes)
    lines.append("")
    lines.append(f"{passed} PASS, {len(missed)} MISS, {sum(o.verdict == 'info' for o in outcomes)} for information")
    return lines


def write_results(
    path: Path, started: dt.datetime, minutes: float, load: str, table: list[str], out: list[str]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = [
        "# edged benchmarks",
        "",
        f"One `make bench` run, {started:%Y-%m-%d %H:%M %Z}, {minutes:.0f} minutes; commit {commit()}.",
        f"Machine: {machine()}; load average at the start: {load}.",
        "",
        "Every figure is a ratio of two things measured side by side in this run, or of a measurement to its",
        "target: the machine may be shared with other work, so absolute figures drift between",
        "runs while the ratios hold. How each is measured: the docstring of its bench (bench/*.py).",
        "",
        "## Summary",
        "",
        "```text",
        *table,
        "```",
        "",
        "## Full output",
        "",
        "```text",
        *[line.rstrip("\n") for line in out],
        "```",
        "",
    ]
    path.write_text("\n".join(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, default=DEFAULT_ZOO)
    parser.add_argument("--soak-minutes", type=float, default=10.0, help="0: skip the soak")
    parser.add_argument("--results", type=Path, help="write the run as Markdown here (e.g. bench/RESULTS.md)")
    parser.add_argument("--only", action="append", help="run only these benches (e.g. bench_mqtt)")
    args = parser.parse_args(argv)
    started, clock = dt.datetime.now().astimezone(), time.monotonic()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"edged benchmarks: {machine()}; load average {load}", flush=True)
    outcomes: list[Outcome] = []
    transcript: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as tmp:
        for module, arguments in benches(args.zoo.resolve(), args.soak_minutes):
            if args.only and module not in args.only:
                continue
            outcomes += run_bench(module, arguments, Path(tmp) / f"{module}.json", transcript)
    table = summary(outcomes)
    print("\n== summary\n" + "\n".join(table), flush=True)
    if args.results:
        write_results(args.results, started, (time.monotonic() - clock) / 60, load, table, transcript)
        print(f"\nwritten to {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
