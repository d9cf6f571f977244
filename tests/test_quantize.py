"""`edged zoo build --technique int8` on a real detector (FastestDet, the smallest), and every way it can be misused.

The build runs once per module (16 calibration images, one recipe) into tmp_path; nothing lands in the repo.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import cv2
import pytest

from edged.cli import main
from edged.vision.postprocess import PostprocessOptions
from edged.zoo.manifest import load_zoo, sha256_of
from tests.helpers import iou, write_manifest

PARENT = "fastestdet-352"
CHILD = "fastestdet-352-int8"
PEOPLE_IMAGE = "000000002153"  # four people and a bicycle
DEVICE = "test-box"
RECIPE = [  # one candidate, exact on every CPU
    "--calibration", "minmax", "--weights", "s8-7bit", "--float-first-conv", "no", "--float-outliers", "no",
    "--rounding", "nearest", "--finetune", "no",
]  # fmt: skip


def build_args(zoo: Path, calib: Path, eval_set: Path, out: Path, *extra: str) -> list[str]:
    return [
        "zoo", "build", "--zoo", str(zoo), "--variant", PARENT, "--technique", "int8",
        "--calib", str(calib), "--eval", str(eval_set), "--out", str(out),
        "--calib-images", "16", "--device-class", DEVICE, *RECIPE, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def built(coco_zoo, shared: Path, val_dev: Path, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("int8-zoo")
    calib = shared / "data" / "coco128-train" / "images"
    code = main(build_args(coco_zoo.path, calib, val_dev, out, "--max-drop", "0.1"))
    assert code == 0
    return out, calib.name


def test_int8_entry_records_technique_parent_and_provenance(built):
    out, _ = built
    zoo = load_zoo(out)
    child = zoo.variant(CHILD)
    assert child.technique == ["int8"]
    assert child.provenance.parent == PARENT
    assert child.provenance.seed == 0
    assert child.provenance.command and child.provenance.command.startswith("edged zoo build")
    assert "coco128-train" in child.provenance.data[0] and "16 of 128" in child.provenance.data[0]
    assert "--weights s8-7bit" in (child.provenance.notes or "")
    assert child.input == zoo.variant(PARENT).input and child.decoder == zoo.variant(PARENT).decoder


def test_int8_file_matches_its_sha_and_is_about_3x_smaller(built, coco_zoo):
    out, _ = built
    zoo = load_zoo(out)
    child = zoo.variant(CHILD)
    assert sha256_of(zoo.file_of(child)) == child.sha256
    ratio = coco_zoo.file_of(coco_zoo.variant(PARENT)).stat().st_size / zoo.file_of(child).stat().st_size
    assert ratio > 2.8  # int8 weights plus per-channel scales of a depthwise-heavy net: ~3x, not 4x


def test_guard_accuracy_of_parent_and_child_is_recorded_for_the_device_class(built):
    zoo = load_zoo(built[0])
    parent, child = (zoo.variant(v).profiles[DEVICE].accuracy for v in (PARENT, CHILD))
    assert parent is not None and child is not None
    assert parent.eval_set == child.eval_set == "coco-val-dev"
    assert parent.map50_95 > 0.2  # the reference figure for FastestDet is ~0.19-0.23
    assert parent.map50_95 - 0.1 <= child.map50_95 <= parent.map50_95 + 0.02


def test_parent_file_is_referenced_not_copied(built, coco_zoo):
    out, _ = built
    zoo = load_zoo(out)
    assert zoo.file_of(zoo.variant(PARENT)) == coco_zoo.file_of(coco_zoo.variant(PARENT))
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".onnx") == [f"{CHILD}.onnx"]


def test_a_parent_with_files_for_other_engines_is_referenced_with_all_of_them(tmp_path: Path):
    """Found building the family's ReLU sibling (ONNX + TFLite) into a new zoo: its TFLite file was listed by name
    alone, and the new zoo.yaml did not load ('model file not found')."""
    from edged.factory.factory import _parent_entry

    family = load_zoo(Path(__file__).resolve().parents[1] / "model_zoo")
    parent = next(v for v in family.variants if v.alternates)
    listed = _parent_entry(None, family, parent, tmp_path)
    assert [(tmp_path / f.file).resolve() for f in listed.model_files] == [
        family.file_of(parent, f) for f in parent.model_files
    ]


def test_int8_variant_loads_and_finds_the_people_fp32_finds(built, val_dev: Path):
    zoo = load_zoo(built[0])
    image = cv2.imread(str(val_dev / "images" / f"{PEOPLE_IMAGE}.jpg"))
    options = PostprocessOptions(score_threshold=0.3)
    found = {v: zoo.open_detector(v, postprocess=options).detect(image) for v in (PARENT, CHILD)}
    fp32_people = [b for b, c in zip(found[PARENT].boxes, found[PARENT].class_ids) if c == 0]
    int8_people = [b for b, c in zip(found[CHILD].boxes, found[CHILD].class_ids) if c == 0]
    assert fp32_people and int8_people
    largest = max(fp32_people, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    assert max(iou(largest, b) for b in int8_people) > 0.7


def test_graph_counts_are_the_same_for_int8_and_fp32(built, coco_zoo):
    from edged.factory.graph_stats import graph_stats

    zoo = load_zoo(built[0])
    fp32, int8 = (graph_stats(zoo.file_of(zoo.variant(v))) for v in (PARENT, CHILD))
    assert fp32.params == int8.params == 240_305
    assert fp32.macs == int8.macs and 0.1e9 < fp32.macs < 0.15e9  # FastestDet: ~0.13 GFLOPs at 352
    assert not fp32.uncounted and not int8.uncounted


def test_guard_refuses_a_large_drop_prints_numbers_and_writes_nothing(coco_zoo, shared, val_dev, tmp_path, capsys):
    out = tmp_path / "refused"
    calib = shared / "data" / "coco128-train" / "images"
    code = main(build_args(coco_zoo.path, calib, val_dev, out, "--max-drop", "0.0005"))
    printed = capsys.readouterr().out
    assert code == 1
    assert "refused" in printed
    assert re.search(r"on coco-val-dev \(0\.\d{4} -> 0\.\d{4}\)", printed)  # parent -> child mAP50-95
    assert not out.exists() or not any(out.iterdir())


def test_build_json_is_one_document_with_every_candidate(coco_zoo, shared, val_dev, tmp_path, capsys):
    calib = shared / "data" / "coco128-train" / "images"
    code = main(build_args(coco_zoo.path, calib, val_dev, tmp_path / "out", "--max-drop", "0.0005", "--json"))
    report = json.loads(capsys.readouterr().out)  # ONNX Runtime's own prints stay out of it
    assert code == 1
    assert report["accepted"] is False and report["file"] is None
    assert report["chosen"]["drop"] > report["max_drop"] == 0.0005
    assert report["parent_map50_95"] - report["chosen"]["map50_95"] == pytest.approx(report["chosen"]["drop"])
    assert [c["recipe"]["weights"] for c in report["candidates"]] == ["s8-7bit"]


def test_when_no_candidate_passes_the_most_accurate_is_refined_with_bias_correction(
    coco_zoo, shared, val_dev, tmp_path, capsys
):
    calib = shared / "data" / "coco128-train" / "images"
    args = build_args(coco_zoo.path, calib, val_dev, tmp_path / "out", "--max-drop", "0.0005", "--json")
    args[args.index("--rounding") + 1] = "auto"
    main(args)
    report = json.loads(capsys.readouterr().out)
    plain, refined = report["candidates"]
    assert plain["recipe"]["rounding"] == "nearest" and plain["drop"] > 0.0005  # it failed: refinement follows
    assert refined["recipe"] == {**plain["recipe"], "rounding": "bias-correction"}
    assert refined["description"].endswith("bias correction")
    assert refined["notes"] == ["biases of 70 layers corrected"]  # every conv: the first is quantized too
    assert refined["file_bytes"] == pytest.approx(plain["file_bytes"], rel=0.02)


def relu_inputs(path: Path) -> Counter[str]:
    """The op behind each ReLU's input, looking through quantize / dequantize pairs."""
    import onnx

    model = onnx.load(path)
    producer = {output: node for node in model.graph.node for output in node.output}

    def behind(tensor: str) -> str:
        node = producer.get(tensor)
        while node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            node = producer.get(node.input[0])
        return node.op_type if node is not None else "input"

    return Counter(behind(node.input[0]) for node in model.graph.node if node.op_type == "Relu")


def test_relus_after_quantized_convs_are_folded_into_their_output_range(built, coco_zoo):
    """The default --ops conv-relu: a conv's output is rounded once, over [0, max], not again after its ReLU."""
    zoo = load_zoo(built[0])
    assert relu_inputs(zoo.file_of(zoo.variant(PARENT))) == {"Conv": 47, "Add": 1}
    assert relu_inputs(zoo.file_of(zoo.variant(CHILD))) == {"Add": 1}  # every conv is quantized in this recipe


def test_ops_conv_relu_rounds_a_conv_output_once_over_what_its_relu_keeps(tmp_path: Path):
    """On conv -> ReLU -> conv: --ops conv quantizes the first conv's whole output, negatives included, and then the
    ReLU's; conv-relu drops the ReLU and quantizes the conv's output over [0, max] only: a grid about twice as fine
    here, and outputs at least as close to the float net's."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edged.factory.int8 import Int8Recipe, prepare_for_quantization, quantize_int8

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal(shape).astype("float32"), name)
        for name, shape in (("w1", (8, 3, 3, 3)), ("w2", (4, 8, 1, 1)))
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["a"], ["r"]),
            helper.make_node("Conv", ["r", "w2"], ["y"]),
        ],
        "conv-relu-conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "net.onnx")
    prepared, input_name = prepare_for_quantization(tmp_path / "net.onnx", tmp_path)
    tensors = [rng.random((1, 3, 8, 8), dtype=np.float32) for _ in range(8)]
    float_outputs = np.concatenate([ort.InferenceSession(str(prepared)).run(None, {"x": t})[0] for t in tensors])

    def quantized(ops: str) -> tuple[float, int, float]:
        """The scale and zero point of conv1's output quantizer, and the RMS distance to the float outputs."""
        out = tmp_path / f"{ops}.onnx"
        recipe = Int8Recipe(calibration="minmax", weights="u8", ops=ops)
        quantize_int8(prepared, out, recipe, tensors, input_name, tmp_path, progress=False)
        model = onnx.load(out)
        assert relu_inputs(out) == ({} if ops == "conv-relu" else {"Conv": 1})
        conv1 = next(n for n in model.graph.node if n.op_type == "Conv")  # graph order: the one on the pixels
        quantizer = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == conv1.output[0])
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        session = ort.InferenceSession(str(out))
        outputs = np.concatenate([session.run(None, {"x": t})[0] for t in tensors])
        rms = float(np.sqrt(np.mean((outputs - float_outputs) ** 2)))
        return float(inits[quantizer.input[1]]), int(inits[quantizer.input[2]]), rms

    folded_scale, folded_zero, folded_rms = quantized("conv-relu")
    scale, zero, rms = quantized("conv")
    assert folded_zero == 0 and zero > 0  # [0, max] against [min, max]
    assert folded_scale < 0.7 * scale
    assert folded_rms <= rms < 0.05 * float(float_outputs.std())


def test_ops_all_leaves_the_in_graph_decoding_float(tmp_path: Path):
    """A decoded output puts pixel coordinates (0..416) beside 0..1 scores: quantizing the tail after the last
    convolution would round every score to one step of ~1.6. Under --ops all the convolutions and what lies between
    them are int8; the decoding (here exp, a sigmoid, a concat) is not, and the scores stay as the float net's."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edged.factory.int8 import Int8Recipe, decoding_nodes, prepare_for_quantization, quantize_int8

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal(shape).astype("float32"), name)
        for name, shape in (("w1", (8, 3, 3, 3)), ("w2", (2, 8, 1, 1)), ("w3", (1, 8, 1, 1)))
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["a"], ["r"]),
            helper.make_node("Add", ["r", "r"], ["r2"]),  # between convolutions: int8 under --ops all
            helper.make_node("Conv", ["r2", "w2"], ["box"]),
            helper.make_node("Conv", ["r2", "w3"], ["logit"]),
            helper.make_node("Exp", ["box"], ["size"]),
            helper.make_node("Mul", ["size", "stride"], ["pixels"]),
            helper.make_node("Sigmoid", ["logit"], ["score"]),
            helper.make_node("Concat", ["pixels", "score"], ["y"], axis=1),
        ],
        "decoding",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
        [*weights, numpy_helper.from_array(np.array(32.0, "float32"), "stride")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "net.onnx")
    prepared, input_name = prepare_for_quantization(tmp_path / "net.onnx", tmp_path)
    ops = {n.name: n.op_type for n in onnx.load(prepared).graph.node}
    assert sorted(ops[name] for name in decoding_nodes(prepared)) == ["Concat", "Exp", "Mul", "Sigmoid"]
    tensors = [rng.random((1, 3, 8, 8), dtype=np.float32) for _ in range(8)]
    out = tmp_path / "all.onnx"
    quantize_int8(prepared, out, Int8Recipe(calibration="minmax", ops="all"), tensors, input_name, tmp_path, False)
    nodes = onnx.load(out).graph.node
    producers = {output: n.op_type for n in nodes for output in n.output}
    rounded = {producers.get(n.input[0]) for n in nodes if n.op_type == "QuantizeLinear"}  # whose outputs are int8
    assert {"Conv", "Add"} <= rounded and not {"Exp", "Mul", "Sigmoid", "Concat"} & rounded
    float_scores = np.concatenate([ort.InferenceSession(str(prepared)).run(None, {"x": t})[0][:, 2] for t in tensors])
    scores = np.concatenate([ort.InferenceSession(str(out)).run(None, {"x": t})[0][:, 2] for t in tensors])
    assert np.abs(scores - float_scores).mean() < 0.02  # int8 convolutions' error, not one 1.6-wide step
    assert len(np.unique(scores)) > 100  # a score quantized beside pixels would take one or two values


def test_old_exports_are_upgraded_and_weights_exposed_as_inputs_are_stripped(tmp_path: Path):
    """An opset-11 export that lists its weights as graph inputs (as the NanoDet exporter did) still quantizes."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edged.factory.graph_stats import graph_stats
    from edged.factory.int8 import Int8Recipe, prepare_for_quantization, quantize_int8

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype("float32"), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "old-export",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3, 3, 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.save(model, tmp_path / "old.onnx")

    prepared, input_name = prepare_for_quantization(tmp_path / "old.onnx", tmp_path)
    assert input_name == "x"
    upgraded = onnx.load(prepared)
    assert [i.name for i in upgraded.graph.input] == ["x"]
    assert next(o.version for o in upgraded.opset_import if o.domain in ("", "ai.onnx")) >= 13

    tensors = [np.random.default_rng(i).random((1, 3, 8, 8), dtype=np.float32) for i in range(4)]
    recipe = Int8Recipe(calibration="minmax", weights="s8-7bit")
    quantize_int8(prepared, tmp_path / "int8.onnx", recipe, tensors, input_name, tmp_path, progress=False)
    ops = {n.op_type for n in onnx.load(tmp_path / "int8.onnx").graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert graph_stats(tmp_path / "int8.onnx").macs == graph_stats(tmp_path / "old.onnx").macs == 4 * 8 * 8 * 27


def test_calibration_cache_is_not_reused_for_other_images(tmp_path: Path) -> None:
    """Two calibration sets in one cache folder get their own ranges (the cache is keyed by the images too)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edged.factory.int8 import Int8Recipe, prepare_for_quantization, quantize_int8

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv")
    graph = helper.make_graph(
        [conv],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "float.onnx")
    prepared, input_name = prepare_for_quantization(tmp_path / "float.onnx", tmp_path)
    recipe = Int8Recipe(calibration="minmax", weights="s8-7bit")

    def input_scale(brightness: float, name: str) -> float:
        tensors = [np.full((1, 3, 8, 8), brightness, np.float32)]
        quantize_int8(prepared, tmp_path / name, recipe, tensors, input_name, tmp_path, progress=False)
        quantized = onnx.load(tmp_path / name)
        q = next(n for n in quantized.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
        scale = next(i for i in quantized.graph.initializer if i.name == q.input[1])
        return float(numpy_helper.to_array(scale))

    dim, bright = input_scale(1.0, "dim.onnx"), input_scale(4.0, "bright.onnx")
    assert bright == pytest.approx(4 * dim, rel=1e-3)


# --- bad input: each a clear error (edged.errors), no traceback, before minutes of work ------------------------------


def run_error(args: list[str], capsys) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert "edged: error:" in err
    return err


def test_empty_calibration_folder_is_a_clear_error(coco_zoo, val_dev, tmp_path, capsys):
    empty = tmp_path / "calib"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    err = run_error(build_args(coco_zoo.path, empty, val_dev, tmp_path / "out"), capsys)
    assert str(empty) in err and "holds no images" in err


def test_missing_calibration_folder_is_a_clear_error(coco_zoo, val_dev, tmp_path, capsys):
    err = run_error(build_args(coco_zoo.path, tmp_path / "nowhere", val_dev, tmp_path / "out"), capsys)
    assert "calibration folder not found" in err


def test_unreadable_calibration_image_is_named(coco_zoo, val_dev, tmp_path, capsys):
    calib = tmp_path / "calib"
    calib.mkdir()
    (calib / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    err = run_error(build_args(coco_zoo.path, calib, val_dev, tmp_path / "out"), capsys)
    assert "broken.jpg" in err and "not a readable image" in err


def test_calibrating_on_the_eval_set_is_refused(coco_zoo, val_dev, tmp_path, capsys):
    err = run_error(build_args(coco_zoo.path, val_dev / "images", val_dev, tmp_path / "out"), capsys)
    assert "also in the eval set" in err


def test_missing_finetuning_folder_is_a_clear_error(coco_zoo, shared, val_dev, tmp_path, capsys):
    calib = shared / "data" / "coco128-train" / "images"
    args = build_args(coco_zoo.path, calib, val_dev, tmp_path / "out", "--finetune-data", str(tmp_path / "nope"))
    err = run_error(args, capsys)
    assert "nope: fine-tuning folder not found" in err


def test_finetuning_on_the_eval_set_is_refused(coco_zoo, shared, val_dev, tmp_path, capsys):
    calib = shared / "data" / "coco128-train" / "images"
    args = build_args(coco_zoo.path, calib, val_dev, tmp_path / "out", "--finetune-data", str(val_dev / "images"))
    err = run_error(args, capsys)
    assert "fine-tuning image(s) are also in the eval set" in err


def test_missing_eval_set_is_a_clear_error(coco_zoo, shared, tmp_path, capsys):
    calib = shared / "data" / "coco128-train" / "images"
    err = run_error(build_args(coco_zoo.path, calib, tmp_path / "no-eval", tmp_path / "out"), capsys)
    assert "evaluation data not found" in err


def test_tflite_parent_is_refused(coco_zoo, shared, val_dev, tmp_path, capsys):
    args = build_args(coco_zoo.path, shared / "data" / "coco128-train" / "images", val_dev, tmp_path / "out")
    args[args.index(PARENT)] = "fastestdet-352-tflite"
    err = run_error(args, capsys)
    assert "not ONNX" in err and "fastestdet-352-tflite" in err


def test_file_that_is_not_onnx_is_a_clear_error(shared, val_dev, tmp_path, capsys):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x00\x01 definitely not a protobuf model" * 10)
    write_manifest(
        tmp_path,
        f"""
schema: edged.zoo/v1
family: broken
labels: {shared}/models/coco/coco.names
variants:
  - id: {PARENT}
    technique: baseline
    format: onnx
    file: model.onnx
    sha256: {sha256_of(model)}
    input: {{size: [352, 352], color: BGR, resize: stretch, scale: 0.00392156862745098}}
    decoder: fastestdet
""",
    )
    calib = shared / "data" / "coco128-train" / "images"
    err = run_error(build_args(tmp_path, calib, val_dev, tmp_path / "out"), capsys)
    assert "model.onnx" in err and "not an ONNX model" in err
