"""Rebuild edged's demo family from scratch (`python -m edged.zoo.build.train.family --out model_zoo`).

Stages, each resumable (checkpoints and caches under --work, which is git-ignored):
  data     held-out / tune sets as YOLO folders, teacher pseudo-labels, the decoded-image cache
  student  the distilled student, trained from scratch
  prune    structured pruning at a few ratios, each fine-tuned with distillation; the best trade is kept
  binary   1-bit weights, trained with a straight-through estimator and distillation
  export   ONNX files and zoo.yaml; int8 siblings through `edged zoo build --technique int8`
  measure  `edged zoo eval --record`, `edged zoo profile`, `edged zoo report`, per-domain figures, MODEL_CARD.md
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from edged.zoo.build.train.augment import AugmentConfig
from edged.zoo.build.train.binary import binarize, export_binary_onnx
from edged.zoo.build.train.data import (
    LABELS,
    SOURCES,
    TEACHER_ID,
    TrainCache,
    load_or_build_cache,
    materialise_calibration_set,
    materialise_eval_sets,
    materialise_family_sets,
    materialise_video_agreement_set,
    open_teacher,
)
from edged.zoo.build.train.prune import channel_summary, prune_student
from edged.zoo.build.train.student import Student, StudentConfig, count_macs, count_params, export_onnx
from edged.zoo.build.train.trainer import TrainConfig, train
from edged.zoo.build.train.zoo_writer import Entry, provenance, run_edged, write_zoo
from edged.zoo.manifest import Provenance

REPO_ROOT = Path(__file__).resolve().parents[4]
SEED = 0
STAGES = ("data", "student", "prune", "binary", "export", "measure")
COMMAND = "python -m edged.zoo.build.train.family --out model_zoo --shared ../shared"

STUDENT = StudentConfig(num_classes=len(LABELS), width=0.75, labels=LABELS)
STUDENT_TRAINING = TrainConfig(
    epochs=50,
    samples_per_epoch=1600,
    batch=16,
    lr=3e-3,
    warmup_epochs=2.0,
    ema_decay=0.998,
    seed=SEED,
    augment=AugmentConfig(size=320),
)
# fine-tuning after pruning and for binarisation: distilled from the trained student, shorter, gentler
PRUNE_RATIOS = (0.2, 0.4, 0.6)
PRUNE_TRAINING = replace(STUDENT_TRAINING, epochs=6, lr=1e-3, warmup_epochs=0.5, ema_warmup_steps=100)
PRUNE_KEEPS = 0.9  # the most-pruned candidate that keeps this share of the student's tune mAP wins
BINARY_TRAINING = replace(STUDENT_TRAINING, epochs=12, lr=1e-3, warmup_epochs=0.5, ema_warmup_steps=100)
# The network is fully convolutional: one training, several operating points. Chosen from the tune-split sweep
# (resolution-sweep.json, in MODEL_CARD.md): trained on 320-pixel crops, the student is most accurate near 384 on
# road scenes, while only 640 keeps tiny aerial people visible; the smaller sizes are the cheap end of the front.
SWEEP_SIZES = (192, 256, 320, 384, 480, 640)
STUDENT_SIZES = (640, 384, 256)
PRUNED_SIZES = (320, 192)
PRIMARY_SIZE = 384  # the most accurate student on the tune split: the int8 and binary siblings use it
TRAIN_DATA = [s.name for s in SOURCES]


@dataclass
class BuildContext:
    shared: Path
    out: Path
    work: Path

    @property
    def eval_dir(self) -> Path:
        return self.work / "eval-sets"

    def stage_dir(self, name: str) -> Path:
        return self.work / name


def cache_for(ctx: BuildContext) -> tuple[TrainCache, str]:
    return load_or_build_cache(ctx.shared, REPO_ROOT, ctx.work / "cache")


def stage_data(ctx: BuildContext) -> None:
    materialise_eval_sets(ctx.shared, ctx.eval_dir)
    materialise_family_sets(ctx.shared, ctx.eval_dir)
    materialise_calibration_set(ctx.shared, ctx.eval_dir)
    teacher, _ = open_teacher(ctx.shared, REPO_ROOT)
    try:
        materialise_video_agreement_set(ctx.shared, ctx.eval_dir, teacher)
    finally:
        teacher.close()
    cache, teacher_sha = cache_for(ctx)
    summary: dict[str, dict[str, int]] = {}
    for source, boxes in zip(cache.sources, cache.boxes):
        entry = summary.setdefault(source, {"images": 0, "boxes": 0})
        entry["images"] += 1
        entry["boxes"] += len(boxes)
    (ctx.work / "cache-summary.json").write_text(json.dumps(summary, indent=2))
    print(f"data: {len(cache)} training images, teacher sha256 {teacher_sha[:12]}", flush=True)


def stage_student(ctx: BuildContext) -> Student:
    cache, _ = cache_for(ctx)
    torch.manual_seed(SEED)
    model = Student(STUDENT)
    trained = train(model, cache, STUDENT_TRAINING, ctx.stage_dir("student"), desc="student")
    assert isinstance(trained, Student)
    return trained


def load_student(ctx: BuildContext) -> Student:
    done = ctx.stage_dir("student") / "done.pt"
    if not done.exists():
        raise SystemExit(f"{done} is missing: run the student stage first")
    model = Student(STUDENT)
    model.load_state_dict(torch.load(done, weights_only=True))
    return model.eval()


def stage_prune(ctx: BuildContext) -> None:
    """Prune at each ratio, fine-tune with distillation, measure on the tune split, keep the best trade."""
    from edged.zoo.build.train.measure import tune_accuracy, tune_latency

    parent = load_student(ctx)
    cache, _ = cache_for(ctx)
    candidates = {"student": (parent, ctx.stage_dir("prune") / "student.onnx")}
    for ratio in PRUNE_RATIOS:
        workdir = ctx.stage_dir(f"prune/ratio-{ratio}")
        torch.manual_seed(SEED)
        model = prune_student(parent, ratio)
        tuned = train(model, cache, PRUNE_TRAINING, workdir, teacher=parent, desc=f"prune {ratio}")
        assert isinstance(tuned, Student)
        torch.save(tuned, workdir / "model.pt")
        candidates[f"ratio-{ratio}"] = (tuned, workdir / "pruned.onnx")
    size = 640  # the ratio was chosen at the deployed size with the most detail (before the resolution sweep)
    for model, path in candidates.values():
        export_onnx(copy.deepcopy(model), path, (size, size))
    files = {name: path for name, (_, path) in candidates.items()}
    accuracy = tune_accuracy(files, ctx.eval_dir / "family-tune", size)
    latency = tune_latency(files, size, ctx.stage_dir("prune"))
    trade: dict[str, dict[str, Any]] = {
        name: {
            "ratio": 0.0 if name == "student" else float(name.split("-")[1]),
            "tune_map50_95": accuracy[name]["map50_95"],
            "tune_map50": accuracy[name]["map50"],
            "latency_p50_ms": latency[name],
            "params": count_params(model),
            "macs": count_macs(model, (size, size)),
            "channels": channel_summary(model),
        }
        for name, (model, _) in candidates.items()
    }
    floor = PRUNE_KEEPS * trade["student"]["tune_map50_95"]
    keeping = [n for n in trade if n != "student" and trade[n]["tune_map50_95"] >= floor]
    chosen = max(keeping, key=lambda n: trade[n]["ratio"]) if keeping else f"ratio-{min(PRUNE_RATIOS)}"
    result = {"chosen": chosen, "rule": f"most-pruned with tune mAP50-95 >= {PRUNE_KEEPS} x student's", **trade}
    (ctx.stage_dir("prune") / "trade.json").write_text(json.dumps(result, indent=2))
    torch.save(candidates[chosen][0], ctx.stage_dir("prune") / "chosen.pt")
    print(f"prune: chose {chosen} ({json.dumps({n: trade[n]['tune_map50_95'] for n in trade})})", flush=True)


def load_pruned(ctx: BuildContext) -> tuple[Student, dict[str, Any]]:
    model = torch.load(ctx.stage_dir("prune") / "chosen.pt", weights_only=False)
    trade = json.loads((ctx.stage_dir("prune") / "trade.json").read_text())
    return model.eval(), trade


def stage_binary(ctx: BuildContext) -> Student:
    parent = load_student(ctx)
    cache, _ = cache_for(ctx)
    torch.manual_seed(SEED)
    model = binarize(copy.deepcopy(parent))
    trained = train(model, cache, BINARY_TRAINING, ctx.stage_dir("binary"), teacher=parent, desc="binary")
    assert isinstance(trained, Student)
    return trained


def load_binary(ctx: BuildContext) -> Student:
    model = binarize(Student(STUDENT))
    model.load_state_dict(torch.load(ctx.stage_dir("binary") / "done.pt", weights_only=True))
    return model.eval()


def stage_export(ctx: BuildContext) -> None:
    """ONNX files and zoo.yaml for the trained variants, then their int8 siblings via `edged zoo build`."""
    _, teacher_sha = cache_for(ctx)
    student, (pruned, trade), binary = load_student(ctx), load_pruned(ctx), load_binary(ctx)
    sweep_resolutions(ctx, {"student": student, "pruned": pruned})
    ctx.out.mkdir(parents=True, exist_ok=True)
    stale = [*ctx.out.glob("student-*.onnx"), *ctx.out.glob("pruned-*.onnx"), *ctx.out.glob("binary-*.onnx")]
    for path in [*stale, *ctx.work.glob("int8-*.json")]:
        path.unlink()
    parent = f"student-{PRIMARY_SIZE}"
    entries = []
    for size in STUDENT_SIZES:
        path = export_onnx(copy.deepcopy(student), ctx.out / f"student-{size}.onnx", (size, size))
        notes = f"{STUDENT_TRAINING.epochs} epochs from scratch; real labels + {TEACHER_ID} soft pseudo-labels"
        entries.append(Entry(f"student-{size}", "distilled", path, size, _provenance(teacher_sha, notes)))
    for size in PRUNED_SIZES:
        path = export_onnx(copy.deepcopy(pruned), ctx.out / f"pruned-{size}.onnx", (size, size))
        notes = f"{trade['chosen']} structured channel pruning (torch-pruning), {PRUNE_TRAINING.epochs} epochs KD"
        provenance_ = _provenance(teacher_sha, notes, parent=parent)
        entries.append(Entry(f"pruned-{size}", "distilled+pruned", path, size, provenance_))
    size = PRIMARY_SIZE
    path, packed = export_binary_onnx(binary, ctx.out / f"binary-{size}.onnx", (size, size))
    notes = f"1-bit weights in {packed} layers, packed in the ONNX; {BINARY_TRAINING.epochs} epochs STE + KD"
    entries.append(
        Entry(f"binary-{size}", "distilled+binary", path, size, _provenance(teacher_sha, notes, parent=parent))
    )
    write_zoo(ctx.out, list(LABELS), entries)
    for parent_id in (parent, f"pruned-{max(PRUNED_SIZES)}"):
        report = run_edged(
            "zoo", "build", "--zoo", str(ctx.out), "--variant", parent_id, "--technique", "int8",
            "--calib", str(ctx.eval_dir / "calibration"), "--eval", str(ctx.eval_dir / "family-tune"),
            "--out", str(ctx.out), "--seed", str(SEED), "--force", "--json",
            # the recipes the shipped int8 files were built with:
            "--ops", "conv", "--float-outliers", "no", "--rounding", "nearest", "--finetune", "no",
            capture_json=True,
        )  # fmt: skip
        (ctx.work / f"int8-{parent_id}.json").write_text(json.dumps(report, indent=2))


def sweep_resolutions(ctx: BuildContext, models: dict[str, Student]) -> None:
    """Accuracy on the tune split and latency (one profile run) of each model at each input size."""
    from edged.zoo.build.train.measure import tune_accuracy, tune_latency

    sweep_dir = ctx.stage_dir("resolution-sweep")
    files, sizes = {}, {}
    for name, model in models.items():
        for size in SWEEP_SIZES:
            key = f"{name}-{size}"
            files[key] = export_onnx(copy.deepcopy(model), sweep_dir / f"{key}.onnx", (size, size))
            sizes[key] = size
    accuracy = {
        key: tune_accuracy({key: path}, ctx.eval_dir / "family-tune", sizes[key])[key] for key, path in files.items()
    }
    latency = tune_latency(files, sizes, sweep_dir)
    result = {key: {**accuracy[key], "latency_p50_ms": latency[key], "size": sizes[key]} for key in files}
    (ctx.work / "resolution-sweep.json").write_text(json.dumps(result, indent=2))


def _provenance(teacher_sha: str, notes: str, parent: str | None = None) -> Provenance:
    return provenance(
        COMMAND,
        list(TRAIN_DATA),
        SEED,
        teacher_sha256=teacher_sha,
        parent=parent,
        notes=notes,
        license="Apache-2.0 (edged); trained on CC BY 4.0 / COCO data, see MODEL_CARD.md",
    )


def stage_measure(ctx: BuildContext) -> None:
    from edged.zoo.build.train.measure import measure_family

    measure_family(ctx, COMMAND)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "model_zoo", help="where zoo.yaml and models go")
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared", help="models and data")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "out" / "zoo-build", help="checkpoints, caches")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {', '.join(STAGES)}")
    args = parser.parse_args(argv)
    ctx = BuildContext(args.shared.resolve(), args.out.resolve(), args.work.resolve())
    wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        parser.error(f"unknown stages: {', '.join(unknown)} (known: {', '.join(STAGES)})")
    started = time.perf_counter()
    for stage in STAGES:
        if stage in wanted:
            stage_started = time.perf_counter()
            STAGE_FUNCTIONS[stage](ctx)
            _record_duration(ctx, stage, time.perf_counter() - stage_started)
    print(f"family build: {', '.join(wanted)} done in {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    return 0


def _record_duration(ctx: BuildContext, stage: str, seconds: float) -> None:
    path = ctx.work / "durations.json"
    durations = json.loads(path.read_text()) if path.exists() else {}
    durations[stage] = durations.get(stage, 0.0) + round(seconds, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(durations, indent=2))


STAGE_FUNCTIONS = {
    "data": stage_data,
    "student": stage_student,
    "prune": stage_prune,
    "binary": stage_binary,
    "export": stage_export,
    "measure": stage_measure,
}

if __name__ == "__main__":
    raise SystemExit(main())
