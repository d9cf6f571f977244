"""One variant, several engines: the manifest lists a file per engine, `zoo profile` measures every (variant,
engine) pair and records the fastest, edged opens that one (or the one an operator pins), the report shows them
side by side, and an int8 variant no faster than its float parent is marked dominated and kept from the governor.
Real models: FastestDet as ONNX and as TFLite (its author's conversion, in ../shared)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edged.errors import ConfigError, EdgedError, ModelError
from edged.vision.engines import EngineOptions
from edged.zoo.manifest import load_zoo, sha256_of
from edged.zoo.profile import ProfileSettings, profile_zoo, record_profiles
from edged.zoo.report import pareto_points, render_engines_markdown

pytest.importorskip("ai_edge_litert", reason="LiteRT is the [tflite] extra, which `make test` installs")

DEVICE = "ci-engines"


def _manifest(onnx: Path, tflite: Path, labels: Path, tflite_sha: str | None = None) -> str:
    return f"""\
schema: edged.zoo/v1
family: engines
labels: {labels}
variants:
  - id: fastestdet
    technique: baseline
    format: onnx
    file: {onnx}
    sha256: {sha256_of(onnx)}
    alternates:
      - format: tflite
        file: {tflite}
        sha256: {tflite_sha or sha256_of(tflite)}
        layout: NHWC
    input: {{size: [352, 352], color: BGR, resize: stretch, scale: 0.00392156862745098}}
    decoder: fastestdet
"""


@pytest.fixture()
def two_engine_zoo(shared: Path, tmp_path: Path) -> Path:
    coco = shared / "models" / "coco"
    text = _manifest(
        coco / "fastestdet_352.onnx", shared / "models/tflite/fastestdet_352_float32.tflite", coco / "coco.names"
    )
    (tmp_path / "zoo.yaml").write_text(text)
    return tmp_path


def test_profile_measures_every_engine_and_edged_then_opens_the_fastest(two_engine_zoo: Path):
    zoo = load_zoo(two_engine_zoo)
    report = profile_zoo(zoo, ["fastestdet"], ProfileSettings(runs=20, warmup=2, device_class=DEVICE), progress=False)
    profile = report.variants[0].profile
    assert set(profile.engines) == {"onnxruntime", "litert", "litert-no-xnnpack"}
    fastest = min(profile.engines, key=lambda e: profile.engines[e].p50_ms)
    assert profile.engine == fastest and profile.latency == profile.engines[fastest]
    zoo = record_profiles(zoo, report)
    detector = zoo.open_detector("fastestdet", device_class=DEVICE)
    try:
        assert detector.engine.runtime == fastest
    finally:
        detector.close()
    for pinned in ("onnxruntime", "litert"):
        detector = zoo.open_detector("fastestdet", EngineOptions(runtime=pinned), device_class=DEVICE)
        assert detector.engine.runtime == pinned
        detector.close()
    table = render_engines_markdown(pareto_points(zoo, DEVICE)[0])
    assert "| `fastestdet` |" in table and f"**{profile.engines[fastest].p50_ms:.2f}**" in table


def test_both_files_of_a_variant_find_the_same_objects(two_engine_zoo: Path, val_dev: Path):
    zoo = load_zoo(two_engine_zoo)
    image = cv2.imread(str(val_dev / "images" / "000000000139.jpg"))
    found = {}
    for runtime in ("onnxruntime", "litert"):
        detector = zoo.open_detector("fastestdet", runtime=runtime)
        try:
            found[runtime] = detector.detect(image)
        finally:
            detector.close()
    a, b = found["onnxruntime"], found["litert"]
    assert len(a.scores) == len(b.scores) > 0
    assert np.abs(a.boxes - b.boxes).max() < 1.0 and np.abs(a.scores - b.scores).max() < 1e-3


def test_a_pinned_engine_the_variant_has_no_file_for_is_refused_by_name(shared: Path, tmp_path: Path):
    coco = shared / "models" / "coco"
    (tmp_path / "zoo.yaml").write_text(
        _manifest(
            coco / "fastestdet_352.onnx", shared / "models/tflite/fastestdet_352_float32.tflite", coco / "coco.names"
        ).split("    alternates:")[0]
        + "    input: {size: [352, 352], color: BGR, resize: stretch, scale: 0.00392156862745098}\n"
        + "    decoder: fastestdet\n"
    )
    zoo = load_zoo(tmp_path)
    with pytest.raises(EdgedError, match="variant 'fastestdet' has no file for the litert engine"):
        zoo.open_detector("fastestdet", EngineOptions(runtime="litert"))


def test_an_alternate_with_the_wrong_sha_is_a_load_error_with_its_line(shared: Path, tmp_path: Path):
    coco = shared / "models" / "coco"
    text = _manifest(
        coco / "fastestdet_352.onnx",
        shared / "models/tflite/fastestdet_352_float32.tflite",
        coco / "coco.names",
        "a" * 64,
    )
    (tmp_path / "zoo.yaml").write_text(text)
    with pytest.raises(
        ConfigError, match=r"zoo.yaml:13: variants\[0\] \(variant 'fastestdet'\).alternates\[0\].sha256"
    ):
        load_zoo(tmp_path)


def test_a_corrupt_tflite_file_is_a_model_error_naming_the_variant(shared: Path, tmp_path: Path):
    coco = shared / "models" / "coco"
    broken = tmp_path / "broken.tflite"
    broken.write_bytes((shared / "models/tflite/fastestdet_352_float32.tflite").read_bytes()[:5000])
    (tmp_path / "zoo.yaml").write_text(_manifest(coco / "fastestdet_352.onnx", broken, coco / "coco.names"))
    zoo = load_zoo(tmp_path)
    with pytest.raises(ModelError, match=r"variant 'fastestdet'.*not a loadable TFLite model"):
        zoo.open_detector("fastestdet", runtime="litert")
    detector = zoo.open_detector("fastestdet", runtime="onnxruntime")  # the ONNX file is still fine
    detector.close()


def test_a_tflite_file_of_another_model_is_refused_at_open(shared: Path, tmp_path: Path):
    coco = shared / "models" / "coco"
    other = tmp_path / "nanodet.tflite"
    shutil.copy(shared / "models/tflite/nanodet_m_320_float32.tflite", other)
    (tmp_path / "zoo.yaml").write_text(_manifest(coco / "fastestdet_352.onnx", other, coco / "coco.names"))
    zoo = load_zoo(tmp_path)
    with pytest.raises(ModelError, match=r"variants\[0\].input \(variant 'fastestdet'\).*352x352.*320"):
        zoo.open_detector("fastestdet", runtime="litert")


def test_two_files_of_one_format_are_refused(shared: Path, tmp_path: Path):
    coco = shared / "models" / "coco"
    onnx = coco / "fastestdet_352.onnx"
    text = _manifest(onnx, onnx, coco / "coco.names").replace("format: tflite", "format: onnx")
    (tmp_path / "zoo.yaml").write_text(text)
    with pytest.raises(ConfigError, match="one file per format"):
        load_zoo(tmp_path)


def _profile(p50: float, engine: str = "onnxruntime") -> dict:
    return {
        "engine": engine,
        "accuracy": {"eval_set": "s", "map50_95": 0.3, "map50": 0.5},
        "latency": {"p50_ms": p50, "p95_ms": p50 * 1.2, "threads": 2},
        "energy": {"mj_per_inference": p50 * 5, "quality": "estimated", "method": "test: latency x 5 W"},
    }


@pytest.mark.parametrize("int8_ms, dominated", [(4.0, False), (6.0, True), (5.0, True)])
def test_an_int8_variant_no_faster_than_its_parent_is_dominated(shared: Path, tmp_path: Path, int8_ms, dominated):
    import yaml

    onnx = shared / "models" / "coco" / "fastestdet_352.onnx"
    common = {
        "format": "onnx",
        "file": str(onnx),
        "sha256": sha256_of(onnx),
        "input": {"size": [352, 352], "resize": "stretch", "scale": 1 / 255},
        "decoder": "fastestdet",
    }
    manifest = {
        "schema": "edged.zoo/v1",
        "family": "f",
        "labels": str(shared / "models" / "coco" / "coco.names"),
        "variants": [
            {"id": "float", "technique": "baseline", **common, "profiles": {DEVICE: _profile(5.0)}},
            {
                "id": "float-int8",
                "technique": "int8",
                **common,
                "provenance": {"parent": "float"},
                "profiles": {DEVICE: _profile(int8_ms)},
            },
        ],
    }
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump(manifest))
    zoo = load_zoo(tmp_path)
    why = zoo.int8_not_faster(zoo.variant("float-int8"), DEVICE)
    assert (why is not None) == dominated
    assert zoo.int8_not_faster(zoo.variant("float"), DEVICE) is None
    points = {p.variant: p for p in pareto_points(zoo, DEVICE)[0]}
    assert (points["float-int8"].dominated is not None) == dominated
    if dominated:
        assert "is not below its float parent float's 5.00 ms" in why


def test_where_the_measured_fastest_engine_is_not_installed_the_fastest_installed_one_opens(
    two_engine_zoo: Path, monkeypatch: pytest.MonkeyPatch
):
    """A zoo profiled where LiteRT was fastest, opened where it is not installed (a wheel without [tflite]): the
    fastest engine measured among the installed ones opens, not an error about a missing package."""
    import edged.zoo.manifest as manifest
    from edged.zoo.manifest import LatencyProfile
    from edged.zoo.manifest_writer import replace_variant, save_zoo, with_profile

    zoo = load_zoo(two_engine_zoo)
    engines = {"litert": 1.0, "onnxruntime": 2.0, "litert-no-xnnpack": 5.0}
    measured = {r: LatencyProfile(p50_ms=ms, p95_ms=ms, threads=2, runs=10) for r, ms in engines.items()}
    variant = with_profile(zoo.variant("fastestdet"), DEVICE, engine="litert", engines=measured)
    zoo = save_zoo(zoo, replace_variant(zoo.manifest, variant))
    assert zoo.runtime_for(zoo.variant("fastestdet"), device_class=DEVICE) == "litert"

    monkeypatch.setattr(manifest, "runtime_missing", lambda r: None if r == "onnxruntime" else "not installed")
    detector = zoo.open_detector("fastestdet", device_class=DEVICE)
    try:
        assert detector.engine.runtime == "onnxruntime"
    finally:
        detector.close()
