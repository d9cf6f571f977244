"""The variant factory's own models: the student exports to an ONNX edged opens and decodes, binary packing is
bit-exact and small, pruning physically shrinks the file. Needs the [build] extra (torch)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_or_skip

torch = require_or_skip("torch", reason="torch is in the [build] extra, not in `make test`'s install")
onnx = require_or_skip("onnx")

from edged.factory.train.binary import (  # noqa: E402
    binarize,
    binary_convs,
    export_binary_onnx,
    pack_bits,
    unpack_bits,
)
from edged.factory.train.data import LABELS  # noqa: E402
from edged.factory.train.measure import open_student_file  # noqa: E402
from edged.factory.train.student import (  # noqa: E402
    ExportModel,
    Student,
    StudentConfig,
    anchor_grid,
    decode_boxes,
    export_onnx,
)

SIZE = 160  # small input: the tests check structure, not accuracy


@pytest.fixture(scope="module")
def student() -> Student:
    """A small random student with non-trivial BatchNorm statistics, so folding is exercised."""
    torch.manual_seed(0)
    model = Student(StudentConfig(num_classes=len(LABELS), width=0.75, labels=LABELS))  # the shipped width
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(-1.5, 1.5)
    return model.eval()


def onnx_outputs(path: Path, image: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: image})[0]


def test_student_exports_an_onnx_that_edged_opens_and_decodes(student: Student, tmp_path: Path) -> None:
    path = export_onnx(copy.deepcopy(student), tmp_path / "student.onnx", (SIZE, SIZE))
    detector = open_student_file(path, SIZE)  # checks input shape and the yolov8 output layout
    try:
        frame = np.random.default_rng(0).integers(0, 255, (120, 200, 3), dtype=np.uint8)
        found = detector.detect(frame)
    finally:
        detector.close()
    assert found.width == 200 and found.height == 120
    assert len(found.boxes) > 0  # the untrained net scores ~0.01 everywhere; evaluation keeps those
    assert np.all(found.class_ids < len(LABELS))


def test_exported_decoding_matches_the_training_decoder(student: Student, tmp_path: Path) -> None:
    image = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        raw = student(image)
        centres, strides = anchor_grid(SIZE, SIZE)
        boxes = decode_boxes(raw[..., :4], centres, strides)
        expected = torch.cat([boxes, raw[..., 4:].sigmoid()], dim=-1).transpose(1, 2).numpy()
        exported = ExportModel(student, (SIZE, SIZE))(image).numpy()
    np.testing.assert_allclose(exported, expected, rtol=1e-5, atol=1e-4)
    path = export_onnx(copy.deepcopy(student), tmp_path / "s.onnx", (SIZE, SIZE))
    np.testing.assert_allclose(onnx_outputs(path, image.numpy()), expected, rtol=1e-4, atol=1e-3)


def test_bit_packing_round_trips_exactly() -> None:
    bits = np.random.default_rng(1).random(1001) > 0.5
    packed = pack_bits(bits)
    assert packed.dtype == np.uint8 and packed.size == 126
    np.testing.assert_array_equal(unpack_bits(packed, bits.size), bits)


def test_binary_onnx_unpacks_to_the_exact_weights_and_is_10x_smaller(student: Student, tmp_path: Path) -> None:
    from edged.factory.train.binary import fold_for_export

    binary = binarize(copy.deepcopy(student)).eval()
    assert len(binary_convs(binary)) > 10
    fp32 = export_onnx(copy.deepcopy(student), tmp_path / "fp32.onnx", (SIZE, SIZE))
    packed_path, packed = export_binary_onnx(copy.deepcopy(binary), tmp_path / "binary.onnx", (SIZE, SIZE))
    assert packed == len(binary_convs(binary))
    assert fp32.stat().st_size >= 10 * packed_path.stat().st_size

    # the graph's unpacked weights are exactly the folded sign x scale weights the model was evaluated with
    folded = fold_for_export(copy.deepcopy(binary))
    expected = [
        m.weight.detach().numpy()
        for m in folded.modules()
        if isinstance(m, torch.nn.Conv2d) and np.unique(np.abs(m.weight.detach().numpy()[0])).size == 1
    ]
    unpacked = _unpacked_weights(packed_path)
    assert len(unpacked) == len(expected) == packed
    for got, want in zip(unpacked, expected):
        np.testing.assert_array_equal(got, want)

    image = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        reference = ExportModel(folded, (SIZE, SIZE))(image).numpy()
    np.testing.assert_allclose(onnx_outputs(packed_path, image.numpy()), reference, rtol=1e-4, atol=1e-3)


def _unpacked_weights(path: Path) -> list[np.ndarray]:
    """Run the model with every unpacked weight exposed as an output."""
    import onnxruntime as ort

    model = onnx.load(str(path))
    names = [n.output[0] for n in model.graph.node if n.op_type == "Mul" and n.output[0].endswith("_weight")]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(names, {"images": np.zeros((1, 3, SIZE, SIZE), np.float32)})
    return list(outputs)
