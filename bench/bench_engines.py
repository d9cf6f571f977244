"""Every variant on every engine it has a file for, in one `zoo profile` run (rounds alternate), and each int8
variant against its float parent, both on their fastest engine: int8 must be <= 0.70x its parent's p50.

    .venv/bin/python -m bench.bench_engines [--zoo model_zoo] [--runs 200] [--threads 2] [--markdown FILE]

Energy is estimated (latency x an assumed 5 W) unless a power meter is found: it orders the engines as latency
does. The table is what README's "variant x engine" table is made from (--markdown writes it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import DEFAULT_ZOO, Outcome, Reporter, add_common_arguments, fail, heading

INT8_TARGET = 0.70


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, default=DEFAULT_ZOO)
    parser.add_argument("--runs", type=int, default=200, help="timed runs per variant and engine")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", type=Path, help="write the variant x engine table here")
    add_common_arguments(parser)
    args = parser.parse_args()

    from edged.errors import EdgedError
    from edged.zoo.manifest import load_zoo
    from edged.zoo.profile import AssumedPowerMeter, ProfileSettings, device_class, profile_zoo

    try:
        zoo = load_zoo(args.zoo)
    except EdgedError as exc:
        fail(str(exc))
    heading(f"engines: {zoo.manifest.family}, {args.threads} threads, {args.runs} runs per variant and engine")
    settings = ProfileSettings(runs=args.runs, threads=args.threads, device_class=device_class())
    meter = AssumedPowerMeter()
    report = profile_zoo(zoo, [v.id for v in zoo.variants], settings, meter, progress=False)
    table = engine_table(report)
    print(table, flush=True)
    if args.markdown:
        args.markdown.write_text(table + "\n", encoding="utf-8")

    reporter = Reporter("bench_engines")
    profiles = {v.variant: v.profile for v in report.variants}
    for variant in zoo.variants:
        parent = variant.provenance.parent
        if "int8" not in variant.technique or parent not in profiles:
            continue
        mine, theirs = profiles[variant.id], profiles[parent]
        assert mine.latency is not None and theirs.latency is not None
        reporter.add(
            Outcome(
                f"{variant.id} p50 / {parent} p50",
                mine.latency.p50_ms / theirs.latency.p50_ms,
                INT8_TARGET,
                at_least=False,
                detail=f"{mine.latency.p50_ms:.2f} ms on {mine.engine} vs {theirs.latency.p50_ms:.2f} ms on "
                f"{theirs.engine}",
                why_missed="int8 kernels gain little on layers this thin; the family build leaves such a variant out",
            )
        )
    reporter.write(args.outcomes)
    return 0


def engine_table(report) -> str:  # type: ignore[no-untyped-def]
    """Markdown: one row per variant, p50 and estimated energy on each engine, the fastest in bold."""
    engines = sorted({e for v in report.variants for e in v.profile.engines})
    header = ["variant", "technique", *(f"{e} p50 ms" for e in engines), "fastest", "mJ/frame (est.)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for v in report.variants:
        p = v.profile
        cells = []
        for engine in engines:
            latency = p.engines.get(engine)
            text = "-" if latency is None else f"{latency.p50_ms:.2f}"
            cells.append(f"**{text}**" if engine == p.engine else text)
        energy = f"{p.energy.mj_per_inference:.1f}" if p.energy else "-"
        lines.append(f"| `{v.variant}` | {v.technique} | " + " | ".join(cells) + f" | {p.engine} | {energy} |")
    lines.append("")
    lines.append(
        f"{report.device_class} ({report.cpu}), {report.threads} threads, {report.runs} runs per variant and engine, "
        "rounds alternating; energy ESTIMATED as latency x 5 W (no power meter)."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
