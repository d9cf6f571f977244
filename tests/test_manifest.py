"""The zoo manifest: the reference zoos load, and every kind of broken entry names its variant, field and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edged.cli import main
from edged.errors import ConfigError, ModelError
from edged.zoo.manifest import load_zoo, sha256_of

COCO_NAMES = Path(__file__).resolve().parents[2] / "shared" / "models" / "coco" / "coco.names"
FASTESTDET_SHA = "31cb14c017fce347cb4c846ec62fdf00d76bb3beecdf4be21e7116ac67feb880"


def manifest(model: Path, sha: str = FASTESTDET_SHA, labels: Path | str | None = None, **overrides: str) -> str:
    fields = {
        "id": "fdet",
        "file": str(model),
        "sha256": sha,
        "input": "{size: [352, 352], scale: 0.00392156862745098}",
        "decoder": "fastestdet",
        "technique": "baseline",
        "format": "onnx",
    }
    fields.update(overrides)
    entry = "\n".join(f"    {k}: {v}" for k, v in fields.items())
    labels = labels or COCO_NAMES
    return f"schema: edged.zoo/v1\nfamily: test\nlabels: {labels}\nvariants:\n  - {entry[4:]}\n"


@pytest.fixture
def fastestdet(shared: Path, monkeypatch) -> Path:
    monkeypatch.setattr(f"{__name__}.COCO_NAMES", shared / "models" / "coco" / "coco.names")
    return shared / "models" / "coco" / "fastestdet_352.onnx"


def load_errors(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "zoo.yaml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_zoo(tmp_path)
    return info.value.problems


def test_reference_zoos_load_and_verify(coco_zoo, face_zoo):
    assert len(coco_zoo.variants) == 6 and len(face_zoo.variants) == 3
    assert len(coco_zoo.labels_of(coco_zoo.variant("yolox-nano-416"))) == 80
    assert face_zoo.labels_of(face_zoo.variant("yunet-n-320")) == ["face"]


def test_combined_technique_string_is_split(tmp_path, fastestdet):
    (tmp_path / "zoo.yaml").write_text(manifest(fastestdet, technique="distilled+pruned+int8"))
    assert load_zoo(tmp_path).variants[0].technique == ["distilled", "pruned", "int8"]


def test_unknown_decoder_names_variant_field_line_and_the_known_decoders(tmp_path, fastestdet):
    (problem,) = load_errors(tmp_path, manifest(fastestdet, decoder="yolo9000"))
    assert f"{tmp_path / 'zoo.yaml'}:9: variants[0].decoder" in problem
    for known in ("yolox", "nanodet", "fastestdet", "yolov8", "yunet", "blazeface"):
        assert known in problem


def test_missing_model_file_is_reported(tmp_path, fastestdet):
    (problem,) = load_errors(tmp_path, manifest(tmp_path / "gone.onnx"))
    assert ":6: variants[0] (variant 'fdet').file: model file not found" in problem


def test_sha_mismatch_is_reported_with_both_hashes(tmp_path, fastestdet):
    (problem,) = load_errors(tmp_path, manifest(fastestdet, sha="a" * 64))
    assert ":7: variants[0] (variant 'fdet').sha256:" in problem
    assert FASTESTDET_SHA in problem and "a" * 64 in problem


def test_typo_in_a_variant_key_is_an_error(tmp_path, fastestdet):
    text = manifest(fastestdet).replace("    decoder: fastestdet", "    decodr: fastestdet")
    problems = load_errors(tmp_path, text)
    assert any(":9: variants[0].decodr: unknown key (did you mean 'decoder'?)" in p for p in problems)
    assert any("variants[0].decoder: Field required" in p for p in problems)


def test_duplicate_variant_ids_are_rejected(tmp_path, fastestdet):
    text = manifest(fastestdet)
    text += text[text.index("  - id") :]
    (problem,) = load_errors(tmp_path, text)
    assert "variant id 'fdet' is used twice" in problem


def test_missing_labels_file_is_reported(tmp_path, fastestdet):
    text = manifest(fastestdet, labels=Path("nowhere.names"))
    (problem,) = load_errors(tmp_path, text)
    assert ":3: labels:" in problem and "nowhere.names" in problem


def test_wrong_input_size_fails_at_open_naming_the_input_field(tmp_path, fastestdet):
    (tmp_path / "zoo.yaml").write_text(manifest(fastestdet, input="{size: [320, 320], scale: 0.0039}"))
    zoo = load_zoo(tmp_path)
    with pytest.raises(ModelError) as info:
        zoo.open_detector("fdet")
    message = str(info.value)
    assert ":8: variants[0].input (variant 'fdet')" in message
    assert "320x320" in message and "[1, 3, 352, 352]" in message


def test_wrong_layout_gets_a_hint(tmp_path, fastestdet):
    (tmp_path / "zoo.yaml").write_text(manifest(fastestdet, input="{size: [352, 352], layout: NHWC}"))
    with pytest.raises(ModelError, match="the model is NCHW: set layout: NCHW"):
        load_zoo(tmp_path).open_detector("fdet")


def test_label_count_that_disagrees_with_the_outputs_is_reported(tmp_path, fastestdet):
    text = manifest(fastestdet, labels="[person, car]")
    (tmp_path / "zoo.yaml").write_text(text)
    with pytest.raises(ModelError) as info:
        load_zoo(tmp_path).open_detector("fdet")
    assert "variants[0].decoder (variant 'fdet')" in str(info.value) and "(2 labels)" in str(info.value)


@pytest.mark.parametrize("keep_bytes", [0, 1000, 500_000])
def test_truncated_onnx_model_is_a_clear_error(tmp_path, fastestdet, keep_bytes):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(fastestdet.read_bytes()[:keep_bytes])
    (tmp_path / "zoo.yaml").write_text(manifest(broken, sha=sha256_of(broken)))
    with pytest.raises(ModelError) as info:
        load_zoo(tmp_path).open_detector("fdet")
    assert "variants[0].file (variant 'fdet')" in str(info.value)
    assert "not a loadable ONNX model" in str(info.value)


def test_corrupt_tflite_model_is_a_clear_error(tmp_path, shared):
    original = shared / "models" / "tflite" / "fastestdet_352_float32.tflite"
    broken = tmp_path / "broken.tflite"
    data = bytearray(original.read_bytes()[:4096])
    broken.write_bytes(bytes(data))
    text = manifest(broken, sha=sha256_of(broken), format="tflite", input="{size: [352, 352], layout: NHWC}")
    (tmp_path / "zoo.yaml").write_text(text)
    with pytest.raises(ModelError, match="not a loadable TFLite model"):
        load_zoo(tmp_path).open_detector("fdet")


def test_zoo_list_json_describes_every_variant(coco_zoo, capsys):
    assert main(["zoo", "list", "--zoo", str(coco_zoo.path), "--json", "--check"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["family"] == "coco-reference"
    by_id = {v["id"]: v for v in listing["variants"]}
    assert by_id["fastestdet-352-tflite-int8"]["technique"] == "int8"
    assert by_id["yolox-nano-416"]["input_size"] == [416, 416]
    assert all(v["check"] == "ok" for v in listing["variants"])


def test_zoo_list_check_reports_a_variant_that_does_not_match(tmp_path, fastestdet, capsys):
    (tmp_path / "zoo.yaml").write_text(manifest(fastestdet, input="{size: [320, 320]}"))
    assert main(["zoo", "list", "--zoo", str(tmp_path), "--check"]) == 1
    captured = capsys.readouterr()
    assert "fdet: FAILED" in captured.err and "Traceback" not in captured.err


def test_broken_manifest_makes_cli_exit_1_without_traceback(tmp_path, fastestdet, capsys):
    (tmp_path / "zoo.yaml").write_text(manifest(fastestdet, sha="f" * 64))
    assert main(["zoo", "list", "--zoo", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edged: error:") and "sha256" in err and "Traceback" not in err


def test_a_model_file_that_cannot_be_read_is_a_load_error_naming_it(coco_zoo, unreadable):
    """Permission denied at start-up printed a raw PermissionError traceback."""
    from edged.errors import ConfigError

    unreadable(coco_zoo.file_of(coco_zoo.variant("fastestdet-352")))
    with pytest.raises(ConfigError, match=r"variant 'fastestdet-352'\)\.file: cannot read .*Permission denied"):
        load_zoo(coco_zoo.path)
