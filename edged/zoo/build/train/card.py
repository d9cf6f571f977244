"""MODEL_CARD.md: how each variant was built and what it measured, every figure taken from a run of this build
(eval-results.json, profile.json, trade.json, the int8 build reports), none typed by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edged.zoo.build.train.data import LABELS, SOURCES, TEACHER_ID
from edged.zoo.eval import EvalReport
from edged.zoo.manifest import Zoo

if TYPE_CHECKING:
    from edged.zoo.build.train.family import BuildContext
    from edged.zoo.profile import ProfileReport

SET_COLUMNS = (
    ("family-heldout", "in-domain held-out mAP50-95 / mAP50"),
    ("drone-people-heldout", "drone people AP50"),
    ("highway-heldout", "highway mAP50-95 / mAP50"),
    ("vtest-heldout-teacher", "vtest agreement with teacher mAP50"),
    ("coco-val-dev", "coco-val-dev (5 classes) mAP50-95 / mAP50"),
)


def write_model_card(
    ctx: BuildContext, zoo: Zoo, reports: list[EvalReport], profile: ProfileReport, command: str
) -> Path:
    results = {(r.variant, r.eval_set): r for r in reports}
    timing = {v.variant: v.profile for v in profile.variants}
    variant_ids = [v.id for v in zoo.variants]
    rows = [_row(zoo, vid, results, timing) for vid in variant_ids]
    teacher_rows = [_row(None, t, results, timing) for t in _teachers(reports, variant_ids)]
    parts = [
        _intro(zoo),
        "## Measured (one build, one profile run)\n",
        f"Device class `{profile.device_class}` ({profile.cpu}), {profile.threads} threads, "
        f"{profile.runs} timed runs per model, all models in the same run (rounds alternate). Energy is "
        "ESTIMATED by `edged zoo profile` as latency x an assumed active power (no power meter on this machine); "
        "it orders the variants exactly as latency does and is no measurement.\n",
        _table(rows + teacher_rows),
        _versus_teacher(results, timing, variant_ids),
        _set_notes(reports),
        _how_built(ctx, zoo),
        _pruning(ctx),
        _resolution_sweep(ctx),
        _int8(ctx),
        _binary(zoo),
        _reproduce(command, ctx),
        _limits(results, variant_ids),
    ]
    path = ctx.out / "MODEL_CARD.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _teachers(reports: list[EvalReport], mine: list[str]) -> list[str]:
    return list(dict.fromkeys(r.variant for r in reports if r.variant not in mine))


def _row(zoo: Zoo | None, vid: str, results: dict[tuple[str, str], EvalReport], timing: dict[str, Any]) -> list[str]:
    t = timing.get(vid)
    technique = zoo.variant(vid).technique_name if zoo else "teacher (COCO-80, third-party)"
    size = _kb(t.file_bytes) if t and t.file_bytes else "-"
    latency = f"{t.latency.p50_ms:.2f}" if t and t.latency else "-"
    energy = f"{t.energy.mj_per_inference:.1f}" if t and t.energy else "-"
    macs = f"{t.macs / 1e6:.0f} M" if t and t.macs else "-"
    cells = [vid, technique, size, macs, latency, energy]
    for eval_set, _ in SET_COLUMNS:
        r = results.get((vid, eval_set))
        if r is None:
            cells.append("-")
        elif eval_set == "drone-people-heldout":
            cells.append(f"{r.map50:.3f}")
        elif eval_set == "vtest-heldout-teacher":
            cells.append(f"{r.map50:.3f}")
        else:
            cells.append(f"{r.map50_95:.3f} / {r.map50:.3f}")
    return cells


def _table(rows: list[list[str]]) -> str:
    header = ["variant", "technique", "file", "MACs", "p50 ms", "energy mJ (est.)", *(c for _, c in SET_COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _kb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def _intro(zoo: Zoo) -> str:
    return f"""# Model card: `{zoo.manifest.family}`

edged's own detector family for drones and pole / road cameras: **{", ".join(LABELS)}**. Every file here was
trained by edged's build code from random initialisation (`edged/zoo/build/train/`); no third-party model or any
converted form of one is included. The teacher ({TEACHER_ID}, COCO-80, from ../shared) was only run to label
images that have no labels of their own.

Why these classes: they are what a drone or a pole camera is deployed to count and track (people; cars,
motorbikes, buses, trucks), they are the classes with real labels in the in-domain data (drone-people: person;
highway: bus, car, motorbike, person, truck), and they keep COCO's names, so any COCO model is scored against
the family on the same classes by name. Bicycles were left out: no in-domain labels.

The variants are one trained network at several input sizes (it is fully convolutional; 640 is the drone
operating point that keeps a 10-pixel person visible, 384 the most accurate on road scenes, 256 a cheap one), its
structurally pruned sibling at two sizes, int8 siblings (built by `edged zoo build --technique int8`) and a binary
sibling. The governor moves along the accuracy / energy front they span.
"""


def _versus_teacher(results: dict[tuple[str, str], EvalReport], timing: dict[str, Any], variant_ids: list[str]) -> str:
    """The best student against its teacher, on the same classes and the same held-out images."""
    best = _best(results, variant_ids)
    lines = [f"\n**Best student `{best}` against its teacher `{TEACHER_ID}`** (same images, same classes by name):\n"]
    for eval_set, _ in SET_COLUMNS:
        mine, theirs = results.get((best, eval_set)), results.get((TEACHER_ID, eval_set))
        if mine and theirs:
            lines.append(
                f"- {eval_set}: mAP50-95 {mine.map50_95:.3f} vs {theirs.map50_95:.3f}, "
                f"mAP50 {mine.map50:.3f} vs {theirs.map50:.3f}"
            )
    if best in timing and TEACHER_ID in timing and timing[best].latency and timing[TEACHER_ID].latency:
        mine_ms, theirs_ms = timing[best].latency.p50_ms, timing[TEACHER_ID].latency.p50_ms
        lines.append(f"- latency p50 {mine_ms:.2f} ms vs {theirs_ms:.2f} ms ({mine_ms / theirs_ms:.2f}x), same run")
        size_mine, size_theirs = timing[best].file_bytes, timing[TEACHER_ID].file_bytes
        if size_mine and size_theirs:
            lines.append(f"- file {_kb(size_mine)} vs {_kb(size_theirs)}")
    return "\n".join(lines) + "\n"


def _set_notes(reports: list[EvalReport]) -> str:
    sizes = {r.eval_set: r.images for r in reports}
    return f"""
Evaluation sets (all figures are pycocotools COCO mAP, score threshold 0.001, NMS 0.5, 100 detections):
- `family-heldout` ({sizes.get("family-heldout", "?")} images): the valid + test splits of drone-people and highway,
  never trained on, classes renamed into the family's. This is the accuracy in zoo.yaml.
- `drone-people-heldout` ({sizes.get("drone-people-heldout", "?")} images, person only) and `highway-heldout`
  ({sizes.get("highway-heldout", "?")} images): the same data per domain.
- `vtest-heldout-teacher` ({sizes.get("vtest-heldout-teacher", "?")} frames 640-794 of vtest.avi, never trained on):
  labelled by {TEACHER_ID}, so the figure is agreement with the teacher, not accuracy (the teacher scores 1.0).
- `coco-val-dev` ({sizes.get("coco-val-dev", "?")} images): general COCO scenes, OUT of domain for this family,
  scored on the five classes only (few vehicles there: the vehicle APs rest on a handful of boxes).
Held-out caveat: the Roboflow splits are random over video frames, so held-out images can be near neighbours of
training frames; they are the same domain, not new places.
"""


def _how_built(ctx: BuildContext, zoo: Zoo) -> str:
    from edged.zoo.build.train.family import BINARY_TRAINING, PRUNE_TRAINING, STUDENT, STUDENT_TRAINING

    durations = _json(ctx.work / "durations.json") or {}
    counts = _json(ctx.work / "cache-summary.json") or {}
    source_lines = "\n".join(
        f"| {s.name} | {'real labels' if s.kind == 'yolo' else TEACHER_ID + ' soft pseudo-labels'} | "
        f"{', '.join(s.supervised)} | {counts.get(s.name, {}).get('images', '?')} | "
        f"{counts.get(s.name, {}).get('boxes', '?')} | {s.sample_weight} |"
        for s in SOURCES
    )
    cfg = STUDENT_TRAINING
    minutes = ", ".join(f"{k} {v / 60:.0f} min" for k, v in durations.items())
    return f"""
## How it was built

Student: depthwise-separable stride-2 layers and inverted bottlenecks (expand {STUDENT.expand}), width
{STUDENT.width}, stages {list(STUDENT.stages)}, a top-down FPN ({STUDENT.neck} x width channels), anchor-free heads
at strides 8/16/32, ReLU, BatchNorm. The ONNX decodes boxes in-graph and emits the YOLOv8 layout [1, 4+5, N], read
by edged's existing `yolov8` decoder. Input: BGR, 0..1, letterboxed.

Training data (decoded once into a uint8 cache at the deployed scale; the held-out and tune splits are excluded):

| source | labels | classes supervised | images | boxes | draw weight |
|---|---|---|---|---|---|
{source_lines}

Real labels are the teacher where the COCO teachers are blind (drone views: {TEACHER_ID} person AP50 on
drone-people-heldout is in the table above) or where they exist; {TEACHER_ID}'s detections (score >= 0.3, the score
kept as a soft target) label the rest. A class an image was not labelled for is not taught as background there
(drone-people has person boxes only; the teacher misses cars seen from above in the intel frames).

Recipe: {cfg.epochs} epochs x {cfg.samples_per_epoch} samples, batch {cfg.batch}, {cfg.augment.size}px crops at the
deployed scale with scale jitter (tiny aerial people are never shrunk much), 4-way mosaic (p={cfg.augment.mosaic}),
flips, colour jitter; AdamW lr {cfg.lr}, {cfg.warmup_epochs} warm-up epochs, cosine to {cfg.final_lr_ratio} x;
EMA {cfg.ema_decay}; task-aligned assignment with centre sampling (tiny objects), quality-aware BCE + GIoU. Seed 0,
2 torch threads. Pruned: {PRUNE_TRAINING.epochs} epochs, binary: {BINARY_TRAINING.epochs} epochs, both distilled
from the student (its class probabilities and boxes) on top of the labels.

Build time on this 2-core CPU (shared with other work): {minutes or "see out/zoo-build/durations.json"}.
"""


def _pruning(ctx: BuildContext) -> str:
    from edged.zoo.build.train.family import PRUNE_KEEPS

    trade = _json(ctx.stage_dir("prune") / "trade.json")
    if not trade:
        return ""
    rows = []
    for name, t in trade.items():
        if isinstance(t, dict):
            rows.append(
                f"| {name} | {t['ratio']} | {t['params'] / 1e3:.0f} K | {t['macs'] / 1e6:.0f} M | "
                f"{t['latency_p50_ms']:.2f} | {t['tune_map50_95']:.3f} / {t['tune_map50']:.3f} |"
            )
    student, chosen = trade["student"], trade[trade["chosen"]]
    kept = chosen["tune_map50_95"] / max(student["tune_map50_95"], 1e-9)
    verdict = (
        f"It keeps {kept:.0%} of the student's tune mAP50-95 at {chosen['latency_p50_ms']:.2f} ms "
        f"against {student['latency_p50_ms']:.2f} ms."
    )
    if chosen["tune_map50_95"] < PRUNE_KEEPS * student["tune_map50_95"]:
        verdict += " No ratio met the rule, so the mildest one was kept: short fine-tuning did not recover more."
    return f"""
## Pruning: the measured trade

torch-pruning MetaPruner, magnitude (L2) importance, box/class predictors excluded, round_to=16: channels are
physically removed, so the ONNX is dense and smaller. Each ratio was fine-tuned with distillation, then measured
at 640 on the **tune** split (training images kept back, never trained on; not the held-out sets) with latency
from one `edged zoo profile` run. Rule: {trade["rule"]}. Chosen: **{trade["chosen"]}**.

| candidate | ratio | params | MACs (640) | p50 ms | tune mAP50-95 / mAP50 |
|---|---|---|---|---|---|
{chr(10).join(rows)}

{verdict}
"""


def _resolution_sweep(ctx: BuildContext) -> str:
    sweep = _json(ctx.work / "resolution-sweep.json")
    if not sweep:
        return ""
    rows = [
        f"| {key} | {r['size']} | {r['latency_p50_ms']:.2f} | {r['map50_95']:.3f} / {r['map50']:.3f} |"
        for key, r in sweep.items()
    ]
    return f"""
## Input size: the measured sweep (tune split)

The student and the pruned student at each input size, on the tune split, latency from one profile run. Trained on
320-pixel crops, the network is most accurate near 384 on road scenes (whose objects are large); 640 is shipped
because only there are tiny aerial people visible (see drone-people-heldout above). The shipped sizes were read
off this table.

| model | input | p50 ms | tune mAP50-95 / mAP50 |
|---|---|---|---|
{chr(10).join(rows)}
"""


def _int8(ctx: BuildContext) -> str:
    lines = []
    for path in sorted(ctx.work.glob("int8-*.json")):
        r = _json(path)
        if r:
            chosen = r.get("chosen", {})
            lines.append(
                f"- `{r['variant']}` from `{r['parent']}`: guard on `{r['eval_set']}` "
                f"(parent mAP50-95 {r['parent_map50_95']:.3f}, int8 {chosen.get('map50_95', float('nan')):.3f}, "
                f"max drop {r['max_drop']}): {'passed' if r['accepted'] else 'FAILED, written with --force'}; "
                f"{r.get('size_ratio') or 0:.1f}x smaller. {r['message']}"
            )
    if not lines:
        return "\n## int8\n\nNot built (`edged zoo build --technique int8` was not available).\n"
    return "\n## int8 (`edged zoo build --technique int8`)\n\n" + "\n".join(lines) + "\n"


def _binary(zoo: Zoo) -> str:
    binary = [v for v in zoo.variants if "binary" in v.technique]
    if not binary:
        return ""
    v = binary[0]
    sibling = zoo.variant(v.provenance.parent) if v.provenance.parent else None
    size = zoo.file_of(v).stat().st_size
    ratio = zoo.file_of(sibling).stat().st_size / size if sibling else float("nan")
    return f"""
## Binary: what it buys and what it does not

`{v.id}`: every convolution except the first (raw pixels) and the box/class predictors has 1-bit weights,
sign x a per-output-channel scale, trained with a straight-through estimator and distillation from the student.
The bits are stored packed (8 per byte) inside the ONNX and unpacked by the graph itself (BitShift, Mod, Cast;
opset 17), which ONNX Runtime constant-folds when it loads the model; per-channel scales and biases are float16.
**Buys:** a file {ratio:.1f}x smaller than its fp32 sibling `{sibling.id if sibling else "?"}` ({size / 1e3:.0f} KB):
download, flash and over-the-air updates. **Does not buy:** speed or energy on this CPU. Activations stay float
and the unpacked weights are float in memory, so it runs like its fp32 sibling (see the latency column); no CPU
kernel here runs binary convolutions faster. It is not int8-quantised (sign flips make that unusable).
"""


def _reproduce(command: str, ctx: BuildContext) -> str:
    return f"""
## Reproduce

Rebuild everything (fixed seed, resumable; checkpoints in out/zoo-build): `{command}` (or `make zoo`).
Check any accuracy figure (after `{command} --stages data`, which writes the evaluation folders):

    edged zoo eval --zoo model_zoo --data out/zoo-build/eval-sets/family-heldout
    edged zoo eval --zoo model_zoo --data out/zoo-build/eval-sets/drone-people-heldout
    edged zoo eval --zoo model_zoo --data out/zoo-build/eval-sets/highway-heldout
    edged zoo eval --zoo model_zoo --data ../shared/data/coco-val-dev --classes {",".join(LABELS)}
    edged zoo eval --zoo deploy/zoos/coco-reference --variant {TEACHER_ID} --data out/zoo-build/eval-sets/family-heldout
    edged zoo profile --zoo model_zoo && edged zoo report --zoo model_zoo --out model_zoo/report
"""


def _limits(results: dict[tuple[str, str], EvalReport], variant_ids: list[str]) -> str:
    def figure(vid: str, eval_set: str, ap50_only: bool = False) -> str:
        r = results.get((vid, eval_set))
        if r is None:
            return "?"
        return f"{r.map50:.3f}" if ap50_only else f"{r.map50_95:.3f} / {r.map50:.3f}"

    from edged.zoo.build.train.family import STUDENT_TRAINING

    best = _best(results, variant_ids)
    widest = max(variant_ids, key=lambda v: int(v.split("-")[1]) if v.split("-")[1].isdigit() else 0)
    return f"""
## Limits (read before relying on these models)

- The student is far from its teacher. On held-out road scenes `{best}` scores {figure(best, "highway-heldout")}
  (mAP50-95 / mAP50) against {figure(TEACHER_ID, "highway-heldout")} for {TEACHER_ID}, at a fraction of its
  cost (table above). What limited it, measured: {STUDENT_TRAINING.epochs} epochs from scratch (build time above)
  over about 1,800 images, and training crops of 320 pixels: the sweep above shows the network is most accurate at
  384 and loses half its tune mAP at 640, i.e. it learned objects at the scale of its crops. Longer training and
  crops at the deployed scale are the next step, not more compression.
- Tiny aerial people (median ~3 x 10 pixels at 640) are not solved by any model here: person AP50 on
  drone-people-heldout is {figure(widest, "drone-people-heldout", True)} for `{widest}` and
  {figure(TEACHER_ID, "drone-people-heldout", True)} for {TEACHER_ID}. The student at 640 is the better of the two
  there, but neither is useful for counting people from a drone yet.
- Out of domain (coco-val-dev, five classes) `{best}` scores {figure(best, "coco-val-dev")} against
  {figure(TEACHER_ID, "coco-val-dev")} for {TEACHER_ID}, which was trained on all of COCO: use the reference COCO
  models for general scenes.
- Scores are IoU-aware (they estimate the box's overlap, not a probability of 1 for a sure object), so they run
  lower than COCO models' confidences: a live score threshold of about 0.25 suits this family where 0.35 suits those.
- int8 is not faster on this CPU (depthwise-heavy net; see the latency column), only 3x smaller; energy figures
  are estimates (latency x assumed power), not measurements.
"""


def _best(results: dict[tuple[str, str], EvalReport], variant_ids: list[str]) -> str:
    """The most accurate variant on the in-domain held-out set."""
    scored = [v for v in variant_ids if (v, "family-heldout") in results]
    return max(scored, key=lambda v: results[(v, "family-heldout")].map50_95) if scored else variant_ids[0]


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None
