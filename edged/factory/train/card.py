"""MODEL_CARD.md: how each variant was built and what it measured, every figure taken from a run of this build
(eval-results.json, guards.json, profile.json, the int8 build reports), none typed by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edged.factory.train.data import LABELS, SOURCES, TEACHER_ID
from edged.zoo.eval import EvalReport
from edged.zoo.manifest import Zoo

if TYPE_CHECKING:
    from edged.factory.train.family import BuildContext
    from edged.zoo.profile import ProfileReport

PARENT_REFERENCE = "yolox-nano-416"  # the COCO parent, as the third-party file (deploy/zoos/coco-reference)
SET_COLUMNS = (
    ("family-heldout", "in-domain held-out mAP50-95 / mAP50"),
    ("drone-people-heldout", "drone people AP50 (500 dets)"),
    ("highway-heldout", "highway mAP50-95 / mAP50"),
    ("vtest-heldout-teacher", "vtest agreement with teacher mAP50"),
    ("coco-val-dev", "coco-val-dev (5 classes) mAP50-95 / mAP50"),
)


Results = dict[tuple[str, str], EvalReport]


def write_model_card(
    ctx: BuildContext, zoo: Zoo, reports: list[EvalReport], profile: ProfileReport, command: str
) -> Path:
    results = {(r.variant, r.eval_set): r for r in reports}
    timing = {v.variant: v.profile for v in profile.variants}
    variant_ids = [v.id for v in zoo.variants]
    guards = _json(ctx.work / "guards.json") or {}
    rows = [_row(zoo, vid, results, timing, guards) for vid in variant_ids]
    teacher_rows = [_row(None, t, results, timing, guards) for t in _teachers(reports, variant_ids)]
    parts = [
        _intro(zoo),
        "## Measured (one build, one profile run)\n",
        f"Device class `{profile.device_class}` ({profile.cpu}), {profile.threads} threads, "
        f"{profile.runs} timed runs per model and engine, all in the same run (rounds alternate); each variant's "
        "latency is that of its fastest engine here (column `engine`). Energy is ESTIMATED by `edged zoo profile` "
        "as latency x an assumed active power (no power meter on this machine): it orders the variants exactly as "
        "latency does and is no measurement. `drop, kept` is the mAP50-95 lost on family-heldout against what "
        "the variant was derived from (its provenance parent), the share kept, and the guard it was held to.\n",
        _table(rows + teacher_rows),
        _not_shipped(guards, _json(ctx.work / "speed-guards.json") or {}, _unbuilt(ctx)),
        _versus_parent(results, timing, variant_ids),
        _cheap_point(results, timing, variant_ids),
        _set_notes(reports),
        _alternates(results, guards, {v.id for v in zoo.variants}),
        _how_built(ctx),
        _compression(ctx, zoo),
        _int8(ctx),
        _speed(ctx),
        _reproduce(command),
        _limits(results, variant_ids),
        _licence(),
    ]
    path = ctx.out / "MODEL_CARD.md"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _teachers(reports: list[EvalReport], mine: list[str]) -> list[str]:
    from edged.factory.train.measure import TEACHERS

    return [t for t in TEACHERS if any(r.variant == t for r in reports)]


def _row(zoo: Zoo | None, vid: str, results: Results, timing: dict[str, Any], guards: dict[str, Any]) -> list[str]:
    t = timing.get(vid)
    technique = zoo.variant(vid).technique_name if zoo else "COCO-80 reference (third-party, not shipped)"
    size = _kb(t.file_bytes) if t and t.file_bytes else "-"
    latency = f"{t.latency.p50_ms:.2f}" if t and t.latency else "-"
    energy = f"{t.energy.mj_per_inference:.1f}" if t and t.energy else "-"
    macs = f"{t.macs / 1e6:.0f} M" if t and t.macs else "-"
    engine = (t.engine or "-") if t else "-"
    guard = guards.get(vid)
    drop = f"{guard['drop']:+.3f}, {guard['kept']:.2f}x ({guard['guard']})" if guard else "-"
    cells = [f"`{vid}`", technique, size, macs, engine, latency, energy, drop]
    for eval_set, _ in SET_COLUMNS:
        r = results.get((vid, eval_set))
        if r is None:
            cells.append("-")
        elif eval_set in ("drone-people-heldout", "vtest-heldout-teacher"):
            cells.append(f"{r.map50:.3f}")
        else:
            cells.append(f"{r.map50_95:.3f} / {r.map50:.3f}")
    return cells


def _table(rows: list[list[str]]) -> str:
    header = ["variant", "technique", "file", "MACs / frame", "engine", "p50 ms", "energy mJ (est.)"]
    header.append("drop, kept (guard)")
    header += [c for _, c in SET_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _kb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def _intro(zoo: Zoo) -> str:
    from edged.factory.train.family import PARENT_FILE, PARENT_ID

    purposes = {
        "yolox-drone-1920": "drones: the drone specialist (below) on the whole frame at 3x its size, a 640-pixel "
        "frame shown at 1920: the best on aerial people on the tune split, by far the costliest. The governor ranks "
        "variants by family-heldout accuracy, where it is not the best: pin it for a search (MQTT `set/variant`, or "
        "`governor.mode: pinned` with `pinned_variant`)",
        "yolox-drone-1600": "drones: the drone specialist at 2.5x its size (1600), for a search at two-thirds of the "
        "cost of 1920, within the noise of it on the held-out split",
        "yolox-drone-1280": "drones: the drone specialist at twice its size (1280), at under half the cost of 1920, "
        "missing more of the smallest people",
        PARENT_ID: "the fine-tuned parent at its native size: road and pole cameras, the default",
        "yolox-ft-320": "the same network on a smaller input: cheaper, loses small objects first",
        "yolox-ft-256": "the same network on a small input",
        "yolox-ft-224": "the same network on a smaller input still: road objects survive, aerial people do not",
        "yolox-ft-192": "the same network at its smallest operating point: the cheap end",
        "yolox-small-224": "the small specialist (below) at 224: the cheap end for road and pole cameras",
        "yolox-small-192": "the small specialist at 192: the cheapest float point",
        "yolox-relu-416": "ReLU instead of SiLU: cheaper in float, and the base of the int8 siblings",
        "yolox-relu-320": "the ReLU sibling on a smaller input",
        "yolox-relu-256": "the ReLU sibling on a small input: road objects survive, aerial people do not",
        "yolox-relu-416-int8": "int8 of the ReLU sibling: the fast mid-point",
        "yolox-relu-320-int8": "int8 of the ReLU sibling on a smaller input",
        "yolox-relu-256-int8": "int8 of the ReLU sibling on a small input: the cheap end for road cameras",
        "pruned25-416-int8": "int8 of the quarter-pruned sibling",
        "pruned25-416": "a quarter of the channels removed",
        "pruned50-416": "half the channels removed: the cheap end",
        "pruned50-416-int8": "int8 of the half-pruned sibling: the cheapest",
        "lowrank-416": "1x1 convolutions factorized into thinner pairs",
        "binary-416": "1-bit weights: the smallest file (download, flash), not faster on a CPU",
    }
    lines = "\n".join(f"- `{v.id}` ({v.technique_name}): {purposes.get(v.id, '')}" for v in zoo.variants)
    return f"""# Model card: `{zoo.manifest.family}`

edged's detector family for drones and pole / road cameras: **{", ".join(LABELS)}**. Every variant is derived by
edged's own factory (`edged/factory/`) from one pretrained parent, YOLOX-nano (Megvii, Apache-2.0; the COCO ONNX
export `{Path(PARENT_FILE).name}` from ../shared, sha256 in each variant's provenance): fine-tuned to these classes
and this domain, then compressed. The parent file itself is not shipped, only what the factory derived from it.

What each variant is for (the governor moves between them as the battery, the power and the accuracy asked for
change):

{lines}
"""


def _versus_parent(results: Results, timing: dict[str, Any], variant_ids: list[str]) -> str:
    """The best variant against the COCO parent, on the same classes and the same held-out images."""
    best = _best(results, variant_ids)
    lines = [
        f"\n**Best variant `{best}` against the COCO parent `{PARENT_REFERENCE}`** (same images, same classes by "
        "name; the parent is the third-party file, run by edged):\n"
    ]
    for eval_set, _ in SET_COLUMNS:
        mine, theirs = results.get((best, eval_set)), results.get((PARENT_REFERENCE, eval_set))
        if mine and theirs:
            lines.append(
                f"- {eval_set}: mAP50-95 {mine.map50_95:.3f} vs {theirs.map50_95:.3f}, "
                f"mAP50 {mine.map50:.3f} vs {theirs.map50:.3f}"
            )
    if best in timing and PARENT_REFERENCE in timing and timing[best].latency and timing[PARENT_REFERENCE].latency:
        mine_ms, theirs_ms = timing[best].latency.p50_ms, timing[PARENT_REFERENCE].latency.p50_ms
        lines.append(f"- latency p50 {mine_ms:.2f} ms vs {theirs_ms:.2f} ms ({mine_ms / theirs_ms:.2f}x), same run")
    return "\n".join(lines) + "\n"


def _cheap_point(results: Results, timing: dict[str, Any], variant_ids: list[str]) -> str:
    """The most accurate variant at <= 1/3 of the best one's latency, and the share of its accuracy it keeps."""
    best = _best(results, variant_ids)
    if best not in timing or not timing[best].latency:
        return ""
    budget = timing[best].latency.p50_ms / 3
    cheap = [
        v
        for v in variant_ids
        if v in timing and timing[v].latency and timing[v].latency.p50_ms <= budget and (v, "family-heldout") in results
    ]
    if not cheap:
        return f"\nNo variant runs at <= 1/3 of `{best}`'s p50 ({budget:.2f} ms).\n"
    pick = max(cheap, key=lambda v: results[(v, "family-heldout")].map50_95)
    kept = results[(pick, "family-heldout")].map50_95 / results[(best, "family-heldout")].map50_95
    return (
        f"\n**At a third of the cost:** `{pick}` runs at {timing[pick].latency.p50_ms:.2f} ms "
        f"(<= {budget:.2f} ms, a third of `{best}`'s {timing[best].latency.p50_ms:.2f} ms) and keeps {kept:.2f}x of "
        f"its family-heldout mAP50-95 ({results[(pick, 'family-heldout')].map50_95:.3f} vs "
        f"{results[(best, 'family-heldout')].map50_95:.3f}).\n"
    )


def _set_notes(reports: list[EvalReport]) -> str:
    from edged.factory.train.measure import CROWD_DETECTIONS

    sizes = {r.eval_set: r.images for r in reports}
    return f"""
Evaluation sets (all figures are pycocotools COCO mAP, score threshold 0.001, NMS 0.5, 100 detections per image;
{CROWD_DETECTIONS} on drone-people-heldout, where one image can hold hundreds of people, as VisDrone scores crowds):
- `family-heldout` ({sizes.get("family-heldout", "?")} images): the valid + test splits of drone-people and highway,
  never trained on, classes renamed into the family's. This is the accuracy in zoo.yaml and what the guards use.
- `drone-people-heldout` ({sizes.get("drone-people-heldout", "?")} images, person only) and `highway-heldout`
  ({sizes.get("highway-heldout", "?")} images): the same data per domain.
- `vtest-heldout-teacher` ({sizes.get("vtest-heldout-teacher", "?")} frames 640-794 of vtest.avi, never trained on):
  labelled by {TEACHER_ID}, so the figure is agreement with the COCO parent, not accuracy (it scores 1.0).
- `coco-val-dev` ({sizes.get("coco-val-dev", "?")} images): general COCO scenes, out of domain for this family,
  scored on the five classes only (few vehicles there: the vehicle APs rest on a handful of boxes).
Noise: a 64-image set moves by about 0.01 by chance; the held-out sets are larger but come from video frames split
at random by Roboflow, so held-out images can be near neighbours of training frames: the same domain, not new
places. Build decisions were taken on the tune split (training images kept back), not on these sets.
"""


def _unbuilt(ctx: BuildContext) -> list[str]:
    """The compression stages this work folder never ran (a partial rebuild: their siblings were not remade)."""
    ran = _json(ctx.work / "durations.json") or {}
    return [stage for stage in ("prune", "lowrank", "binary") if stage not in ran]


def _not_shipped(guards: dict[str, Any], speed: dict[str, Any], unbuilt: list[str]) -> str:
    """What the factory built and its guards kept out of the zoo, each with the numbers that decided it."""
    rows = []
    for vid, verdict in {**guards, **speed}.items():
        if verdict["passed"] or "@" in vid:
            continue  # other engines' files: their own section
        if "reason" in verdict:
            why = f"derived from `{verdict['against']}`, which is not shipped"
        elif "ratio" in verdict:
            why = (
                f"cost: p50 {verdict['p50_ms']:.2f} ms ({verdict['engine']}), {verdict['ratio']:.2f}x "
                f"`{verdict['against']}`'s {verdict['parent_p50_ms']:.2f} ms ({verdict['parent_engine']}); ships at "
                f"<= {verdict['max_ratio']}x"
            )
        else:
            why = (
                f"accuracy: {verdict['map50_95']:.3f} against `{verdict['against']}`'s "
                f"{verdict['parent_map50_95']:.3f}, {verdict['kept']:.3f}x ({verdict['guard']})"
            )
        rows.append(f"| `{vid}` | {why} |")
    note = (
        f"\nNot rebuilt by this build (stages not run in its work folder: {', '.join(unbuilt)}): their siblings "
        "were not remade, and the verdicts of the last build that ran them stand (this file's git history keeps "
        "that build's table).\n"
        if unbuilt
        else ""
    )
    if not rows:
        return note and "\n## Built, not shipped\n" + note
    return (
        "\n## Built, not shipped\n\nThe factory made these and held them to their guards on family-heldout (or to "
        "the int8 cost rule in the same profile run); they failed, and the zoo does not carry them:\n\n"
        "| variant | why |\n|---|---|\n" + "\n".join(rows) + "\n" + note
    )


def _alternates(results: Results, guards: dict[str, Any], shipped: set[str]) -> str:
    rows = []
    for (name, eval_set), r in results.items():
        if "@" in name and eval_set == "family-heldout":
            verdict, vid = guards.get(name, {}), name.split("@")[0]
            fate = "shipped" if verdict.get("passed") else "not shipped"
            if vid not in shipped:
                fate = "not shipped (its variant is not)"
            rows.append(
                f"| `{vid}` | {name.split('@')[1]} | {r.map50_95:.3f} / {r.map50:.3f} | "
                f"{verdict.get('drop', float('nan')):+.3f} ({verdict.get('guard', '?')}) | {fate} |"
            )
    if not rows:
        return ""
    return (
        "\n## Other engines' files\n\nEach variant's files for the engines it is not opened on here, on "
        "family-heldout. An int8 variant's two files are quantized by two tools (ONNX Runtime QDQ, PT2E for LiteRT), "
        "so each is held to the int8 guard against the float parent; any other file against the variant's own "
        "figure above:\n\n| variant | engine | mAP50-95 / mAP50 | drop (guard) | |\n|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )


def _how_built(ctx: BuildContext) -> str:
    from edged.factory.tflite import Finetune
    from edged.factory.train.family import (
        BINARY_TRAINING,
        DRONE_SCALE,
        DRONE_SHARE,
        DRONE_TRAINING,
        LOWRANK_TRAINING,
        PARENT_TRAINING,
        PRUNE_TRAINING,
        RELU_TRAINING,
        SMALL_SCALE,
        SMALL_TRAINING,
    )

    durations = _json(ctx.work / "durations.json") or {}
    counts = _json(ctx.work / "cache-summary.json") or {}
    draws = {s.name: counts.get(s.name, {}).get("images", 0) * s.sample_weight for s in SOURCES}
    parent_drone_share = f"{draws['drone-people'] / sum(draws.values()):.0%}" if sum(draws.values()) else "?"
    source_lines = "\n".join(
        f"| {s.name} | {'real labels' if s.kind == 'yolo' else TEACHER_ID + ' soft pseudo-labels'} | "
        f"{', '.join(s.supervised)} | {counts.get(s.name, {}).get('images', '?')} | "
        f"{counts.get(s.name, {}).get('boxes', '?')} | {s.sample_weight} | {s.scale_range[0]}-{s.scale_range[1]} |"
        for s in SOURCES
    )
    cfg = PARENT_TRAINING
    from edged.factory.train.family import STAGES

    minutes = ", ".join(f"{k} {v / 60:.0f} min" for k, v in durations.items())
    if missing := [s for s in STAGES if s not in durations and s not in ("measure", "card")]:  # these write it
        minutes += (
            f" (not run in this work folder: {', '.join(missing)}; where a stage's checkpoint was missing its "
            "shipped file was read back or kept, as the factory does on a fresh checkout)"
        )
    return f"""
## How it was built

**Parent.** YOLOX-nano written in torch (`edged/factory/train/yolox.py`) and loaded from the ONNX file's weights
(BatchNorm already folded there); tested to agree with ONNX Runtime to float precision and to score the same mAP
on coco-val-dev (`tests/test_yolox_parent.py`). The class predictor keeps the rows of COCO's person, car,
motorcycle, bus and truck, so fine-tuning starts from exactly the parent's scores for them. The loss works on the
logit of objectness x class (pre-sigmoid), boxes with GIoU, task-aligned assignment with centre sampling.

Training data (decoded once into a uint8 cache; held-out and tune splits excluded):

| source | labels | classes supervised | images | boxes | draw weight | scale |
|---|---|---|---|---|---|---|
{source_lines}

Real labels where they exist; where an image has none for a class, the COCO parent itself is the teacher for that
class (its soft scores and boxes, distilled), so it keeps what it knew without overruling labels where it is blind
(aerial people). Drone images are learnt at 1.4-2.6x their size (the drone specialist's at 1.8-3.2x).

Recipe: {cfg.epochs} epochs x {cfg.samples_per_epoch} samples, batch {cfg.batch}, {cfg.augment.size}px crops, 4-way
mosaic (p={cfg.augment.mosaic}), flips, colour jitter; AdamW lr {cfg.lr} (3e-4 lost 0.05 tune mAP in 60 steps:
nothing like BatchNorm is left to steady a fused network), {cfg.warmup_epochs} warm-up epoch, cosine to
{cfg.final_lr_ratio}x; EMA {cfg.ema_decay}. Seed 0, 2 torch threads.

**Siblings**, each distilled from the fine-tuned parent (all classes) on top of the labels: ReLU sibling
{RELU_TRAINING.epochs} epochs; pruned {PRUNE_TRAINING.epochs} epochs per ratio; low-rank {LOWRANK_TRAINING.epochs}
epochs; binary {BINARY_TRAINING.epochs} epochs (lr {BINARY_TRAINING.lr}). int8 by `edged zoo build --technique
int8` (ONNX Runtime QDQ) on the ONNX files; for the TFLite files by PT2E (litert-torch's quantizer): the ReLU
sibling's channel ranges equalized across layers (`edged.factory.equalize`, the same function), calibrated on the
128 calibration images, then {Finetune().epochs} epochs with the quantizer in the loop on them and their mirrors,
distilled from the float file (`edged.factory.tflite.Finetune`). The float TFLite files keep their weights in
float16 (half the size; XNNPACK computes in float32). Every ONNX file but the ReLU sibling's (which ONNX Runtime's
int8 build quantizes, from float32 weights) stores its convolution weights in float16 too, widened to float32 by a
Cast that ONNX Runtime folds at load (`edged.factory.onnx_graph.store_weights_float16`): half the file, the same
float32 graph.

**Drone specialist.** The fine-tuned parent trained {DRONE_TRAINING.epochs} epochs more (lr {DRONE_TRAINING.lr}),
{DRONE_SHARE:.0%} of its samples drawn from drone-people (the parent drew {parent_drone_share}), the fine-tuned parent
teaching the classes a drone image has no labels for. Why: the parent scored no better on its own drone training
images than on held-out ones (an exploratory measurement, `DRONE_SHARE` in edged/factory/train/family.py): it
underfitted them. Its box loss adds to GIoU an L1 term on the raw box encoding (gain
{DRONE_TRAINING.loss.l1_gain:g}, YOLOX's own localisation term): GIoU alone is least, where a 2-pixel person's place
is in doubt by a pixel, on a box half as wide again (tests/test_loss.py), and such boxes miss IoU 0.5. Its drone
views are drawn at {DRONE_SCALE[0]:g}-{DRONE_SCALE[1]:g}x their size (`DRONE_SCALE`), around the scale its points
run at (2-3x), where the parent learnt them at 1.4-2.6x. Its input sizes were chosen on drone-people-tune among
sizes and tilings (`DRONE_POINTS` there, beside the recipes tried and not kept).

**Small specialist.** The fine-tuned parent trained {SMALL_TRAINING.epochs} epochs more (lr {SMALL_TRAINING.lr},
{SMALL_TRAINING.augment.size}px crops) with every image drawn at {SMALL_SCALE}x the scale it learnt: the parent saw
most frames at 256-800 pixels on their longest side, so at 192-224 it runs below the smallest scale it was
taught. The same loss as the parent's, the fine-tuned parent teaching at the same scale only the classes an image
has no labels for. Each of its points is held to the fine-tuned parent's point at the same input size (it must at
least match what it replaces).

Build time on this 2-core CPU (shared with other work): {minutes or "see out/zoo-build/durations.json"}.
"""


def _compression(ctx: BuildContext, zoo: Zoo) -> str:
    from edged.factory.train.family import LOWRANK_RATIO

    parts = []
    pruned = _json(ctx.stage_dir("prune") / "summary.json") or {}
    if pruned:
        rows = "\n".join(
            f"| {p['ratio']:.0%} | {p['params'] / 1e3:.0f} K | {p['macs'] / 1e6:.0f} M |" for p in pruned.values()
        )
        parts.append(
            "\n## Pruning\n\nThe fine-tuned parent's free channels (inside a block, tied to nothing else: "
            "edged.factory.train.prune), chosen on real activations, each removed channel's mean kept in its "
            "readers' biases, channel counts in multiples of 8: channels are physically removed, so the ONNX is a "
            f"smaller dense network.\n\n| ratio | params | MACs at 416 |\n|---|---|---|\n{rows}\n"
        )
    layers = _json(ctx.stage_dir("lowrank") / "layers.json") or []
    if layers:
        kept = sum(f["energy_kept"] for f in layers) / len(layers)
        parts.append(
            f"\n## Low rank\n\n{len(layers)} 1x1 convolutions of the fine-tuned parent split into in -> r -> out "
            f"pairs, r = {LOWRANK_RATIO} x min(in, out) rounded up to a multiple of 8 (only where that saves >= 25 % "
            "of the layer's multiplies), fitted to the layers' responses on 128 training crops (the top-r principal "
            f"components of each output; mean share of response variance kept {kept:.2f}), then distilled.\n"
        )
    binary = [v for v in zoo.variants if "binary" in v.technique]
    if binary:
        v = binary[0]
        size = zoo.file_of(v).stat().st_size
        parts.append(
            f"\n## Binary\n\n`{v.id}`: {_binary_layers(ctx)} (sign x a per-channel scale, straight-through "
            "estimator, distilled from the fine-tuned parent, then every BatchNorm re-measured for the signs it ended "
            "with); the stem, the stride-4/8 stages, the stride-2 transitions, depthwise filters and the head stay "
            "float: binarized alone, each of those cost the most (`python -m edged.factory.train.binary_sensitivity`, "
            f"family.py's BINARY_SCOPE). The bits are packed 8 to a byte in the ONNX and unpacked by the graph at "
            f"load: {size / 1e3:.0f} KB. "
            "It buys size (download, flash), not speed: no CPU kernel here runs binary convolutions faster, so it "
            "runs like its float sibling.\n"
        )
    return "".join(parts)


def _binary_layers(ctx: BuildContext) -> str:
    summary = _json(ctx.stage_dir("binary") / "summary.json")
    if not summary:
        return "1-bit weights in the pointwise convolutions of its deep stages and neck"
    return (
        f"1-bit weights in {summary['layers']} pointwise convolutions ({', '.join(summary['scope'])}), "
        f"{summary['share']:.0%} of the convolution weights"
    )


def _int8(ctx: BuildContext) -> str:
    lines = []
    for path in sorted(ctx.work.glob("int8-*.json")):
        r = _json(path)
        if r:
            chosen = r.get("chosen", {})
            lines.append(
                f"- `{r['variant']}` from `{r['parent']}`: guard on `{r['eval_set']}` "
                f"(parent mAP50-95 {r['parent_map50_95']:.3f}, int8 {chosen.get('map50_95', float('nan')):.3f}, "
                f"max drop {r['max_drop']}): {'passed' if r['accepted'] else 'FAILED'}; "
                f"{r.get('size_ratio') or 0:.1f}x smaller. {r['message']}"
            )
    if not lines:
        return ""
    return "\n## int8 (`edged zoo build --technique int8`)\n\n" + "\n".join(lines) + "\n"


def _speed(ctx: BuildContext) -> str:
    verdicts = _json(ctx.work / "speed-guards.json") or {}
    if not verdicts:
        return ""
    rows = "\n".join(
        f"| `{vid}` | {v['p50_ms']:.2f} ({v['engine']}) | `{v['against']}` {v['parent_p50_ms']:.2f} "
        f"({v['parent_engine']}) | {v['ratio']:.2f} | {'shipped' if v['passed'] else 'not shipped'} |"
        for vid, v in verdicts.items()
        if "ratio" in v
    )
    return (
        "\n## int8 must be cheaper\n\nAn int8 variant ships only at <= "
        f"{next(iter(verdicts.values()))['max_ratio']} x its float parent's p50 here (each on its fastest engine, "
        "same profile run):\n\n| int8 variant | p50 ms | float parent p50 ms | ratio | |\n|---|---|---|---|---|\n"
        + rows
        + "\n"
    )


def _reproduce(command: str) -> str:
    return f"""
## Reproduce

Rebuild everything (fixed seed, resumable; checkpoints in out/zoo-build): `{command}` (or `make zoo`).
Check any accuracy figure (after `{command} --stages data`, which writes the evaluation folders):

    edged zoo eval --zoo model_zoo --data out/zoo-build/eval-sets/family-heldout
    edged zoo eval --zoo model_zoo --data out/zoo-build/eval-sets/drone-people-heldout
    edged zoo eval --zoo model_zoo --data ../shared/data/coco-val-dev --classes {",".join(LABELS)}
    edged zoo eval --zoo deploy/zoos/coco-reference --variant {PARENT_REFERENCE} \\
        --data out/zoo-build/eval-sets/family-heldout
    edged zoo profile --zoo model_zoo && edged zoo report --zoo model_zoo --out model_zoo/report
"""


def _limits(results: Results, variant_ids: list[str]) -> str:
    from edged.factory.train.family import PARENT_ID

    def figure(vid: str, iou: str | None = None) -> str:
        r = results.get((vid, "drone-people-heldout"))
        return "?" if r is None else f"{r.map50 if iou is None else r.ap_at_iou.get(iou, float('nan')):.3f}"

    drone = {
        v: results[(v, "drone-people-heldout")].map50 for v in variant_ids if (v, "drone-people-heldout") in results
    }
    best = max(drone, key=lambda v: drone[v]) if drone else PARENT_ID
    return f"""
## Limits (read before relying on these models)

- Tiny aerial people (median ~3 x 10 pixels at 640, a quarter of them under 2 pixels wide) are still mostly
  missed at IoU 0.5: person AP50 on drone-people-heldout is {figure(best)} for `{best}`, against {figure(PARENT_ID)}
  for `{PARENT_ID}` and {figure(PARENT_REFERENCE)} for the COCO parent. Most of what IoU 0.5 misses is found with a
  box a pixel or two off: the same detections score AP {figure(best, "0.3")} at IoU 0.3 and {figure(best, "0.1")} at 0.1
  (`edged zoo eval --iou 0.1,0.3 --max-detections 500`). Good enough to see where people are from a drone, not to
  draw their outlines or to count a dense crowd one by one.
- Out of domain (coco-val-dev, five classes) the family trades some general-scene accuracy for its domain: compare
  the rows above; use the reference COCO models for general scenes.
- Energy figures are estimates (latency x an assumed power), not measurements.
"""


def _licence() -> str:
    return """
## Licence and provenance

The network and its weights derive from YOLOX (Copyright (c) 2021-2022 Megvii Inc.), Apache License 2.0; the
fine-tuning data are CC BY 4.0 (drone-people: Roboflow Universe "resq/tiny-people-detection-rpi"; highway:
Roboflow Universe "universitas-tidar/highway-object-detection") and COCO (CC BY 4.0, images under Flickr terms).
Every variant's `provenance` in zoo.yaml names the command, the parent's sha256, the data and the seed that rebuild
it. See NOTICE in this folder.
"""


def _best(results: Results, variant_ids: list[str]) -> str:
    """The most accurate variant on the in-domain held-out set."""
    scored = [v for v in variant_ids if (v, "family-heldout") in results]
    return max(scored, key=lambda v: results[(v, "family-heldout")].map50_95) if scored else variant_ids[0]


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None
