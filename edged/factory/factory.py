"""`edged zoo build --technique int8`: quantize a variant, hold it to the accuracy guard, write it into a zoo.

The new model and its manifest entry go into an output zoo (`--out`), which may be the source zoo itself. The
output zoo also lists the parent, its file referenced (never copied), so that the family's report compares the
two; both carry the accuracy the guard measured, under this device class.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from edged import __version__
from edged.errors import EdgedError, ModelError
from edged.factory import qat
from edged.factory.calibration import CalibrationSet
from edged.factory.guard import AccuracyGuard, CandidateResult
from edged.factory.int8 import Int8Recipe, Refinement, prepare_for_quantization, quantize_int8
from edged.factory.onnx_graph import load_onnx
from edged.vision.detector import Detector
from edged.vision.engines import EngineOptions
from edged.vision.postprocess import PostprocessOptions
from edged.zoo.datasets import EvalSet, open_eval_set
from edged.zoo.eval import EvalReport, evaluate
from edged.zoo.manifest import (
    MANIFEST_NAME,
    Manifest,
    Provenance,
    Variant,
    Zoo,
    load_zoo,
    manifest_path,
    read_labels,
    sha256_of,
)
from edged.zoo.manifest_writer import replace_variant, save_manifest, with_profile
from edged.zoo.profile import accuracy_profile

GOOD_ENOUGH = 0.25  # stop searching once a candidate loses less than this fraction of the allowed drop
EVAL = PostprocessOptions.for_evaluation()


class Int8BuildRequest(BaseModel):
    zoo: Path
    variant: str
    calibration_images: Path
    eval_data: Path
    eval_images: Path | None = None
    out: Path
    new_id: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    calibration_limit: int = Field(64, ge=1)
    finetune_images: Path | None = Field(
        None, description="unlabelled images fine-tuning trains on (default: calibration's)"
    )
    finetune_limit: int = Field(128, ge=1, description="how many of them (a seeded sample when there are more)")
    seed: int = 0
    recipes: list[Int8Recipe] = Field(min_length=1, description="tried in order; the most accurate is kept")
    refinements: list[Refinement] = Field(
        default_factory=list, description="tried in order on the most accurate recipe while none passes the guard"
    )
    max_drop: float = Field(0.02, ge=0)
    force: bool = False
    threads: int = Field(2, ge=1)
    device_class: str
    command: str = Field(description="the command line, recorded as provenance")


class BuildReport(BaseModel):
    """`edged zoo build --json`."""

    variant: str
    parent: str
    technique: str
    eval_set: str
    eval_images: int
    calibration: str
    parent_map50_95: float
    parent_map50: float
    parent_file_bytes: int
    max_drop: float
    candidates: list[CandidateResult]
    chosen: CandidateResult = Field(description="the most accurate candidate")
    accepted: bool = Field(description="the chosen candidate is within the guard and was written")
    forced: bool = Field(False, description="written although it fails the guard (--force)")
    file: str | None = None
    file_bytes: int | None = None
    size_ratio: float | None = Field(None, description="parent file size / int8 file size")
    manifest: str | None = None
    message: str
    notes: list[str] = Field(default_factory=list, description="refinements that could not run here, and why")


def build_int8_variant(request: Int8BuildRequest, progress: bool = True) -> BuildReport:
    """Quantize, guard, and write (only what passes, or anything with --force). Cheap checks run first."""
    zoo = load_zoo(request.zoo)
    parent = zoo.variant(request.variant)
    parent_file = zoo.file_of(parent)
    new_id = request.new_id or f"{parent.id}-int8"
    _check_parent(zoo, parent, parent_file)
    open_eval = _eval_set_opener(request.eval_data, request.eval_images)
    calibration = CalibrationSet(request.calibration_images, request.calibration_limit, request.seed)
    calibration.check_disjoint(_eval_images_dir(request.eval_data, request.eval_images))
    finetuning = _finetuning_set(request)
    out_manifest = _output_manifest(request.out, zoo)
    guard = AccuracyGuard(request.max_drop)
    options = EngineOptions(threads=request.threads)

    tensors = calibration.tensors(parent.input, progress)  # an unreadable image fails now, not after the eval
    parent_report = _evaluate(zoo.open_detector(parent.id, options, EVAL), open_eval(), parent.id, progress)
    with tempfile.TemporaryDirectory(prefix="edged-int8-") as work:
        work_dir = Path(work)
        prepared, input_name = prepare_for_quantization(parent_file, work_dir, parent.input.tensor_shape())
        candidates: list[CandidateResult] = []
        training: list[np.ndarray] = []
        notes: list[str] = []

        def attempt(recipe: Int8Recipe, label: str) -> CandidateResult:
            model = work_dir / f"candidate-{len(candidates)}.onnx"
            if recipe.finetune and not training:
                training.extend(finetuning.tensors(parent.input, progress))
            quantized = quantize_int8(
                prepared,
                model,
                recipe,
                tensors,
                input_name,
                work_dir,
                progress,
                request.threads,
                training or None,
                request.seed,
            )
            report = _evaluate(_open_candidate(zoo, parent, model, options), open_eval(), label, progress)
            candidates.append(guard.judge(recipe, parent_report, report, model, quantized))
            return candidates[-1]

        for index, recipe in enumerate(request.recipes):
            if attempt(recipe, f"{new_id} {index + 1}/{len(request.recipes)}").drop <= GOOD_ENOUGH * request.max_drop:
                break  # another recipe would not be worth its minutes
        most_accurate = guard.best(candidates).recipe
        for refinement in request.refinements:
            if any(c.within_guard for c in candidates):
                break  # refinements cost minutes: only where every candidate fails the guard
            if refinement == "finetune" and not qat.available():
                notes.append("fine-tuning (QAT) skipped: it needs torch, in the [build] extra")
                continue
            attempt(most_accurate.refined(refinement), f"{new_id} + {refinement}")
        best = guard.best(candidates)
        report_so_far = BuildReport(
            variant=new_id,
            parent=parent.id,
            technique=_technique(parent),
            eval_set=parent_report.eval_set,
            eval_images=parent_report.images,
            calibration=calibration.describe(),
            parent_map50_95=parent_report.map50_95,
            parent_map50=parent_report.map50,
            parent_file_bytes=parent_file.stat().st_size,
            max_drop=request.max_drop,
            candidates=candidates,
            chosen=best,
            accepted=False,
            message=guard.refusal(best, parent_report),
            notes=notes,
        )
        if not best.within_guard and not request.force:
            return report_so_far
        target = request.out / f"{new_id}.onnx"
        request.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work_dir / f"candidate-{candidates.index(best)}.onnx", target)

    child = with_profile(
        _child_variant(
            parent,
            new_id,
            target,
            best,
            _data_used(best.recipe, calibration, finetuning),
            request,
            _own_labels(zoo, parent),
        ),
        request.device_class,
        **_accuracy_figures(best.report),
    )
    parent_entry = with_profile(
        _parent_entry(out_manifest, zoo, parent, request.out), request.device_class, **_accuracy_figures(parent_report)
    )
    header = (
        f"# Variants of {zoo.manifest.family} built by `edged zoo build` (edged {__version__}) from {zoo.path}.\n"
        "# Parent models are referenced where they are, never copied; provenance says how each file was made.\n"
    )
    save_manifest(_with_variants(out_manifest, zoo, [parent_entry, child]), manifest_path(request.out), header)
    load_zoo(request.out)  # what was written loads and verifies like any manifest
    verdict = "accepted" if best.within_guard else "KEPT ALTHOUGH IT FAILS THE ACCURACY GUARD (--force)"
    return report_so_far.model_copy(
        update={
            "accepted": best.within_guard,
            "forced": not best.within_guard,
            "file": str(target),
            "file_bytes": target.stat().st_size,
            "size_ratio": round(parent_file.stat().st_size / target.stat().st_size, 2),
            "manifest": str(manifest_path(request.out)),
            "message": f"{new_id}: {verdict} ({best.description})",
        }
    )


def _check_parent(zoo: Zoo, parent: Variant, parent_file: Path) -> None:
    if parent.format != "onnx":
        raise ModelError(
            f"{zoo.path}: variant '{parent.id}' is {parent.format}, not ONNX; int8 here is ONNX Runtime static "
            "quantization and needs an ONNX model"
        )
    if "int8" in parent.technique:
        raise EdgedError(f"{zoo.path}: variant '{parent.id}' is already int8")
    load_onnx(parent_file)  # a file that is not ONNX at all fails here, before minutes of calibration


def _evaluate(detector: Detector, eval_set: EvalSet, label: str, progress: bool) -> EvalReport:
    try:
        return evaluate(detector, eval_set, label, progress=progress)
    finally:
        detector.close()


def _open_candidate(zoo: Zoo, parent: Variant, model: Path, options: EngineOptions) -> Detector:
    """A candidate file under its parent's manifest entry (same input, decoder and labels)."""
    return Detector.open(model, "onnx", parent.input, parent.decoder, zoo.labels_of(parent), options, EVAL)


def _eval_set_opener(data: Path, images: Path | None) -> Callable[[], EvalSet]:
    """An eval set is a one-pass stream: each evaluation opens it again. Opening it now checks that it exists."""
    open_eval_set(data, images)
    return lambda: open_eval_set(data, images)


def _eval_images_dir(data: Path, images: Path | None) -> Path:
    if images is not None:
        return images
    if data.is_dir():
        return data / "images"
    return data.parent / "images" if (data.parent / "images").is_dir() else data.parent


def _output_manifest(out: Path, source: Zoo) -> Manifest | None:
    """The output zoo's manifest, loaded and verified; None when the output zoo is new."""
    if out.exists() and not out.is_dir():
        raise EdgedError(f"{out}: --out must be a directory (the output zoo)")
    if not (out / MANIFEST_NAME).exists():
        return None
    existing = load_zoo(out)
    if existing.manifest.family != source.manifest.family:
        raise EdgedError(
            f"{existing.path}: holds family '{existing.manifest.family}', not '{source.manifest.family}'; "
            "one zoo holds one family: choose another --out"
        )
    return existing.manifest


def _with_variants(manifest: Manifest | None, source: Zoo, variants: list[Variant]) -> Manifest:
    """`variants` added to (or replaced in) the output manifest; a new output zoo gets the family's labels inline."""
    if manifest is None:
        labels = source.manifest.labels
        return Manifest.model_validate(
            {
                "schema": "edged.zoo/v1",
                "family": source.manifest.family,
                "task": source.manifest.task,
                "labels": labels if isinstance(labels, list) else read_labels(source.root / labels),
                "variants": variants,
            }
        )
    for variant in variants:
        manifest = replace_variant(manifest, variant)
    return manifest


def _parent_entry(out_manifest: Manifest | None, source: Zoo, parent: Variant, out: Path) -> Variant:
    """The parent as the output zoo lists it: its own entry if it has one, else a reference to the parent's file."""
    for existing in out_manifest.variants if out_manifest else []:
        if existing.id == parent.id:
            return existing
    update: dict[str, object] = {
        "file": _reference(source.file_of(parent), out.resolve()),
        "alternates": [  # its files for other engines, referenced the same way
            a.model_copy(update={"file": _reference(source.file_of(parent, a), out.resolve())})
            for a in parent.alternates
        ],
    }
    if parent.labels is not None:
        update["labels"] = _own_labels(source, parent)
    return parent.model_copy(update=update)


def _reference(path: Path, zoo_root: Path) -> str:
    """`path` relative to the zoo when they share a directory below /, else absolute (no ../../ to the root)."""
    if Path(os.path.commonpath([path, zoo_root])) == Path(path.anchor):
        return str(path)
    return os.path.relpath(path, zoo_root)


def _own_labels(zoo: Zoo, variant: Variant) -> list[str] | None:
    """A variant's own labels (overriding the family's) as a list: a labels file may not be next to the new zoo."""
    return None if variant.labels is None else zoo.labels_of(variant)


def _child_variant(
    parent: Variant,
    new_id: str,
    target: Path,
    chosen: CandidateResult,
    data: list[str],
    request: Int8BuildRequest,
    labels: list[str] | None,
) -> Variant:
    return Variant(
        id=new_id,
        technique=[t for t in parent.technique if t != "baseline"] + ["int8"],
        format="onnx",
        file=target.name,
        sha256=sha256_of(target),
        input=parent.input,
        decoder=parent.decoder,
        labels=labels,
        provenance=Provenance(
            command=request.command,
            parent=parent.id,
            data=data,
            seed=request.seed,
            built_at=_now(),
            edged_version=__version__,
            notes=f"{chosen.description} ({chosen.recipe.flags()}); {''.join(n + '; ' for n in chosen.notes)}"
            f"accuracy guard: mAP50-95 "
            f"{chosen.parent_map50_95:.4f} -> {chosen.map50_95:.4f} on {chosen.report.eval_set} "
            f"(max drop {request.max_drop})",
        ),
    )


def _finetuning_set(request: Int8BuildRequest) -> CalibrationSet:
    """The fine-tuning images, checked now (a missing folder or eval images fail before minutes of work)."""
    folder = request.finetune_images or request.calibration_images
    training = CalibrationSet(folder, request.finetune_limit, request.seed, role="fine-tuning")
    if request.finetune_images is not None:
        training.check_disjoint(_eval_images_dir(request.eval_data, request.eval_images))
    return training


def _data_used(recipe: Int8Recipe, calibration: CalibrationSet, finetuning: CalibrationSet) -> list[str]:
    """The images the chosen recipe was built from, as provenance."""
    data = [f"calibration: {calibration.describe()}"]
    if recipe.finetune:
        data.append(f"fine-tuning: {finetuning.describe()}, each also mirrored; targets: the parent's own outputs")
    return data


def _accuracy_figures(report: EvalReport) -> dict[str, object]:
    return {"accuracy": accuracy_profile(report), "measured_at": _now(), "edged_version": __version__}


def _technique(parent: Variant) -> str:
    return "+".join([t for t in parent.technique if t != "baseline"] + ["int8"])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
