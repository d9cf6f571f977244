"""Measuring the family the way edged measures any zoo: `edged zoo eval` / `profile` / `report` and their APIs.

Latency for the model card and the manifest comes from ONE `zoo profile` run over every variant and the
teachers together (rounds alternate between models, so load on a shared CPU falls on all alike).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from edged.factory.train.data import LABELS
from edged.factory.train.zoo_writer import input_spec, run_edged
from edged.vision.decoders import DECODERS
from edged.vision.detector import Detector
from edged.vision.engines import DEFAULT_RUNTIME, RUNTIME_FORMAT, EngineOptions
from edged.vision.postprocess import PostprocessOptions
from edged.zoo.datasets import open_eval_set
from edged.zoo.eval import EvalReport, evaluate
from edged.zoo.manifest import Zoo, load_zoo, sha256_of

if TYPE_CHECKING:
    from edged.factory.train.family import BuildContext
    from edged.zoo.profile import ProfileReport


@dataclass(frozen=True)
class Guard:
    """How much accuracy a compressed variant may lose against what it was derived from."""

    max_drop: float | None = None  # largest mAP50-95 lost
    min_kept: float | None = None  # smallest share of the parent's mAP50-95 kept

    def passes(self, parent: float, child: float) -> bool:
        if self.max_drop is not None:
            return parent - child <= self.max_drop
        assert self.min_kept is not None
        return child >= self.min_kept * parent

    def describe(self) -> str:
        return f"drop <= {self.max_drop}" if self.max_drop is not None else f"keeps >= {self.min_kept:.2f}x"


THREADS = 2
PROFILE_RUNS = 300
ALTERNATE_GUARD = Guard(max_drop=0.02)  # a variant's file for another engine, against the variant's own file
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
        for alternate, model_file in zip(entry.get("alternates", []), variant.alternates):
            alternate["file"] = str(family.file_of(variant, model_file))
        variants.append(entry)
    for teacher_id in TEACHERS:
        teacher = reference.variant(teacher_id)
        entry = teacher.model_dump(mode="json", exclude_none=True, exclude={"profiles", "provenance"})
        labels = reference.labels_of(teacher)
        entry.update(technique="baseline", file=str(reference.file_of(teacher)), labels=labels)
        variants.append(entry)
    return _scratch_zoo(directory, variants, "family-and-teachers")


@dataclass(frozen=True)
class EvalSpec:
    folder: Path
    classes: list[str] | None = None  # scored; None: every class the model and the set share
    max_detections: int = 100  # per image, kept and scored (COCO's)
    extra_iou: tuple[float, ...] = ()  # AP also reported at these overlaps


# drone-people-heldout holds up to 439 people in one image (4,422 in 77): at COCO's 100 detections per image no
# detector could find more than 0.66 of them, so it is scored as VisDrone scores crowds, on 500. Its people are
# mostly 1-4 pixels wide, where a box one pixel too wide falls below IoU 0.5: AP at 0.1 and 0.3 tells a box a
# little off from a person not found.
CROWD_DETECTIONS = 500
TINY_IOU = (0.1, 0.3)


def eval_sets(ctx: BuildContext) -> dict[str, EvalSpec]:
    """coco-val-dev is scored on the family's classes only."""
    return {
        "family-heldout": EvalSpec(ctx.eval_dir / "family-heldout"),
        "drone-people-heldout": EvalSpec(
            ctx.eval_dir / "drone-people-heldout", max_detections=CROWD_DETECTIONS, extra_iou=TINY_IOU
        ),
        "highway-heldout": EvalSpec(ctx.eval_dir / "highway-heldout"),
        "vtest-heldout-teacher": EvalSpec(ctx.eval_dir / "vtest-heldout-teacher"),
        "coco-val-dev": EvalSpec(ctx.shared / "data" / "coco-val-dev", list(LABELS)),
    }


def evaluate_all(
    zoo: Zoo,
    variant_ids: list[str],
    sets: dict[str, EvalSpec],
    device_class: str | None = None,
) -> list[EvalReport]:
    """Each variant on every set, on the engine its profile for `device_class` measured fastest (the one edged
    opens there)."""
    reports = []
    for variant_id in variant_ids:
        detector = zoo.open_detector(
            variant_id, EngineOptions(threads=THREADS), PostprocessOptions.for_evaluation(), device_class
        )
        try:
            for spec in sets.values():
                detector.postprocess = PostprocessOptions.for_evaluation().model_copy(
                    update={"max_detections": spec.max_detections}
                )
                found = evaluate(
                    detector,
                    open_eval_set(spec.folder),
                    variant_id,
                    spec.classes,
                    progress=False,
                    extra_iou=spec.extra_iou,
                )
                reports.append(found)
        finally:
            detector.close()
        print(f"evaluated {variant_id}", flush=True)
    return reports


def measure_family(ctx: BuildContext, command: str) -> None:
    """Profile every variant and the teachers in one run; evaluate each variant on every set on the engine that
    run found fastest (the one edged opens on this device class), and its other files on family-heldout; hold
    each compressed variant to its accuracy guard and each int8 one to its cost rule (one that fails is removed
    from the zoo, and the card says so); record, report."""
    from edged.factory.train.card import write_model_card
    from edged.factory.train.family import REPO_ROOT
    from edged.zoo.profile import ProfileReport, record_accuracy, record_profiles

    family = load_zoo(ctx.out)
    reference = reference_zoo(ctx.shared, REPO_ROOT)
    combined = combined_zoo(family, reference, ctx.work / "profile-zoo")
    profile = run_edged(
        "zoo", "profile", "--zoo", str(combined), "--runs", str(PROFILE_RUNS), "--threads", str(THREADS),
        "--no-save", "--json", capture_json=True,
    )  # fmt: skip
    (ctx.work / "profile.json").write_text(json.dumps(profile, indent=2))
    report = ProfileReport.model_validate(profile)
    ids = [v.id for v in family.variants]
    family = record_profiles(family, report.model_copy(update={"variants": _of(report, ids)}))

    sets = eval_sets(ctx)
    reports = evaluate_all(family, ids, sets, report.device_class) + evaluate_all(reference, list(TEACHERS), sets)
    reports += evaluate_other_files(family, sets["family-heldout"].folder, report.device_class)
    (ctx.work / "eval-results.json").write_text(json.dumps([r.model_dump() for r in reports], indent=2))

    verdicts = with_orphans(family, guard_verdicts(family, reports))
    (ctx.work / "guards.json").write_text(json.dumps(verdicts, indent=2))
    family = drop_failed(family, [v for v, verdict in verdicts.items() if not verdict["passed"]])
    speed = with_orphans(family, speed_verdicts(family, report))
    (ctx.work / "speed-guards.json").write_text(json.dumps(speed, indent=2))
    family = drop_failed(family, [v for v, verdict in speed.items() if not verdict["passed"]])
    ids = [v.id for v in family.variants]
    heldout = [r for r in reports if r.eval_set == "family-heldout" and r.variant in ids]
    family = record_accuracy(family, heldout, report.device_class)
    run_edged("zoo", "report", "--zoo", str(ctx.out), "--out", str(ctx.out / "report"))
    write_model_card(
        ctx, family, reports, report.model_copy(update={"variants": _of(report, [*ids, *TEACHERS])}), command
    )


def _of(report: ProfileReport, ids: list[str]) -> list[Any]:
    return [v for v in report.variants if v.variant in ids]


def rewrite_card(ctx: BuildContext, command: str) -> None:
    """MODEL_CARD.md again from what the measure stage saved (evaluations, profile, guards): the card's text can
    change without measuring again."""
    from edged.factory.train.card import write_model_card
    from edged.zoo.profile import ProfileReport

    saved = [ctx.work / name for name in ("eval-results.json", "profile.json")]
    if missing := [str(path) for path in saved if not path.exists()]:
        raise SystemExit(f"{', '.join(missing)} missing: run the measure stage first")
    reports = [EvalReport.model_validate(r) for r in json.loads(saved[0].read_text())]
    profile = ProfileReport.model_validate(json.loads(saved[1].read_text()))
    write_model_card(ctx, load_zoo(ctx.out), reports, profile, command)


def evaluate_other_files(zoo: Zoo, heldout: Path, device_class: str) -> list[EvalReport]:
    """Each variant's files for the engines it is not opened on here, on the held-out set, reported as
    `<variant>@<engine>`: every file that ships is held to a guard, not only the one this machine runs."""
    reports = []
    for variant in zoo.variants:
        chosen = zoo.runtime_for(variant, device_class=device_class)
        for model_file in variant.model_files:
            runtime = DEFAULT_RUNTIME[model_file.format]
            if RUNTIME_FORMAT[chosen] == model_file.format:
                continue
            detector = zoo.open_detector(
                variant.id, EngineOptions(threads=THREADS), PostprocessOptions.for_evaluation(), runtime=runtime
            )
            try:
                reports.append(evaluate(detector, open_eval_set(heldout), f"{variant.id}@{runtime}", progress=False))
            finally:
                detector.close()
    return reports


def guard_verdicts(zoo: Zoo, reports: list[EvalReport]) -> dict[str, dict[str, Any]]:
    """Each compressed variant's mAP50-95 drop on family-heldout against the variant it was derived from (its
    provenance parent), and whether it is within its guard."""
    from edged.factory.train.family import GUARDS

    heldout = {r.variant: r.map50_95 for r in reports if r.eval_set == "family-heldout"}
    verdicts = {}
    for variant in zoo.variants:
        guard = GUARDS.get(variant.id)
        against = variant.provenance.parent
        if guard is None or variant.id not in heldout or against not in heldout:
            continue
        verdicts[variant.id] = _verdict(against, heldout[against], heldout[variant.id], guard)
    for name, score in heldout.items():  # a variant's file for another engine
        if "@" in name:
            verdicts[name] = _other_file_verdict(zoo.variant(name.split("@")[0]), score, heldout)
    return verdicts


def _other_file_verdict(variant: Any, score: float, heldout: dict[str, float]) -> dict[str, Any]:
    """An int8 variant's other file is held to the variant's own guard against the same float parent (an int8
    TFLite and an int8 ONNX are each quantized by their own tool, and each must keep what int8 may lose); any
    other file must be as accurate as the variant's chosen one."""
    from edged.factory.train.family import GUARDS

    parent = variant.provenance.parent
    if "int8" in variant.technique and variant.id in GUARDS and parent in heldout:
        return _verdict(parent, heldout[parent], score, GUARDS[variant.id])
    return _verdict(variant.id, heldout[variant.id], score, ALTERNATE_GUARD)


def with_orphans(zoo: Zoo, verdicts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`verdicts`, and a failing one for every variant derived from a variant that is not shipped (failed, or
    gone from the zoo): an int8 form of a dropped parent has nothing to be measured against, and nothing to stand
    in for."""
    verdicts = dict(verdicts)
    shipped = {v.id for v in zoo.variants if verdicts.get(v.id, {}).get("passed", True)}
    orphaned = True
    while orphaned:
        orphaned = False
        for variant in zoo.variants:
            parent = variant.provenance.parent
            if variant.id in shipped and parent is not None and parent not in shipped:
                verdicts[variant.id] = {"against": parent, "passed": False, "reason": f"{parent} is not shipped"}
                shipped.discard(variant.id)
                orphaned = True
    return verdicts


def _verdict(against: str, parent: float, child: float, guard: Guard) -> dict[str, Any]:
    return {
        "against": against,
        "parent_map50_95": parent,
        "map50_95": child,
        "drop": round(parent - child, 4),
        "kept": round(child / parent, 3) if parent > 0 else None,
        "guard": guard.describe(),
        "passed": guard.passes(parent, child),
    }


def speed_verdicts(zoo: Zoo, report: ProfileReport) -> dict[str, dict[str, Any]]:
    """Each int8 variant's p50 against its float parent's, both on their fastest engine, in the same profile run:
    an int8 variant exists to be cheaper, so one above INT8_MAX_LATENCY_RATIO is not shipped."""
    from edged.factory.train.family import INT8_MAX_LATENCY_RATIO

    p50 = {v.variant: (v.profile.latency.p50_ms, v.profile.engine) for v in report.variants if v.profile.latency}
    verdicts = {}
    for variant in zoo.variants:
        parent = variant.provenance.parent
        if "int8" not in variant.technique or variant.id not in p50 or parent not in p50:
            continue
        ratio = p50[variant.id][0] / p50[parent][0]
        verdicts[variant.id] = {
            "against": parent,
            "p50_ms": p50[variant.id][0],
            "engine": p50[variant.id][1],
            "parent_p50_ms": p50[parent][0],
            "parent_engine": p50[parent][1],
            "ratio": round(ratio, 3),
            "max_ratio": INT8_MAX_LATENCY_RATIO,
            "passed": ratio <= INT8_MAX_LATENCY_RATIO,
        }
    return verdicts


def drop_failed(zoo: Zoo, failed: list[str]) -> Zoo:
    """The zoo without the variants (and other-engine files, `id@engine`) that failed their guard. A variant whose
    own (first) file failed goes whole: the manifest cannot carry a variant without it."""
    from edged.zoo.manifest_writer import save_zoo

    if not failed:
        return zoo
    for name in [f for f in failed if "@" in f]:
        vid, runtime = name.split("@")
        if RUNTIME_FORMAT[runtime] == zoo.variant(vid).format:  # type: ignore[index]
            print(f"guard: {vid}'s own {zoo.variant(vid).format} file failed: the variant goes", flush=True)
            failed = [*failed, vid]
    variants = []
    for variant in zoo.variants:
        lost = {f.split("@")[1] for f in failed if f.startswith(variant.id + "@")}
        kept = [a for a in variant.alternates if not any(RUNTIME_FORMAT[r] == a.format for r in lost)]  # type: ignore[index]
        for alternate in variant.alternates:
            if alternate not in kept:
                print(f"guard: {variant.id}'s {alternate.format} file is not shipped (see guards.json)", flush=True)
                zoo.file_of(variant, alternate).unlink(missing_ok=True)
        variants.append(variant.model_copy(update={"alternates": kept}))
    zoo = save_zoo(zoo, zoo.manifest.model_copy(update={"variants": variants}))
    keep = [v for v in zoo.variants if v.id not in failed]
    shared_files = {v.file for v in keep}
    for variant in zoo.variants:
        if variant.id in failed:
            print(f"guard: {variant.id} is not shipped (see guards.json)", flush=True)
            for model_file in variant.model_files:
                if model_file.file not in shared_files:
                    zoo.file_of(variant, model_file).unlink(missing_ok=True)
    return save_zoo(zoo, zoo.manifest.model_copy(update={"variants": keep}))
