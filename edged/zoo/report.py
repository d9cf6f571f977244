"""What people read about a zoo: the variant listing, the eval table, build and profile summaries, and the Pareto
report (PNG + Markdown). matplotlib is imported only when a plot is drawn (extra [tools])."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from edged.errors import EdgedError, MissingExtraError
from edged.vision.engines import EngineOptions
from edged.zoo.eval import EvalReport
from edged.zoo.manifest import DeviceProfile, Variant, Zoo

if TYPE_CHECKING:
    from edged.factory.factory import BuildReport
    from edged.zoo.profile import ProfileReport


class VariantSummary(BaseModel):
    id: str
    technique: str
    format: str
    file: str
    file_bytes: int
    sha256: str
    decoder: str
    input_size: tuple[int, int]
    tiles: tuple[int, int] | None = Field(None, description="tiled inference: tiles across, down")
    alternates: list[str] = Field(default_factory=list, description="formats of the other files (other engines)")
    labels: int = Field(description="number of classes")
    parent: str | None
    profiles: dict[str, DeviceProfile]
    check: str | None = Field(None, description="'ok' or 'failed: why' when listed with --check")


class ZooListing(BaseModel):
    """`edged zoo list --json`."""

    family: str
    manifest: str
    variants: list[VariantSummary]


def list_variants(zoo: Zoo) -> ZooListing:
    summaries = []
    for v in zoo.variants:
        path = zoo.file_of(v)
        summaries.append(
            VariantSummary(
                id=v.id,
                technique=v.technique_name,
                format=v.format,
                file=str(path),
                file_bytes=path.stat().st_size,
                sha256=v.sha256,
                decoder=v.decoder.type,
                input_size=v.input.size,
                tiles=v.input.tiles.grid if v.input.tiles else None,
                alternates=[a.format for a in v.alternates],
                labels=len(zoo.labels_of(v)),
                parent=v.provenance.parent,
                profiles=v.profiles,
            )
        )
    return ZooListing(family=zoo.manifest.family, manifest=str(zoo.path), variants=summaries)


def check_variants(zoo: Zoo, options: EngineOptions) -> dict[str, str]:
    """Open every variant; returns the failures by variant id."""
    failures = {}
    for v in zoo.variants:
        try:
            zoo.open_detector(v.id, options.model_copy(update={"warmup_runs": 0})).close()
        except EdgedError as exc:
            failures[v.id] = str(exc)
    return failures


def render_table(listing: ZooListing) -> str:
    header = ["variant", "technique", "format", "size", "input", "decoder", "mAP50-95", "p50 ms", "mJ/inf"]
    rows = []
    for v in listing.variants:
        profile = next(iter(v.profiles.values()), None)
        rows.append(
            [
                v.id,
                v.technique,
                "+".join([v.format, *v.alternates]),
                _size(v.file_bytes),
                f"{v.input_size[0]}x{v.input_size[1]}" + (f" {v.tiles[0]}x{v.tiles[1]} tiles" if v.tiles else ""),
                v.decoder,
                f"{profile.accuracy.map50_95:.3f}" if profile and profile.accuracy else "-",
                f"{profile.latency.p50_ms:.1f}" if profile and profile.latency else "-",
                _energy(profile),
            ]
        )
    title = f"{listing.family}  ({listing.manifest}, {len(rows)} variants)"
    return title + "\n" + _table(header, rows)


def render_eval_table(reports: list[EvalReport], classes: list[str] | None) -> str:
    if not reports:
        return "nothing evaluated"
    shown = classes or [c for c in ("person", "car", "bicycle") if c in reports[0].classes][:3]
    loose = list(reports[0].ap_at_iou)
    header = ["variant", "mAP50-95", "mAP50", *[f"AP@{t}" for t in loose], *[f"AP {c}" for c in shown], "ms/img"]
    rows = [
        [
            r.variant,
            f"{r.map50_95:.4f}",
            f"{r.map50:.4f}",
            *[f"{r.ap_at_iou.get(t, 0):.4f}" for t in loose],
            *[f"{r.per_class_ap.get(c, 0):.4f}" for c in shown],
            f"{r.mean_latency_ms:.1f}",
        ]
        for r in reports
    ]
    first = reports[0]
    note = (
        f"{first.eval_set}: {first.images} images, {len(first.classes)} classes scored "
        f"(score >= {first.score_threshold}, NMS IoU {first.nms_iou}, max {first.max_detections} per image)"
    )
    if first.unlabelled_images:
        note += f"; {first.unlabelled_images} images without a label file counted as background"
    return note + "\n" + _table(header, rows) + _by_size_table(reports)


def _by_size_table(reports: list[EvalReport]) -> str:
    rows = [
        [r.variant, b.name, str(b.objects), f"{b.ap50:.4f}", f"{b.recall50:.2f}"] for r in reports for b in r.by_size
    ]
    if not rows:
        return ""
    header = ["variant", "size (px, sqrt area)", "objects", "AP50", "recall@0.5"]
    return "\n\nby object size:\n" + _table(header, rows)


def _energy(profile: DeviceProfile | None) -> str:
    if not profile or not profile.energy:
        return "-"
    mark = "" if profile.energy.quality == "measured" else f" ({profile.energy.quality})"
    return f"{profile.energy.mj_per_inference:.1f}{mark}"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


# --- the variant factory, profiling and the Pareto report ---------------------------------------------------------


class ParetoPoint(BaseModel):
    variant: str
    technique: str
    format: str
    file_bytes: int | None
    params: int | None
    macs: int | None
    map50_95: float | None
    map50: float | None
    eval_set: str | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    threads: int | None
    energy_mj: float | None
    energy_quality: str | None
    energy_method: str | None
    engine: str | None = Field(None, description="the engine the figures are for: the fastest measured here")
    engines_p50_ms: dict[str, float] = Field(default_factory=dict, description="p50 on every engine measured")
    on_latency_frontier: bool = False
    on_energy_frontier: bool = False
    left_out: str | None = Field(None, description="why the variant is not plotted")
    dominated: str | None = Field(None, description="an int8 variant no faster than its float parent here")


class ParetoReport(BaseModel):
    """`edged zoo report --json`."""

    family: str
    manifest: str
    device_class: str
    eval_set: str | None
    points: list[ParetoPoint]
    png: str
    markdown_file: str
    markdown: str = Field(exclude=True)


def pareto_front(points: list[tuple[str, float, float]]) -> set[str]:
    """Ids of the (id, cost, accuracy) points no other point beats: as accurate or more for as little or less,
    and strictly better in one."""
    front = set()
    for pid, cost, acc in points:
        dominated = any(c <= cost and a >= acc and (c < cost or a > acc) for other, c, a in points if other != pid)
        if not dominated:
            front.add(pid)
    return front


def pareto_points(zoo: Zoo, device_class: str) -> tuple[list[ParetoPoint], str | None]:
    """One point per variant from its profile for `device_class`; accuracy compared on one eval set only."""
    points = [_point(zoo, v, v.profiles.get(device_class)) for v in zoo.variants]
    for variant, point in zip(zoo.variants, points):
        point.dominated = zoo.int8_not_faster(variant, device_class)
    eval_sets = Counter(p.eval_set for p in points if p.eval_set)
    eval_set = eval_sets.most_common(1)[0][0] if eval_sets else None  # a tie goes to the first variant's
    for p in points:
        if p.map50_95 is None:
            p.left_out = "no accuracy for this device class (edged zoo eval --record)"
        elif p.eval_set != eval_set:
            p.left_out = f"accuracy measured on {p.eval_set}, not {eval_set}: not comparable"
        elif p.latency_p50_ms is None:
            p.left_out = "no latency for this device class (edged zoo profile)"
    plotted = [p for p in points if p.left_out is None]
    latency_front = pareto_front([(p.variant, p.latency_p50_ms or 0.0, p.map50_95 or 0.0) for p in plotted])
    with_energy = [p for p in plotted if p.energy_mj is not None]
    energy_front = pareto_front([(p.variant, p.energy_mj or 0.0, p.map50_95 or 0.0) for p in with_energy])
    for p in plotted:
        p.on_latency_frontier = p.variant in latency_front
        p.on_energy_frontier = p.variant in energy_front
    return points, eval_set


def choose_device_class(zoo: Zoo, wanted: str | None) -> str:
    """The asked-for class; else this device's if the zoo has it; else the only one there is."""
    from edged.zoo.profile import device_class

    known = sorted({key for v in zoo.variants for key in v.profiles})
    if wanted:
        if wanted not in known:
            raise EdgedError(
                f"{zoo.path}: no profiles for device class '{wanted}' (have: {', '.join(known) or 'none'})"
            )
        return wanted
    if not known:
        raise EdgedError(
            f"{zoo.path}: no variant has a profile yet: run `edged zoo eval --record` and `edged zoo profile` first"
        )
    here = device_class()
    if here in known:
        return here
    if len(known) == 1:
        return known[0]
    raise EdgedError(
        f"{zoo.path}: profiles for several device classes ({', '.join(known)}): pick one with --device-class"
    )


def write_pareto_report(zoo: Zoo, out: Path, device_class: str | None = None) -> ParetoReport:
    """pareto.png and pareto.md in `out`: the pictures people look at first."""
    key = choose_device_class(zoo, device_class)
    points, eval_set = pareto_points(zoo, key)
    title = f"{zoo.manifest.family} on {key}"
    markdown = render_pareto_markdown(points, title, eval_set)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "pareto.md").write_text(markdown + "\n", encoding="utf-8")
    except OSError as exc:
        raise EdgedError(f"{out}: cannot write the report: {exc}") from None
    plot_pareto(points, out / "pareto.png", title, eval_set)
    return ParetoReport(
        family=zoo.manifest.family,
        manifest=str(zoo.path),
        device_class=key,
        eval_set=eval_set,
        points=points,
        png=str(out / "pareto.png"),
        markdown_file=str(out / "pareto.md"),
        markdown=markdown,
    )


def render_pareto_markdown(points: list[ParetoPoint], title: str, eval_set: str | None) -> str:
    header = ["variant", "technique", "size", "params", "MACs", "mAP50-95", "mAP50", "engine", "p50 ms", "p95 ms"]
    header += ["mJ/inference", "Pareto (latency / energy)"]
    rows = []
    for p in points:
        front = ", ".join(n for n, on in (("latency", p.on_latency_frontier), ("energy", p.on_energy_frontier)) if on)
        if p.dominated:
            front = (front + "; " if front else "") + "int8 not faster than its parent: not offered to the governor"
        rows.append(
            [
                f"`{p.variant}`",
                p.technique,
                _size(p.file_bytes) if p.file_bytes is not None else "-",
                _count(p.params),
                _count(p.macs),
                _fixed(p.map50_95, 4),
                _fixed(p.map50, 4),
                p.engine or p.format,
                _fixed(p.latency_p50_ms, 2),
                _fixed(p.latency_p95_ms, 2),
                "-"
                if p.energy_mj is None
                else f"{p.energy_mj:.3f}" + ("" if p.energy_quality == "measured" else f" ({p.energy_quality})"),
                front or (f"not plotted: {p.left_out}" if p.left_out else "-"),
            ]
        )
    lines = [f"## {title}", ""]
    lines.append(f"Accuracy: COCO mAP on {eval_set}." if eval_set else "Accuracy: not measured yet.")
    methods = sorted({p.energy_method for p in points if p.energy_method and p.energy_quality != "measured"})
    lines += [f"Energy {m}." for m in methods]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", render_engines_markdown(points)] if any(p.engines_p50_ms for p in points) else []
    return "\n".join(lines)


def render_engines_markdown(points: list[ParetoPoint]) -> str:
    """Every engine side by side: p50 of each variant on each engine measured, the fastest in bold."""
    engines = sorted({e for p in points for e in p.engines_p50_ms})
    lines = ["### p50 ms on each engine (the fastest, in bold, is the one edged opens here)", ""]
    lines += ["| variant | " + " | ".join(engines) + " |", "|---|" + "---|" * len(engines)]
    for p in points:
        if not p.engines_p50_ms:
            continue
        cells = []
        for engine in engines:
            ms = p.engines_p50_ms.get(engine)
            cells.append("-" if ms is None else f"**{ms:.2f}**" if engine == p.engine else f"{ms:.2f}")
        lines.append(f"| `{p.variant}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_pareto(points: list[ParetoPoint], png: Path, title: str, eval_set: str | None) -> None:
    """Accuracy vs energy per inference and vs latency, the frontier drawn, every point labelled."""
    plt = _pyplot()
    plotted = [p for p in points if p.left_out is None]
    estimated = any(p.energy_quality != "measured" for p in plotted if p.energy_mj is not None)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), constrained_layout=True)
    energy_label = "energy per inference, mJ" + (" (ESTIMATED, not measured)" if estimated else " (measured)")
    _pareto_panel(axes[0], plotted, "energy_mj", "on_energy_frontier", energy_label, eval_set)
    _pareto_panel(axes[1], plotted, "latency_p50_ms", "on_latency_frontier", "latency p50, ms (model only)", eval_set)
    fig.suptitle(title)
    try:
        fig.savefig(png, dpi=110)
    except OSError as exc:
        raise EdgedError(f"{png}: cannot write the plot: {exc}") from None
    finally:
        plt.close(fig)


def _pareto_panel(ax: Any, points: list[ParetoPoint], cost: str, front: str, xlabel: str, eval_set: str | None) -> None:
    shown = [p for p in points if getattr(p, cost) is not None]
    for on_front, colour, label in ((True, "tab:blue", "on the Pareto frontier"), (False, "tab:gray", "dominated")):
        group = [p for p in shown if getattr(p, front) == on_front]
        if group:
            xs = [getattr(p, cost) for p in group]
            ax.scatter(xs, [p.map50_95 for p in group], s=60, color=colour, zorder=3, label=label)
    for p in shown:
        ax.annotate(
            f"{p.variant}\n{p.technique}",
            (getattr(p, cost), p.map50_95),
            fontsize=8,
            textcoords="offset points",
            xytext=(6, 4),
        )
    frontier = sorted((getattr(p, cost), p.map50_95) for p in shown if getattr(p, front))
    if frontier:  # a staircase: the best accuracy each cost buys, up to the costliest variant shown
        xs, ys = [x for x, _ in frontier], [y for _, y in frontier]
        xs.append(max(getattr(p, cost) for p in shown))
        ys.append(ys[-1])
        ax.step(xs, ys, where="post", color="tab:blue", linewidth=1.2, alpha=0.7)
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "nothing measured", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"mAP50-95 on {eval_set}" if eval_set else "mAP50-95")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.25, y=0.15)


def render_build(report: BuildReport) -> str:
    header = ["#", "candidate", "mAP50-95", "mAP50", "drop", "size", "guard"]
    rows = [
        [
            str(i + 1),
            c.description,
            f"{c.map50_95:.4f}",
            f"{c.map50:.4f}",
            f"{c.drop:+.4f}",
            _size(c.file_bytes),
            "ok" if c.within_guard else f"> {report.max_drop}",
        ]
        for i, c in enumerate(report.candidates)
    ]
    lines = [
        f"{report.parent} -> {report.variant} ({report.technique}) on {report.eval_set} "
        f"({report.eval_images} images); calibration: {report.calibration}",
        f"parent: mAP50-95 {report.parent_map50_95:.4f}, mAP50 {report.parent_map50:.4f}, "
        f"{_size(report.parent_file_bytes)}",
        _table(header, rows),
        "",
        report.message,
    ]
    lines += [f"  {note}" for note in report.chosen.notes]
    lines += [f"  quantizer warning: {w}" for w in report.chosen.quantizer_warnings]
    lines += [f"note: {note}" for note in report.notes]
    if report.file:
        lines.append(
            f"wrote {report.file} ({_size(report.file_bytes or 0)}, {report.size_ratio}x smaller) and {report.manifest}"
        )
    return "\n".join(lines)


def render_profile(report: ProfileReport) -> str:
    header = ["variant", "technique", "size", "params", "MACs", "engine", "p50 ms", "p95 ms", "mJ/inference"]
    header.append("p50 ms on every engine")
    rows = []
    for v in report.variants:
        p = v.profile
        rows.append(
            [
                v.variant,
                v.technique,
                _size(p.file_bytes or 0),
                _count(p.params),
                _count(p.macs),
                p.engine or "-",
                _fixed(p.latency.p50_ms if p.latency else None, 2),
                _fixed(p.latency.p95_ms if p.latency else None, 2),
                _energy(p),
                ", ".join(f"{engine} {latency.p50_ms:.2f}" for engine, latency in p.engines.items()) or "-",
            ]
        )
    lines = [
        f"{report.device_class} ({report.cpu}), {report.threads} threads, {report.runs} runs per variant and engine",
        _table(header, rows),
    ]
    methods = sorted({v.profile.energy.method for v in report.variants if v.profile.energy})
    lines += [f"energy {m}" for m in methods]
    lines += [f"{v.variant}: {note}" for v in report.variants for note in v.notes]
    lines.append(f"saved in {report.manifest}" if report.saved else "not saved (--no-save)")
    return "\n".join(lines)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files, never a window: this runs on headless devices and in CI
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtraError("matplotlib", "tools", "edged zoo report") from None
    return plt


def _point(zoo: Zoo, variant: Variant, profile: DeviceProfile | None) -> ParetoPoint:
    p = profile or DeviceProfile()
    return ParetoPoint(
        variant=variant.id,
        technique=variant.technique_name,
        format=variant.format,
        file_bytes=p.file_bytes if p.file_bytes is not None else _file_size(zoo, variant),
        params=p.params,
        macs=p.macs,
        map50_95=p.accuracy.map50_95 if p.accuracy else None,
        map50=p.accuracy.map50 if p.accuracy else None,
        eval_set=p.accuracy.eval_set if p.accuracy else None,
        latency_p50_ms=p.latency.p50_ms if p.latency else None,
        latency_p95_ms=p.latency.p95_ms if p.latency else None,
        threads=p.latency.threads if p.latency else None,
        energy_mj=p.energy.mj_per_inference if p.energy else None,
        energy_quality=p.energy.quality if p.energy else None,
        energy_method=p.energy.method if p.energy else None,
        engine=p.engine,
        engines_p50_ms={engine: latency.p50_ms for engine, latency in p.engines.items()},
    )


def _file_size(zoo: Zoo, variant: Variant) -> int | None:
    try:
        return zoo.file_of(variant).stat().st_size
    except OSError:
        return None


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.2f} G" if n >= 1e9 else f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def _fixed(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
