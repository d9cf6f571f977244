"""The family build's accuracy guard: a compressed variant that loses more than its guard against what it was
derived from is not shipped (its entry and its file go; a file another variant shares stays), an int8 variant is
held against its float parent, and another engine's file against its own variant's. Needs the [build] extra."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_or_skip

require_or_skip("torch", reason="torch is in the [build] extra, not in `make test`'s install")

from edged.factory.train.family import GUARDS, PARENT_ID  # noqa: E402
from edged.factory.train.measure import ALTERNATE_GUARD, drop_failed, guard_verdicts  # noqa: E402
from edged.zoo.eval import EvalReport  # noqa: E402
from edged.zoo.manifest import load_zoo, sha256_of  # noqa: E402


def _report(variant: str, map50_95: float) -> EvalReport:
    return EvalReport(
        variant=variant,
        eval_set="family-heldout",
        eval_set_sha256="0" * 64,
        images=446,
        classes=["person"],
        map50_95=map50_95,
        map50=map50_95 * 1.5,
        per_class_ap={},
        per_class_ap50={},
        score_threshold=0.001,
        nms_iou=0.5,
        max_detections=100,
        mean_latency_ms=1.0,
    )


@pytest.fixture()
def family(shared: Path, tmp_path: Path) -> Path:
    """A zoo shaped like the family's (ids, parents, one shared file, one TFLite alternate); real model files."""
    onnx, tflite = tmp_path / "m.onnx", tmp_path / "m.tflite"
    shutil.copy(shared / "models" / "coco" / "fastestdet_352.onnx", onnx)
    for name in ("pruned25-416.onnx", "pruned25-416-int8.onnx", "relu-int8.onnx"):
        shutil.copy(onnx, tmp_path / name)
    shutil.copy(shared / "models" / "tflite" / "fastestdet_352_float32.tflite", tflite)
    shutil.copy(tflite, tmp_path / "relu-int8.tflite")

    def variant(vid: str, file: str, technique: str, parent: str | None = None, alternate: str = "") -> dict:
        entry = {
            "id": vid,
            "technique": technique,
            "format": "onnx",
            "file": file,
            "sha256": sha256_of(tmp_path / file),
            "input": {"size": [352, 352], "resize": "stretch", "scale": 1 / 255},
            "decoder": "fastestdet",
            "provenance": {"parent": parent} if parent else {},
        }
        if alternate:
            entry["alternates"] = [
                {"format": "tflite", "file": alternate, "sha256": sha256_of(tmp_path / alternate), "layout": "NHWC"}
            ]
        return entry

    manifest = {
        "schema": "edged.zoo/v1",
        "family": "f",
        "labels": str(shared / "models" / "coco" / "coco.names"),
        "default": PARENT_ID,
        "variants": [
            variant(PARENT_ID, "m.onnx", "fine-tuned"),
            variant("yolox-relu-416", "m.onnx", "fine-tuned+distilled", PARENT_ID, alternate="m.tflite"),
            variant("yolox-relu-416-int8", "relu-int8.onnx", "fine-tuned+int8", "yolox-relu-416", "relu-int8.tflite"),
            variant("pruned25-416", "pruned25-416.onnx", "fine-tuned+pruned", PARENT_ID),
            variant("pruned25-416-int8", "pruned25-416-int8.onnx", "fine-tuned+pruned+int8", "pruned25-416"),
        ],
    }
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return tmp_path


def test_a_variant_past_its_guard_is_not_shipped_and_the_rest_are(family: Path):
    zoo = load_zoo(family)
    parent = 0.50
    relu_score = GUARDS["yolox-relu-416"].min_kept * parent + 0.005  # just within: keeps a hair more than asked
    reports = [
        _report(PARENT_ID, parent),
        _report("yolox-relu-416", relu_score),
        _report("yolox-relu-416@litert", relu_score - ALTERNATE_GUARD.max_drop - 0.01),  # past its own file's
        _report("pruned25-416", GUARDS["pruned25-416"].min_kept * parent - 0.01),  # past
        _report("pruned25-416-int8", GUARDS["pruned25-416"].min_kept * parent - 0.02),  # within, against its parent
    ]
    verdicts = guard_verdicts(zoo, reports)
    assert verdicts["yolox-relu-416"]["passed"] and verdicts["yolox-relu-416"]["guard"] == "keeps >= 0.75x"
    assert not verdicts["pruned25-416"]["passed"] and verdicts["pruned25-416"]["against"] == PARENT_ID
    assert verdicts["pruned25-416-int8"]["against"] == "pruned25-416" and verdicts["pruned25-416-int8"]["passed"]
    assert verdicts["pruned25-416-int8"]["guard"] == "drop <= 0.02"
    assert not verdicts["yolox-relu-416@litert"]["passed"]
    assert PARENT_ID not in verdicts  # the parent is what the others are held to, not held itself

    kept = drop_failed(zoo, [v for v, verdict in verdicts.items() if not verdict["passed"]])
    assert [v.id for v in kept.variants] == [PARENT_ID, "yolox-relu-416", "yolox-relu-416-int8", "pruned25-416-int8"]
    assert kept.variant("yolox-relu-416").alternates == []
    assert not (family / "pruned25-416.onnx").exists() and not (family / "m.tflite").exists()
    assert (family / "m.onnx").exists() and (family / "pruned25-416-int8.onnx").exists()
    assert load_zoo(family).manifest.default == PARENT_ID  # the written manifest loads, verified


def test_a_manifest_default_that_names_no_variant_is_refused(family: Path):
    from edged.errors import ConfigError

    text = (family / "zoo.yaml").read_text().replace(f"default: {PARENT_ID}", "default: nope")
    (family / "zoo.yaml").write_text(text)
    with pytest.raises(ConfigError, match="default: no variant 'nope'"):
        load_zoo(family)


def test_an_int8_variants_other_file_is_held_to_the_int8_guard_against_the_float_parent(family: Path):
    """Two int8 files of one variant are quantized by two tools: the one this machine does not open is held to what
    int8 may lose against the float parent, not merely to the chosen file (which may itself be near the line)."""
    zoo = load_zoo(family)
    drop = GUARDS["yolox-relu-416-int8"].max_drop
    assert drop is not None
    parent = 0.40
    reports = [
        _report(PARENT_ID, 0.50),
        _report("yolox-relu-416", parent),
        _report("yolox-relu-416-int8", parent - drop + 0.005),  # within
        _report("yolox-relu-416-int8@litert", parent - drop - 0.005),  # 0.01 from its twin, past the parent's guard
    ]
    verdicts = guard_verdicts(zoo, reports)
    assert verdicts["yolox-relu-416-int8"]["passed"]
    other = verdicts["yolox-relu-416-int8@litert"]
    assert not other["passed"] and other["against"] == "yolox-relu-416" and other["guard"] == "drop <= 0.02"

    kept = drop_failed(zoo, [v for v, verdict in verdicts.items() if not verdict["passed"]])
    assert kept.variant("yolox-relu-416-int8").alternates == [] and not (family / "relu-int8.tflite").exists()
    assert kept.variant("yolox-relu-416").alternates  # the float twin's file is another variant's, kept


def test_export_keeps_a_shipped_sibling_and_leaves_out_one_never_built(tmp_path: Path):
    """A partial rebuild (no checkpoint of a sibling's stage in the work folder) keeps the sibling's shipped file,
    and where none ships (its guard turned it away before) leaves it out instead of stopping the build."""
    from edged.factory.train.family import BuildContext, _sibling_file

    ctx = BuildContext(tmp_path / "shared", tmp_path / "out", tmp_path / "work")
    ctx.out.mkdir()

    def export(model, path):
        raise AssertionError("nothing to export: the stage never ran")

    assert _sibling_file(ctx, "lowrank", "lowrank-416", export) is None
    shipped = ctx.out / "lowrank-416.onnx"
    shipped.write_bytes(b"the shipped file")
    assert _sibling_file(ctx, "lowrank", "lowrank-416", export) == shipped


def test_an_int8_variant_whose_own_file_fails_goes_whole(family: Path):
    """Where the chosen engine is the alternate's (LiteRT) and the variant's first file (ONNX) is past its guard,
    the variant goes: a manifest entry cannot drop its own file and keep the rest."""
    zoo = load_zoo(family)
    reports = [
        _report(PARENT_ID, 0.50),
        _report("yolox-relu-416", 0.40),
        _report("yolox-relu-416-int8", 0.395),  # its TFLite, the chosen file: within
        _report("yolox-relu-416-int8@onnxruntime", 0.35),  # its own ONNX: past
    ]
    verdicts = guard_verdicts(zoo, reports)
    kept = drop_failed(zoo, [v for v, verdict in verdicts.items() if not verdict["passed"]])
    assert "yolox-relu-416-int8" not in [v.id for v in kept.variants]
    assert not (family / "relu-int8.onnx").exists() and not (family / "relu-int8.tflite").exists()


def test_a_specialists_points_are_held_to_the_fine_tuned_parent_at_their_own_size(tmp_path: Path):
    """The small specialist must beat the fine-tuned parent at the size it would replace it (192, 224); the drone
    points, at sizes the parent has no point for, are held to the parent at its own."""
    from edged.factory.train.family import (
        DRONE_NETWORK,
        DRONE_POINTS,
        SMALL_NETWORK,
        SMALL_POINTS,
        BuildContext,
        _provenance,
        _specialist_entries,
    )

    ctx = BuildContext(tmp_path / "shared", tmp_path / "out", tmp_path / "work")
    ctx.out.mkdir()
    for network in (SMALL_NETWORK, DRONE_NETWORK):
        (ctx.out / f"{network}.onnx").write_bytes(b"the shipped file")  # no checkpoint: the shipped file is kept
    provenance = _provenance("0" * 64, "a note")
    small = _specialist_entries(ctx, "small", SMALL_NETWORK, SMALL_POINTS, provenance)
    drone = _specialist_entries(ctx, "drone", DRONE_NETWORK, DRONE_POINTS, provenance)
    assert {e.id: e.provenance.parent for e in small} == {
        "yolox-small-224": "yolox-ft-224",
        "yolox-small-192": "yolox-ft-192",
    }
    assert {e.provenance.parent for e in drone} == {PARENT_ID}
    assert {e.file for e in small} == {ctx.out / f"{SMALL_NETWORK}.onnx"}  # one file, every point
    assert all(GUARDS[e.id].passes(0.35, 0.35) and not GUARDS[e.id].passes(0.35, 0.349) for e in small)
    assert provenance.parent is None  # each point got its own copy
