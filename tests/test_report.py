"""`edged zoo report`: the Pareto plot and table, from profiles alone (no models are run, ../shared not needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.cli import main
from edged.zoo.manifest import load_zoo
from edged.zoo.report import pareto_front, pareto_points, write_pareto_report
from tests.helpers import write_manifest

DEVICE = "test-box"
ESTIMATE = "estimated: inference wall time x assumed active power 5 W"

# (id, technique, mAP50-95, p50 ms, mJ): int8 is cheaper and nearly as good; "pruned" is dominated by int8
FAMILY = [
    ("base", "baseline", 0.27, 8.0, 40.0),
    ("base-int8", "int8", 0.265, 6.0, 30.0),
    ("base-pruned", "pruned", 0.24, 7.0, 35.0),
    ("tiny", "distilled", 0.15, 2.0, 10.0),
]


def profile_yaml(acc: float, ms: float, mj: float, eval_set: str = "coco-val-dev") -> str:
    return f"""
    profiles:
      {DEVICE}:
        accuracy: {{eval_set: {eval_set}, map50_95: {acc}, map50: {acc + 0.15}}}
        latency: {{p50_ms: {ms}, p95_ms: {ms * 1.2:.2f}, threads: 2, runs: 200}}
        energy: {{mj_per_inference: {mj}, quality: estimated, method: "{ESTIMATE}"}}
        params: 900000
        macs: 300000000"""


def variant_yaml(directory: Path, variant_id: str, technique: str, profile: str) -> str:
    import hashlib

    data = variant_id.encode() * 1000  # the report never runs a model; a file with its sha is enough
    (directory / f"{variant_id}.onnx").write_bytes(data)
    return f"""
  - id: {variant_id}
    technique: {technique}
    format: onnx
    file: {variant_id}.onnx
    sha256: {hashlib.sha256(data).hexdigest()}
    input: {{size: [320, 320]}}
    decoder: nanodet{profile}
"""


@pytest.fixture
def family_zoo(tmp_path: Path) -> Path:
    variants = "".join(variant_yaml(tmp_path, v, t, profile_yaml(a, ms, mj)) for v, t, a, ms, mj in FAMILY)
    variants += variant_yaml(tmp_path, "unmeasured", "binary", "")
    write_manifest(tmp_path, f"schema: edged.zoo/v1\nfamily: demo\nlabels: [person, car]\nvariants:{variants}")
    return tmp_path


def test_pareto_front_keeps_only_undominated_points():
    points = [("a", 10.0, 0.30), ("b", 5.0, 0.28), ("c", 7.0, 0.25), ("d", 5.0, 0.28), ("e", 1.0, 0.10)]
    assert pareto_front(points) == {"a", "b", "d", "e"}  # c costs more than b for less; equal points both stay


def test_report_marks_the_frontier_and_leaves_out_what_was_not_measured(family_zoo: Path):
    points, eval_set = pareto_points(load_zoo(family_zoo), DEVICE)
    by_id = {p.variant: p for p in points}
    assert eval_set == "coco-val-dev"
    assert {v for v, p in by_id.items() if p.on_energy_frontier} == {"base", "base-int8", "tiny"}
    assert {v for v, p in by_id.items() if p.on_latency_frontier} == {"base", "base-int8", "tiny"}
    assert by_id["unmeasured"].left_out and "eval --record" in by_id["unmeasured"].left_out


def test_report_writes_a_png_and_a_markdown_table(family_zoo: Path, tmp_path: Path, capsys):
    out = tmp_path / "report"
    assert main(["zoo", "report", "--zoo", str(family_zoo), "--out", str(out)]) == 0
    png = (out / "pareto.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
    table = (out / "pareto.md").read_text()
    assert table == capsys.readouterr().out
    for variant_id, technique, *_ in FAMILY:
        assert f"| `{variant_id}` | {technique} |" in table
    assert "30.000 (estimated)" in table and "assumed active power 5 W" in table
    assert "not plotted: no accuracy" in table


def test_accuracy_on_another_eval_set_is_not_compared(tmp_path: Path):
    variants = variant_yaml(tmp_path, "a", "baseline", profile_yaml(0.3, 5, 20))
    variants += variant_yaml(tmp_path, "b", "int8", profile_yaml(0.8, 1, 5, eval_set="my-easy-set"))
    write_manifest(tmp_path, f"schema: edged.zoo/v1\nfamily: demo\nlabels: [person]\nvariants:{variants}")
    report = write_pareto_report(load_zoo(tmp_path), tmp_path / "out", DEVICE)
    left_out = {p.variant: p.left_out for p in report.points}
    assert report.eval_set == "coco-val-dev" and left_out["a"] is None
    assert left_out["b"] and "my-easy-set" in left_out["b"] and "not comparable" in left_out["b"]


def test_report_without_profiles_says_what_to_run(tmp_path: Path, capsys):
    write_manifest(
        tmp_path,
        "schema: edged.zoo/v1\nfamily: demo\nlabels: [person]\nvariants:" + variant_yaml(tmp_path, "a", "baseline", ""),
    )
    assert main(["zoo", "report", "--zoo", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "edged zoo eval --record" in err and "Traceback" not in err


def test_unknown_device_class_lists_the_known_ones(family_zoo: Path, capsys):
    assert (
        main(["zoo", "report", "--zoo", str(family_zoo), "--device-class", "pi5", "--out", str(family_zoo / "r")]) == 1
    )
    assert DEVICE in capsys.readouterr().err
