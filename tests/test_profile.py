"""`edged zoo profile` and `edged zoo eval --record`: figures measured here land in the manifest, labelled honestly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edged.cli import main
from edged.factory.graph_stats import count_macs, count_params
from edged.zoo.manifest import load_zoo, sha256_of
from edged.zoo.profile import (
    AssumedPowerMeter,
    EnergyWindow,
    ProfileSettings,
    profile_zoo,
    record_profiles,
    slug,
)
from tests.helpers import write_manifest

VARIANT = "fastestdet-352"
DEVICE = "test-box"


@pytest.fixture
def fastestdet_zoo(shared: Path, tmp_path: Path, monkeypatch) -> Path:
    """A hand-written manifest whose file and labels go through ${VAR}, as users write them."""
    monkeypatch.setenv("EDGED_TEST_MODELS", str(shared / "models" / "coco"))
    model = shared / "models" / "coco" / "fastestdet_352.onnx"
    write_manifest(
        tmp_path,
        f"""# my cameras' detectors
# (kept at the top when edged writes this file)
schema: edged.zoo/v1
family: mine
labels: ${{EDGED_TEST_MODELS}}/coco.names
variants:
  - id: {VARIANT}
    technique: baseline
    format: onnx
    file: ${{EDGED_TEST_MODELS}}/fastestdet_352.onnx
    sha256: {sha256_of(model)}
    input: {{size: [352, 352], color: BGR, resize: stretch, scale: 0.00392156862745098}}
    decoder: fastestdet
""",
    )
    return tmp_path


def test_profile_writes_latency_energy_and_graph_counts_under_the_device_class(fastestdet_zoo: Path):
    code = main(["zoo", "profile", "--zoo", str(fastestdet_zoo), "--runs", "12", "--warmup", "2",
                 "--threads", "1", "--device-class", DEVICE, "--assumed-power-w", "4"])  # fmt: skip
    assert code == 0
    zoo = load_zoo(fastestdet_zoo)  # what was written is a valid manifest
    profile = zoo.variant(VARIANT).profiles[DEVICE]
    assert profile.latency and profile.energy
    assert 0 < profile.latency.p50_ms <= profile.latency.p95_ms
    assert profile.latency.runs == 12 and profile.latency.threads == 1
    assert profile.energy.quality == "estimated"
    assert "assumed" in profile.energy.method and "4 W" in profile.energy.method
    # 4 W for the time of one inference: mJ per inference = 4 x ms, give or take the spread of the runs
    assert 2 * profile.latency.p50_ms < profile.energy.mj_per_inference < 4 * profile.latency.p95_ms * 1.5
    assert profile.params == 240_305 and profile.macs and profile.macs > 1e8
    assert profile.file_bytes == zoo.file_of(zoo.variant(VARIANT)).stat().st_size
    assert profile.measured_at and profile.edged_version


def test_saving_keeps_the_users_env_references_and_header(fastestdet_zoo: Path):
    main(["zoo", "profile", "--zoo", str(fastestdet_zoo), "--runs", "2", "--warmup", "0", "--device-class", DEVICE])
    text = (fastestdet_zoo / "zoo.yaml").read_text()
    assert text.startswith("# my cameras' detectors\n# (kept at the top")
    assert "file: ${EDGED_TEST_MODELS}/fastestdet_352.onnx" in text
    assert "labels: ${EDGED_TEST_MODELS}/coco.names" in text
    assert "decoder: fastestdet" in text


def test_profile_json_is_one_document_and_no_save_leaves_the_manifest(fastestdet_zoo: Path, capsys):
    before = (fastestdet_zoo / "zoo.yaml").read_text()
    code = main(["zoo", "profile", "--zoo", str(fastestdet_zoo), "--runs", "3", "--warmup", "0",
                 "--device-class", DEVICE, "--json", "--no-save"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["saved"] is False and report["device_class"] == DEVICE
    assert report["variants"][0]["profile"]["energy"]["quality"] == "estimated"
    assert (fastestdet_zoo / "zoo.yaml").read_text() == before


class FakeMeter:
    """What edged.power will plug in: joules measured over the work it runs."""

    def __init__(self, joules_per_window: float) -> None:
        self.joules = joules_per_window
        self.windows = 0

    def measure(self, work: Callable[[], None]) -> EnergyWindow:
        work()
        self.windows += 1
        return EnergyWindow(self.joules, 0.1, "measured", "INA219 on the 5 V rail (test double)")


def test_a_measured_meter_plugs_into_profiling_and_is_labelled_measured(fastestdet_zoo: Path):
    zoo = load_zoo(fastestdet_zoo)
    meter = FakeMeter(joules_per_window=0.05)
    settings = ProfileSettings(runs=10, warmup=0, rounds=2, threads=1, device_class=DEVICE)
    report = profile_zoo(zoo, [VARIANT], settings, meter, progress=False)
    energy = report.variants[0].profile.energy
    assert meter.windows == 2
    assert energy is not None and energy.quality == "measured"
    assert energy.mj_per_inference == pytest.approx(2 * 0.05 * 1000 / 10)
    assert "INA219" in energy.method
    saved = record_profiles(zoo, report)
    assert saved.variant(VARIANT).profiles[DEVICE].energy == energy


def test_assumed_power_must_be_positive():
    from edged.errors import EdgedError

    with pytest.raises(EdgedError, match="assumed power"):
        AssumedPowerMeter(0)


def test_eval_record_writes_accuracy_into_the_profile(fastestdet_zoo: Path, val_dev: Path):
    code = main(["zoo", "eval", "--zoo", str(fastestdet_zoo), "--data", str(val_dev), "--record",
                 "--device-class", DEVICE, "--json"])  # fmt: skip
    assert code == 0
    accuracy = load_zoo(fastestdet_zoo).variant(VARIANT).profiles[DEVICE].accuracy
    assert accuracy is not None
    assert accuracy.eval_set == "coco-val-dev" and accuracy.images == 64
    assert 0.15 < accuracy.map50_95 < 0.3 and accuracy.eval_set_sha256
    assert "person" in accuracy.per_class_ap


def test_device_class_is_a_slug_of_the_cpu_model():
    assert slug("Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz") == "intel-core-i7-8650u"
    assert slug("AMD EPYC") == "amd-epyc"
    assert slug("Raspberry Pi 5 Model B Rev 1.0") == "raspberry-pi-5-model-b-rev-1-0"


def tiny_graph() -> onnx.ModelProto:
    """Conv 3->8 (3x3, pad 1) on 16x16, a depthwise 3x3, then flatten and Gemm 2048->10: MACs known by hand."""
    import numpy as np

    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.standard_normal((8, 3, 3, 3)).astype("float32"),
        "b1": np.zeros(8, "float32"),
        "w2": rng.standard_normal((8, 1, 3, 3)).astype("float32"),
        "w3": rng.standard_normal((10, 2048)).astype("float32"),
        "shape": np.array([1, 2048], "int64"),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Reshape", ["c2", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w3"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def test_macs_and_params_are_counted_from_the_graph():
    model = tiny_graph()
    conv = 8 * 16 * 16 * (3 * 3 * 3)
    depthwise = 8 * 16 * 16 * (1 * 3 * 3)
    gemm = 10 * 2048
    assert count_macs(model) == (conv + depthwise + gemm, [])
    assert count_params(model) == 8 * 27 + 8 + 8 * 9 + 10 * 2048  # the int64 shape is not a parameter
