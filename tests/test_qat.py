"""Quantization-aware fine-tuning (edged/factory/qat.py) of the real FastestDet int8, and `--finetune` in
`edged zoo build`.

The claims checked: the QDQ model as a torch module is the QDQ model (its integers round-trip, its output is ONNX
Runtime's); fine-tuning brings the int8 model's outputs closer to the float parent's on images it did not train
on; what it writes is a valid QDQ file on the same grid (int8 weights in range, each bias's scale = its input's
scale x its weights'); the build records that it fine-tuned, and says so when it could not.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_or_skip

torch = require_or_skip("torch", reason="torch is in the [build] extra")
onnx = require_or_skip("onnx")
ort = require_or_skip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from edged.cli import main  # noqa: E402
from edged.factory import qat  # noqa: E402
from edged.factory.calibration import CalibrationSet  # noqa: E402
from edged.factory.int8 import (  # noqa: E402
    Int8Recipe,
    _session_factory,
    host_saturates_u8s8,
    prepare_for_quantization,
    quantize_int8,
    weight_range,
)
from edged.factory.onnx_torch import torch_module  # noqa: E402

# On x86 without VNNI, ONNX Runtime's u8s8 kernels add pairs of products in int16 and saturate, so what it computes
# is not the integer arithmetic the torch module models, and comparing the two would measure the CPU, not the module.
EXACT_INT8 = pytest.mark.skipif(
    host_saturates_u8s8(), reason="this x86 CPU has no VNNI: ONNX Runtime's u8s8 kernels saturate on it"
)
PARENT = "fastestdet-352"
RECIPE = Int8Recipe(calibration="percentile", weights="s8", float_first_conv=True)


@pytest.fixture(scope="module")
def quantized(coco_zoo, shared: Path, tmp_path_factory):
    """FastestDet's float model, its bias-corrected int8 model, and the images to train and to check on."""
    work = tmp_path_factory.mktemp("qat")
    parent = coco_zoo.variant(PARENT)
    prepared, input_name = prepare_for_quantization(coco_zoo.file_of(parent), work)
    training = CalibrationSet(shared / "data" / "coco128-train" / "images", 64, seed=0).tensors(parent.input, False)
    held_out = CalibrationSet(shared / "data" / "distill" / "street-photos" / "images", 12, seed=0).tensors(
        parent.input, False
    )
    model = work / "int8.onnx"
    quantize_int8(prepared, model, RECIPE, training, input_name, work, progress=False)
    return prepared, model, input_name, training, held_out


def outputs(model_path_or_proto, tensors: list[np.ndarray], input_name: str) -> np.ndarray:
    source = model_path_or_proto if isinstance(model_path_or_proto, str) else model_path_or_proto.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {input_name: t})[0] for t in tensors])


@EXACT_INT8
def test_the_qdq_model_as_a_torch_module_keeps_its_integers_and_is_as_far_from_float_as_onnx_runtimes(quantized):
    prepared, model_path, input_name, _, held_out = quantized
    model = onnx.load(str(model_path))
    module = torch_module(model, weight_range(RECIPE), learn_ranges=True)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for name, integers in module.integers().items():
        np.testing.assert_array_equal(integers, inits[name])  # untrained: every weight and bias exactly as stored
    target = outputs(str(prepared), held_out, input_name)
    with torch.no_grad():
        got = np.concatenate([module(torch.from_numpy(t))[0].numpy() for t in held_out])
    # Not bit-exact: torch's float convolutions sum in another order than ONNX Runtime's, a value a hair from a
    # rounding boundary lands on the other side, and a one-step difference spreads through the layers as much as
    # any quantization error does. So the check is the size of the error, which training acts on.
    torch_error = float(np.mean((got - target) ** 2))
    ort_error = float(np.mean((outputs(str(model_path), held_out, input_name) - target) ** 2))
    assert 0.8 < torch_error / ort_error < 1.25, (torch_error, ort_error)


@EXACT_INT8
def test_finetuning_brings_the_int8_model_closer_to_its_float_parent_on_unseen_images(quantized):
    prepared, model_path, input_name, training, held_out = quantized
    model = onnx.load(str(model_path))
    target = outputs(str(prepared), held_out, input_name)
    before = float(np.mean((outputs(model, held_out, input_name) - target) ** 2))
    teacher = _session_factory(2)(onnx.load(str(prepared)).SerializeToString())
    # after / before with 3 epochs: 0.67 on the machine this was written on, 0.78 on a Xeon with AVX-512 VNNI; 2
    # epochs gave 0.76 on the first and 0.89 on the Xeon, too close to the bar
    report = qat.finetune(teacher, model, training, input_name, weight_range(RECIPE), epochs=3, progress=False)
    after = float(np.mean((outputs(model, held_out, input_name) - target) ** 2))
    assert report.loss_after < report.loss_before  # on the training images
    assert after < 0.85 * before, (before, after)  # and on street photos it never saw
    assert report.images == 64 and report.ranges > 50

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    checked = 0
    for conv in (n for n in model.graph.node if n.op_type == "Conv" and len(n.input) == 3):
        act, weight, bias = (producer.get(name) for name in conv.input)
        if act is None or act.op_type != "DequantizeLinear" or bias is None or bias.op_type != "DequantizeLinear":
            continue  # the first conv stays float in this recipe
        integers = inits[weight.input[0]]
        assert integers.dtype == np.int8 and np.abs(integers.astype(int)).max() <= 127
        expected_scale = inits[act.input[1]] * inits[weight.input[1]].astype(np.float64)
        np.testing.assert_allclose(inits[bias.input[1]], expected_scale, rtol=1e-6)
        checked += 1
    assert checked == 69


def test_finetuning_is_reproducible_from_its_seed_and_the_seed_matters(quantized, tmp_path):
    """The build's --seed is in the variant's provenance: it must be what decides fine-tuning's image order."""
    prepared, _, input_name, training, _ = quantized
    recipe = RECIPE.model_copy(update={"finetune": True})

    def built(seed: int, name: str) -> bytes:
        out = tmp_path / name
        quantize_int8(prepared, out, recipe, training[:8], input_name, tmp_path, progress=False, seed=seed)
        return out.read_bytes()

    first = built(0, "first.onnx")
    assert built(0, "again.onnx") == first
    assert built(1, "other.onnx") != first


def test_build_with_finetune_records_it(coco_zoo, shared, val_dev, tmp_path, capsys):
    calib = shared / "data" / "coco128-train" / "images"
    code = main(
        [
            "zoo", "build", "--zoo", str(coco_zoo.path), "--variant", PARENT, "--technique", "int8",
            "--calib", str(calib), "--eval", str(val_dev), "--out", str(tmp_path / "out"), "--calib-images", "16",
            "--calibration", "percentile", "--weights", "s8", "--float-first-conv", "yes", "--float-outliers", "no",
            "--rounding", "bias-correction", "--finetune", "yes", "--finetune-images", "8", "--max-drop", "1",
            "--device-class", "test-box", "--json",
        ]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["accepted"]
    (candidate,) = report["candidates"]
    assert candidate["recipe"]["finetune"] is True and candidate["description"].endswith("fine-tuned (QAT)")
    assert any(note.startswith("fine-tuned with the quantizer in the loop (") for note in candidate["notes"])
    from edged.zoo.manifest import load_zoo

    child = load_zoo(tmp_path / "out").variant(f"{PARENT}-int8")
    assert any(
        d.startswith("fine-tuning: ") and "(a seeded sample of 8 of 128 images)" in d for d in child.provenance.data
    )
    assert "--finetune yes" in child.provenance.notes


def test_auto_finetune_without_torch_is_skipped_and_says_so(coco_zoo, shared, val_dev, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(qat, "available", lambda: False)
    calib = shared / "data" / "coco128-train" / "images"
    code = main(
        [
            "zoo", "build", "--zoo", str(coco_zoo.path), "--variant", PARENT, "--technique", "int8",
            "--calib", str(calib), "--eval", str(val_dev), "--out", str(tmp_path / "out"), "--calib-images", "16",
            "--calibration", "minmax", "--weights", "s8", "--float-first-conv", "no", "--float-outliers", "no",
            "--rounding", "nearest", "--finetune", "auto", "--max-drop", "0.0005", "--json",
        ]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert len(report["candidates"]) == 1  # nothing but the plain recipe could run
    assert report["notes"] == ["fine-tuning (QAT) skipped: it needs torch, in the [build] extra"]


def test_finetune_yes_without_torch_fails_before_any_work(coco_zoo, shared, val_dev, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(qat, "available", lambda: False)
    calib = shared / "data" / "coco128-train" / "images"
    args = ["zoo", "build", "--zoo", str(coco_zoo.path), "--variant", PARENT, "--technique", "int8"]
    code = main([*args, "--calib", str(calib), "--eval", str(val_dev), "--out", str(tmp_path), "--finetune", "yes"])
    assert code != 0
    assert "edged zoo build --finetune yes needs the 'torch' package" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
