"""What people read from `edged governor simulate`: the comparison table, the figures' provenance, the bars."""

from __future__ import annotations

from edged.governor.simulate import PolicyResult, SimulationReport

SHOWN_DECISIONS = 6


def render_report(report: SimulationReport) -> str:
    lines = [f"{report.scenario}  ({report.file}; {report.mission_min:g} min, step {report.step_s:g} s)"]
    if report.description:
        lines.append(report.description)
    lines.append("")
    lines.append("figures: SIMULATED from the scenario; what they rest on:")
    lines += [f"  - {line}" for line in report.variant_figures + report.assumptions]
    lines.append("")
    lines.append(render_table(report.policies))
    lines.append("")
    lines.append(_bars(report))
    lines += _decisions(report.policy("governor"))
    return "\n".join(lines)


def render_table(policies: list[PolicyResult]) -> str:
    header = ["policy", "accuracy", "vs oracle", "mission", "below floor", "over SLO", "energy", "end", "switches"]
    rows = [
        [
            p.policy,
            f"{p.time_weighted_accuracy:.4f}",
            f"{p.vs_oracle:.3f}" if p.vs_oracle is not None else "-",
            "completed" if p.mission_completed else f"FAILED at {p.failed_at_min:.1f} min",
            f"{p.floor_violation_min:.1f} min",
            f"{p.latency_violation_min:.1f} min",
            f"{p.energy_used_wh:.2f} Wh",
            f"{p.battery_end_pct:.1f}%",
            str(p.switches),
        ]
        for p in policies
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    out.insert(1, "  ".join("-" * w for w in widths))
    out.append("accuracy: time-weighted mAP50-95 of the running variant × delivered/target fps; 0 after a failure")
    out.append(
        "oracle: the best a policy can do that completes the mission and keeps floor and SLO; "
        "a policy that fails can score above it"
    )
    return "\n".join(out)


def _bars(report: SimulationReport) -> str:
    bars = report.quality_bars
    ratio = f"{bars.governor_vs_oracle:.3f}" if bars.governor_vs_oracle is not None else "n/a"
    met = "met" if bars.accuracy_met else "NOT met"
    completes = "yes" if bars.completes_when_oracle_does else "NO"
    return (
        f"governor / oracle accuracy: {ratio} (bar ≥ {bars.accuracy_bar:g}: {met}); "
        f"completes whenever the oracle does, keeping the floor as long: {completes} "
        f"(below floor {bars.governor_below_floor_min:.1f} min vs the oracle's {bars.oracle_below_floor_min:.1f})"
    )


def _decisions(governor: PolicyResult) -> list[str]:
    if not governor.switch_log:
        return []
    shown = governor.switch_log[:SHOWN_DECISIONS]
    lines = ["", f"governor switches (first {len(shown)} of {governor.switches}):"]
    lines += [f"  {e.at_min:7.1f} min  {e.reason}" for e in shown]
    return lines
