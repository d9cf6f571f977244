"""`--plot`: battery, chosen variant, fps and floor over time, one row per policy, with the disturbances shaded
(extra loads, slow-downs, harvest), so a phase at reduced fps or a burst is seen, not guessed
(matplotlib, from the [tools] extra)."""

from __future__ import annotations

from pathlib import Path

from edged.errors import MissingExtraError
from edged.governor.simulate import Simulation
from edged.governor.world import World

SHADES = {"extra load": "tab:purple", "slow-down": "tab:orange", "harvest": "tab:green"}


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
        fps_axis = ax.twinx()
        fps_axis.plot(trace.minutes, trace.fps, color="0.35", linewidth=0.7, alpha=0.8, label="fps")
        policy = world.scenario.governor
        fps_axis.set_ylim(0, policy.fps_target * 1.6)
        fps_axis.set_yticks(
            [policy.fps_min, policy.fps_target], [f"{policy.fps_min:g} fps", f"{policy.fps_target:g} fps"], fontsize=6
        )
        fps_axis.tick_params(axis="y", direction="in", pad=-28, colors="0.35")
        _shade_disturbances(ax, world)
        outcome = "completed" if result.mission_completed else f"FAILED at {result.failed_at_min:.0f} min"
        versus = f", {result.vs_oracle:.1%} of oracle" if result.vs_oracle is not None else ""
        ax.set_title(
            f"{result.policy}: accuracy {result.time_weighted_accuracy:.3f}{versus}; {outcome}; "
            f"{result.switches} switches",
            fontsize=9,
            loc="left",
        )
    axes[-1].set_xlabel("mission time (min)")
    handles = [handle for a in figure.axes for handle in a.get_legend_handles_labels()[0]]
    unique = {handle.get_label(): handle for handle in handles}
    figure.legend(handles=list(unique.values()), loc="outside upper right", fontsize=8, ncols=4)
    figure.suptitle(f"{report.scenario} (simulated)", fontsize=11, x=0.01, ha="left")
    figure.savefig(path, dpi=110)


def _shade_disturbances(ax: object, world: World) -> None:
    """Shade the minutes when something the policies are not told about happens to the device."""
    active = {
        "extra load": [w > 0 for w in world.load_w],
        "slow-down": [f != 1.0 or e != 1.0 for f, e in zip(world.latency_factor, world.energy_factor)],
        "harvest": [w > 0 for w in world.harvest_w],
    }
    for name, flags in active.items():
        for start, end in _runs(flags):
            ax.axvspan(  # type: ignore[attr-defined]
                world.times_s[start] / 60,
                (world.times_s[end - 1] + world.step_s) / 60,
                color=SHADES[name],
                alpha=0.12,
                linewidth=0,
                label=name,
            )


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """[start, end) index ranges where `flags` is true."""
    runs, start = [], None
    for k, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = k
        elif not flag and start is not None:
            runs.append((start, k))
            start = None
    return runs
