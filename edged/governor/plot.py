"""`--plot`: battery, chosen variant and floor over time, one row per policy (matplotlib, from the [tools] extra)."""

from __future__ import annotations

from pathlib import Path

from edged.errors import MissingExtraError
from edged.governor.simulate import Simulation


def plot_simulation(simulation: Simulation, path: Path) -> None:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("matplotlib", "tools", "governor simulate --plot") from None
    report, world = simulation.report, simulation.world
    rows = len(simulation.runs)
    figure = Figure(figsize=(11, 2.1 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    accuracies = sorted({v.accuracy for v in world.variants})
    names = {v.accuracy: v.id for v in world.variants}
    cutoff = world.scenario.battery.cutoff_pct
    for ax, run in zip(axes, simulation.runs):
        result, trace = run.result, run.trace
        ax.plot(trace.minutes, trace.battery_pct, color="tab:blue", linewidth=1.2, label="battery %")
        ax.axhline(cutoff, color="tab:blue", linestyle=":", linewidth=0.8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("battery %", color="tab:blue")
        right = ax.twinx()
        right.step(trace.minutes, trace.accuracy, where="post", color="tab:orange", linewidth=1.2, label="variant")
        right.step(trace.minutes, trace.floor, where="post", color="tab:red", linestyle="--", label="floor")
        right.set_ylim(0, max([*accuracies, max(trace.floor, default=0.0)]) * 1.15)
        right.set_yticks(accuracies, [f"{names[a]} {a:.3f}" for a in accuracies], fontsize=7)
        outcome = "completed" if result.mission_completed else f"FAILED at {result.failed_at_min:.0f} min"
        versus = f", {result.vs_oracle:.1%} of oracle" if result.vs_oracle is not None else ""
        ax.set_title(
            f"{result.policy}: accuracy {result.time_weighted_accuracy:.3f}{versus}; {outcome}; "
            f"{result.switches} switches",
            fontsize=9,
            loc="left",
        )
    axes[-1].set_xlabel("mission time (min)")
    handles = [*axes[0].get_legend_handles_labels()[0], *axes[0].figure.axes[rows].get_legend_handles_labels()[0]]
    figure.legend(handles=handles, loc="outside upper right", fontsize=8, ncols=3)
    figure.suptitle(f"{report.scenario} (simulated)", fontsize=11, x=0.01, ha="left")
    figure.savefig(path, dpi=110)
