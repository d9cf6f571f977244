"""Measuring the family the way edged measures any zoo: `edged zoo eval` / `profile` / `report` and their APIs.

Latency for the model card and the manifest comes from ONE `zoo profile` run over every variant and the
teachers together (rounds alternate between models, so load on a shared CPU falls on all alike).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from edged.vision.decoders import DECODERS
from edged.vision.detector import Detector
from edged.vision.engines import EngineOptions
from edged.vision.postprocess import PostprocessOptions
from edged.zoo.build.train.data import LABELS
from edged.zoo.build.train.zoo_writer import input_spec, run_edged
from edged.zoo.datasets import open_eval_set
from edged.zoo.eval import EvalReport, evaluate
from edged.zoo.manifest import Zoo, load_zoo, sha256_of

if TYPE_CHECKING:
    from edged.zoo.build.train.family import BuildContext

THREADS = 2
PROFILE_RUNS = 300
TEACHERS = ("yolox-nano-416", "nanodet-m-320")


def open_student_file(path: Path, size: int) -> Detector:
    decoder = DECODERS["yolov8"].model_validate({"type": "yolov8"})
    return Detector.open(
        path,
        "onnx",
        input_spec(size),
        decoder,
        list(LABELS),
        EngineOptions(threads=THREADS),
        PostprocessOptions.for_evaluation(),
    )


def tune_accuracy(files: dict[str, Path], eval_set: Path, size: int) -> dict[str, dict[str, float]]:
    """mAP on the tune split (never trained on, never reported as the result) for build decisions."""
    results = {}
    for name, path in files.items():
        detector = open_student_file(path, size)
        try:
            report = evaluate(detector, open_eval_set(eval_set), name, progress=False)
        finally:
            detector.close()
        results[name] = {"map50_95": report.map50_95, "map50": report.map50}
    return results


def tune_latency(files: dict[str, Path], size: int | dict[str, int], workdir: Path) -> dict[str, float]:
    """p50 latency of each file (input size: one for all, or per file), in one `edged zoo profile` run."""
    sizes = size if isinstance(size, dict) else dict.fromkeys(files, size)
    entries = [_file_entry(name, path, sizes[name]) for name, path in files.items()]
    zoo_dir = _scratch_zoo(workdir / "latency-zoo", entries)
    report = run_edged("zoo", "profile", "--zoo", str(zoo_dir), "--no-save", "--json", capture_json=True)
    return {v["variant"]: v["profile"]["latency"]["p50_ms"] for v in report["variants"]}


def _file_entry(variant_id: str, path: Path, size: int) -> dict[str, Any]:
    return {
        "id": variant_id,
        "technique": "distilled",
        "format": "onnx",
        "file": str(path.resolve()),
        "sha256": sha256_of(path),
        "input": input_spec(size).model_dump(mode="json"),
        "decoder": "yolov8",
    }


def _scratch_zoo(directory: Path, variants: list[dict[str, Any]], family: str = "scratch") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {"schema": "edged.zoo/v1", "family": family, "labels": list(LABELS), "variants": variants}
    (directory / "zoo.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return directory


def reference_zoo(shared: Path, repo_root: Path) -> Zoo:
    os.environ["EDGED_SHARED"] = str(shared.resolve())
    return load_zoo(repo_root / "deploy" / "zoos" / "coco-reference")


def combined_zoo(family: Zoo, reference: Zoo, directory: Path) -> Path:
    """The family and the teachers in one manifest (files by absolute path), to time them in one run."""
    variants = []
    for variant in family.variants:
        entry = variant.model_dump(mode="json", exclude_none=True, exclude={"profiles", "provenance"})
        entry.update(technique=variant.technique_name, file=str(family.file_of(variant)))
        variants.append(entry)
    for teacher_id in TEACHERS:
        teacher = reference.variant(teacher_id)
        entry = teacher.model_dump(mode="json", exclude_none=True, exclude={"profiles", "provenance"})
        labels = reference.labels_of(teacher)
        entry.update(technique="baseline", file=str(reference.file_of(teacher)), labels=labels)
        variants.append(entry)
    return _scratch_zoo(directory, variants, "family-and-teachers")


def eval_sets(ctx: BuildContext) -> dict[str, tuple[Path, list[str] | None]]:
    """Name -> (YOLO folder, classes scored). coco-val-dev is scored on the family's classes only."""
    return {
        "family-heldout": (ctx.eval_dir / "family-heldout", None),
        "drone-people-heldout": (ctx.eval_dir / "drone-people-heldout", None),
        "highway-heldout": (ctx.eval_dir / "highway-heldout", None),
        "vtest-heldout-teacher": (ctx.eval_dir / "vtest-heldout-teacher", None),
        "coco-val-dev": (ctx.shared / "data" / "coco-val-dev", list(LABELS)),
    }


def evaluate_all(zoo: Zoo, variant_ids: list[str], sets: dict[str, tuple[Path, list[str] | None]]) -> list[EvalReport]:
    reports = []
    for variant_id in variant_ids:
        detector = zoo.open_detector(variant_id, EngineOptions(threads=THREADS), PostprocessOptions.for_evaluation())
        try:
            for folder, classes in sets.values():
                reports.append(evaluate(detector, open_eval_set(folder), variant_id, classes, progress=False))
        finally:
            detector.close()
        print(f"evaluated {variant_id}", flush=True)
    return reports


def measure_family(ctx: BuildContext, command: str) -> None:
    from edged.zoo.build.train.card import write_model_card
    from edged.zoo.build.train.family import REPO_ROOT
    from edged.zoo.profile import ProfileReport, record_accuracy, record_profiles

    family = load_zoo(ctx.out)
    reference = reference_zoo(ctx.shared, REPO_ROOT)
    sets = eval_sets(ctx)
    ids = [v.id for v in family.variants]
    reports = evaluate_all(family, ids, sets) + evaluate_all(reference, list(TEACHERS), sets)
    (ctx.work / "eval-results.json").write_text(json.dumps([r.model_dump() for r in reports], indent=2))

    combined = combined_zoo(family, reference, ctx.work / "profile-zoo")
    profile = run_edged(
        "zoo", "profile", "--zoo", str(combined), "--runs", str(PROFILE_RUNS), "--threads", str(THREADS),
        "--no-save", "--json", capture_json=True,
    )  # fmt: skip
    (ctx.work / "profile.json").write_text(json.dumps(profile, indent=2))

    report = ProfileReport.model_validate(profile)
    mine = report.model_copy(update={"variants": [v for v in report.variants if v.variant in ids]})
    family = record_profiles(family, mine)
    heldout = [r for r in reports if r.eval_set == "family-heldout" and r.variant in ids]
    family = record_accuracy(family, heldout, report.device_class)
    run_edged("zoo", "report", "--zoo", str(ctx.out), "--out", str(ctx.out / "report"))
    write_model_card(ctx, family, reports, report, command)
