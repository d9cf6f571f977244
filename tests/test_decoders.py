"""Every decoder on real models and real images: boxes land on the objects the labels say are there."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edged.vision.decoders import DECODERS
from edged.vision.detector import Detector
from edged.vision.postprocess import PostprocessOptions
from edged.vision.preprocess import InputSpec
from tests.helpers import iou, yolo_boxes

COCO_VARIANTS = [
    "yolox-nano-416",
    "nanodet-m-320",
    "fastestdet-352",
    "fastestdet-352-tflite",
    "nanodet-m-320-tflite",
]
PEOPLE_IMAGE = "000000002153"  # four people and a bicycle


def test_every_decoder_is_registered():
    assert set(DECODERS) >= {"yolox", "nanodet", "fastestdet", "yolov8", "yunet", "blazeface"}


@pytest.mark.parametrize("variant_id", COCO_VARIANTS)
def test_coco_decoder_finds_the_labelled_people(coco_zoo, val_dev: Path, variant_id: str):
    image = cv2.imread(str(val_dev / "images" / f"{PEOPLE_IMAGE}.jpg"))
    h, w = image.shape[:2]
    people = [box for c, box in yolo_boxes(val_dev / "labels" / f"{PEOPLE_IMAGE}.txt", w, h) if c == 0]
    detector = coco_zoo.open_detector(variant_id, postprocess=PostprocessOptions(score_threshold=0.3))
    found = detector.detect(image)
    person_boxes = [b for b, c in zip(found.boxes, found.class_ids) if detector.labels[c] == "person"]
    largest = max(people, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    assert max(iou(largest, b) for b in person_boxes) > 0.7
    matched = sum(1 for p in people if any(iou(p, b) > 0.5 for b in person_boxes))
    assert matched >= len(people) // 2
    assert found.boxes.min() >= 0 and found.boxes[:, 2].max() <= w and found.boxes[:, 3].max() <= h


def test_tflite_int8_agrees_with_fp32_twin(coco_zoo, val_dev: Path):
    image = cv2.imread(str(val_dev / "images" / f"{PEOPLE_IMAGE}.jpg"))
    fp32 = coco_zoo.open_detector("fastestdet-352-tflite", postprocess=PostprocessOptions(score_threshold=0.6))
    int8 = coco_zoo.open_detector("fastestdet-352-tflite-int8", postprocess=PostprocessOptions(score_threshold=0.3))
    a, b = fp32.detect(image), int8.detect(image)
    assert len(a.boxes) > 0
    for box, class_id in zip(a.boxes, a.class_ids):
        assert max(iou(box, other) for other, c in zip(b.boxes, b.class_ids) if c == class_id) > 0.6


@pytest.mark.parametrize("variant_id", ["yunet-n-320", "blazeface-full"])
def test_face_decoders_find_the_faces_in_a_group_photo(face_zoo, group_photo: Path, variant_id: str):
    image = cv2.imread(str(group_photo))
    detector = face_zoo.open_detector(variant_id, postprocess=PostprocessOptions(score_threshold=0.6))
    found = detector.detect(image)
    assert len(found.boxes) >= 4
    sizes = (found.boxes[:, 2:] - found.boxes[:, :2]) / [image.shape[1], image.shape[0]]
    assert np.all(sizes < 0.2), "faces in a group photo are small"
    assert np.all(found.boxes[:, 1] < image.shape[0] * 0.5), "the faces are in the top half of this photo"


def test_face_detectors_agree_on_a_close_up(face_zoo, group_photo: Path):
    """BlazeFace short range is a selfie model: give it a close-up that YuNet located."""
    image = cv2.imread(str(group_photo))
    yunet = face_zoo.open_detector("yunet-n-320", postprocess=PostprocessOptions(score_threshold=0.8))
    x1, y1, x2, y2 = yunet.detect(image).boxes[0]
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * 2.5
    top, left = int(max(0, cy - side / 2)), int(max(0, cx - side / 2))
    crop = image[top : int(cy + side / 2), left : int(cx + side / 2)]
    reference = yunet.detect(crop).boxes[0]
    for variant_id in ("blazeface-short", "blazeface-full"):
        detector = face_zoo.open_detector(variant_id, postprocess=PostprocessOptions(score_threshold=0.5))
        boxes = detector.detect(crop).boxes
        assert len(boxes) >= 1, variant_id
        assert iou(boxes[0], reference) > 0.5, variant_id


def _yolox_as_ultralytics(yolox: Path, out: Path, size: int = 416, num_classes: int = 80) -> None:
    """Re-head YOLOX into the Ultralytics layout [1, 4 + nc, N]: decoded cx,cy,w,h and obj*cls scores.

    A real network in the yolov8 output format, built with plain ONNX ops at test time."""
    model = onnx.load(str(yolox))
    grids, strides = [], []
    for s in (8, 16, 32):
        ys, xs = np.mgrid[0 : size // s, 0 : size // s]
        grids.append(np.stack([xs.ravel(), ys.ravel()], 1))
        strides.append(np.full((grids[-1].shape[0], 1), s))
    grid = numpy_helper.from_array(np.concatenate(grids)[None].astype(np.float32), "u_grid")
    stride = numpy_helper.from_array(np.concatenate(strides)[None].astype(np.float32), "u_stride")
    starts = {
        n: numpy_helper.from_array(np.array(v, np.int64), n)
        for n, v in [
            ("u_0", [0]),
            ("u_2", [2]),
            ("u_4", [4]),
            ("u_5", [5]),
            ("u_end", [5 + num_classes]),
            ("u_ax", [2]),
        ]
    }
    nodes = [
        helper.make_node("Slice", ["output", "u_0", "u_2", "u_ax"], ["xy_raw"]),
        helper.make_node("Slice", ["output", "u_2", "u_4", "u_ax"], ["wh_raw"]),
        helper.make_node("Slice", ["output", "u_4", "u_5", "u_ax"], ["obj"]),
        helper.make_node("Slice", ["output", "u_5", "u_end", "u_ax"], ["cls"]),
        helper.make_node("Add", ["xy_raw", "u_grid"], ["xy_cells"]),
        helper.make_node("Mul", ["xy_cells", "u_stride"], ["xy"]),
        helper.make_node("Exp", ["wh_raw"], ["wh_cells"]),
        helper.make_node("Mul", ["wh_cells", "u_stride"], ["wh"]),
        helper.make_node("Mul", ["cls", "obj"], ["scores"]),
        helper.make_node("Concat", ["xy", "wh", "scores"], ["rows"], axis=2),
        helper.make_node("Transpose", ["rows"], ["output0"], perm=[0, 2, 1]),
    ]
    graph = model.graph
    graph.node.extend(nodes)
    graph.initializer.extend([grid, stride, *starts.values()])
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("output0", onnx.TensorProto.FLOAT, [1, 4 + num_classes, None]))
    onnx.save(model, str(out))


def test_yolov8_decoder_reads_ultralytics_layout(coco_zoo, shared: Path, val_dev: Path, tmp_path: Path):
    reheaded = tmp_path / "yolox_as_yolov8.onnx"
    _yolox_as_ultralytics(shared / "models" / "coco" / "yolox_nano_416.onnx", reheaded)
    variant = coco_zoo.variant("yolox-nano-416")
    labels = coco_zoo.labels_of(variant)
    options = PostprocessOptions(score_threshold=0.3)
    yolov8 = Detector.open(
        reheaded, "onnx", variant.input, DECODERS["yolov8"](type="yolov8"), labels, postprocess=options
    )
    yolox = coco_zoo.open_detector("yolox-nano-416", postprocess=options)
    image = cv2.imread(str(val_dev / "images" / f"{PEOPLE_IMAGE}.jpg"))
    a, b = yolov8.detect(image), yolox.detect(image)
    assert len(a.boxes) == len(b.boxes) > 0
    np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)


def test_preprocess_letterbox_maps_boxes_back_exactly():
    from edged.vision.preprocess import Preprocessor

    spec = InputSpec(size=(320, 320), resize="letterbox", layout="NHWC", color="RGB", scale=1 / 255)
    image = np.zeros((480, 640, 3), np.uint8)
    image[:, :, 0] = 255  # blue in BGR
    tensor, transform = Preprocessor(spec)(image)
    assert tensor.shape == (1, 320, 320, 3) and tensor.dtype == np.float32
    assert tensor[0, 160, 160, 2] == pytest.approx(1.0)  # blue is the last channel once RGB
    assert tensor[0, 5, 160, 2] == pytest.approx(114 / 255)  # the padding band
    box = np.array([[0.0, 40.0, 320.0, 280.0]], np.float32)  # the image area inside the letterbox
    np.testing.assert_allclose(transform.to_image(box), [[0, 0, 640, 480]], atol=1e-3)


def test_preprocess_normalises_per_channel_in_nchw():
    from edged.vision.preprocess import Preprocessor

    spec = InputSpec(size=(4, 2), mean=(10, 20, 30), std=(2, 4, 5))
    image = np.full((2, 4, 3), 50, np.uint8)
    tensor, _ = Preprocessor(spec)(image)
    assert tensor.shape == (1, 3, 2, 4)
    np.testing.assert_allclose(tensor[0, :, 0, 0], [20, 7.5, 4])


def test_class_aware_nms_keeps_overlapping_boxes_of_different_classes():
    from edged.vision.decoders import Candidates
    from edged.vision.postprocess import non_max_suppression

    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]], np.float32)
    candidates = Candidates(boxes, np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 0, 1]))
    aware = non_max_suppression(candidates, PostprocessOptions(nms_iou=0.5))
    agnostic = non_max_suppression(candidates, PostprocessOptions(nms_iou=0.5, class_agnostic_nms=True))
    assert aware.class_ids.tolist() == [0, 1]
    assert agnostic.class_ids.tolist() == [0]
    capped = non_max_suppression(candidates, PostprocessOptions(nms_iou=0.5, max_detections=1))
    assert capped.scores.tolist() == pytest.approx([0.9])
