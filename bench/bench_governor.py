"""Governor decision time: `decide` p50/p99 over many generated inputs, and its CPU share at the daemon's 1 s tick.

    .venv/bin/python -m bench.bench_governor [--zoo model_zoo] [--ticks 20000]

The inputs are a generated mission replayed tick by tick, as the daemon would feed them: a battery draining with
gauge noise, measured power and latency with noise, accuracy floors that come and go, and every policy mode, each
with and without a known mission end (the budgeting path is the expensive one). The state is threaded from one
tick to the next, so the corrections and hysteresis do their real work. The variants are the zoo's profiles, and
a synthetic family of 24 for scale. Targets: p99 < 1 ms per decision; CPU share = CPU time per tick / 1 s tick.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import DEFAULT_ZOO, Outcome, Reporter, add_common_arguments, fail, heading
from edged.daemon import TICK_S
from edged.errors import EdgedError
from edged.governor import (
    GovernorConfig,
    GovernorInputs,
    GovernorState,
    VariantProfile,
    decide,
    profiles_from_variants,
)
from edged.zoo.manifest import load_zoo

DECISION_TARGET_MS = 1.0
CPU_SHARE_TARGET = DECISION_TARGET_MS / 1000.0 / TICK_S  # what a 1 ms decision costs per tick


def zoo_profiles(zoo: Path) -> tuple[list[VariantProfile], str]:
    """The complete profiles (accuracy, latency, energy) of the device class that has the most of them."""
    loaded = load_zoo(zoo, verify_files=False)
    classes = sorted({key for variant in loaded.variants for key in variant.profiles})
    best: tuple[list[VariantProfile], str] = ([], "")
    for device_class in classes:
        complete = []
        for variant in loaded.variants:
            try:
                complete += profiles_from_variants([variant], device_class)
            except EdgedError:
                continue
        if len(complete) > len(best[0]):
            best = (complete, device_class)
    if not best[0]:
        fail(f"{zoo}: no variant has accuracy, latency and energy in any device class")
    return best


def synthetic_family(count: int, rng: random.Random) -> list[VariantProfile]:
    variants = []
    for index in range(count):
        p50 = rng.uniform(5.0, 300.0)
        variants.append(
            VariantProfile(
                id=f"synthetic-{index}",
                accuracy=rng.uniform(0.05, 0.5),
                latency_p50_ms=p50,
                latency_p95_ms=p50 * rng.uniform(1.05, 1.6),
                energy_mj=p50 * rng.uniform(2.0, 8.0),
            )
        )
    return variants


def policies(variants: list[VariantProfile]) -> list[GovernorConfig]:
    """Every mode, with and without a known mission; bands where there is no mission."""
    bands = [{"below_pct": 50, "budget_w": 4.0}, {"below_pct": 20, "runtime_h": 0.5}]
    made = []
    for mode in ("auto", "eco", "performance", "pinned"):
        for mission in (True, False):
            fields = {
                "mode": mode,
                "pinned_variant": variants[0].id,
                "min_dwell_s": 10,
                "switch_up_margin": 0.1,
                "fps_target": 10,
                "fps_min": 2,
            }
            fields |= {"mission_minutes": 30} if mission else {"battery_bands": bands}
            made.append(GovernorConfig.model_validate(fields))
    return made


def mission_inputs(ticks: int, variants: list[VariantProfile], rng: random.Random) -> list[dict[str, object]]:
    """One tick's raw readings each; `now_s` advances by the tick, the battery drains, the needs change."""
    capacity, energy, floor, floor_until = 20.0, 20.0, None, None
    readings = []
    for tick in range(ticks):
        now = tick * TICK_S
        power = max(0.1, rng.gauss(5.0, 1.5))
        energy = max(0.0, energy - power * TICK_S / 3600.0)
        if energy <= 0.5:
            energy = capacity  # a fresh battery: the mission starts again
        if rng.random() < 0.01:
            floor, floor_until = rng.choice([None, 0.1, 0.2, 0.3, 0.9]), now + rng.uniform(10, 300)
        variant = rng.choice(variants)
        readings.append(
            {
                "now_s": now,
                "battery_wh": energy,
                "battery_pct": round(100 * energy / capacity, 1),
                "battery_capacity_wh": capacity,
                "charging": rng.random() < 0.02,
                "power_w": power,
                "latency_ms": variant.latency_p50_ms * rng.uniform(0.8, 1.6),
                "measured_variant": variant.id,
                "inference_fps": rng.uniform(1.0, 10.0),
                "accuracy_floor": floor,
                "floor_expires_s": floor_until,
                "mission_end_s": 1800.0 * (1 + tick // 1800),
            }
        )
    return readings


def time_decisions(
    variants: list[VariantProfile], readings: list[dict[str, object]]
) -> tuple[list[float], float, float]:
    """Per decision: wall ms of `decide` alone; and CPU seconds per tick of a whole tick (inputs + decide)."""
    decide_ms: list[float] = []
    all_policies = policies(variants)
    per_policy = len(readings) // len(all_policies)
    cpu_started, ticks = time.process_time(), 0
    for number, policy in enumerate(all_policies):
        state = GovernorState()
        for raw in readings[number * per_policy : (number + 1) * per_policy]:
            if policy.mission_minutes is None:
                raw = {**raw, "mission_end_s": None}
            inputs = GovernorInputs.model_validate(raw)  # the daemon builds these each tick too
            started = time.perf_counter_ns()
            _, state = decide(policy, variants, state, inputs)
            decide_ms.append((time.perf_counter_ns() - started) / 1e6)
            ticks += 1
    cpu_per_tick = (time.process_time() - cpu_started) / ticks
    return decide_ms, cpu_per_tick, statistics.fmean(decide_ms)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def bench_family(reporter: Reporter, label: str, variants: list[VariantProfile], ticks: int, seed: int) -> None:
    rng = random.Random(seed)
    readings = mission_inputs(ticks, variants, rng)
    time_decisions(variants, readings[: min(500, ticks)])  # warm the interpreter's caches
    decide_ms, cpu_per_tick, mean_ms = time_decisions(variants, readings)
    p50, p99 = percentile(decide_ms, 0.5), percentile(decide_ms, 0.99)
    detail = f"{len(decide_ms)} decisions, {len(variants)} variants; p50 {p50:.3f} ms, mean {mean_ms:.3f} ms"
    reporter.add(
        Outcome(
            f"governor decide p99 / 1 ms, {label}",
            p99 / DECISION_TARGET_MS,
            1.0,
            at_least=False,
            detail=f"p99 {p99:.3f} ms; {detail}",
            why_missed="decisions slower than 1 ms at p99: profile `decide` (edged/governor/decision.py)",
        )
    )
    reporter.add(
        Outcome(
            f"governor CPU share at the {TICK_S:g} s tick, {label}",
            100 * cpu_per_tick / TICK_S,
            100 * CPU_SHARE_TARGET,
            at_least=False,
            unit="% of a core",
            detail=f"{cpu_per_tick * 1e3:.3f} ms CPU per tick (building the inputs + decide) / {TICK_S:g} s",
            why_missed="a tick costs more CPU than a 1 ms decision would",
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", type=Path, default=DEFAULT_ZOO)
    parser.add_argument("--ticks", type=int, default=16_000)
    parser.add_argument("--seed", type=int, default=7)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    reporter = Reporter("governor")
    heading("governor: decision time and CPU share")
    profiles, device_class = zoo_profiles(args.zoo)
    bench_family(reporter, f"{args.zoo.name} ({device_class})", profiles, args.ticks, args.seed)
    bench_family(
        reporter, "24 synthetic variants", synthetic_family(24, random.Random(args.seed)), args.ticks, args.seed
    )
    reporter.write(args.outcomes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
