"""What people read about a zoo: the variant listing and the evaluation table (text and JSON models)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from edged.errors import EdgedError
from edged.vision.engines import EngineOptions
from edged.zoo.eval import EvalReport
from edged.zoo.manifest import DeviceProfile, Zoo


class VariantSummary(BaseModel):
    id: str
    technique: str
    format: str
    file: str
    file_bytes: int
    sha256: str
    decoder: str
    input_size: tuple[int, int]
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
                v.format,
                _size(v.file_bytes),
                f"{v.input_size[0]}x{v.input_size[1]}",
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
    header = ["variant", "mAP50-95", "mAP50", *[f"AP {c}" for c in shown], "ms/img"]
    rows = [
        [
            r.variant,
            f"{r.map50_95:.4f}",
            f"{r.map50:.4f}",
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
    return note + "\n" + _table(header, rows)


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
