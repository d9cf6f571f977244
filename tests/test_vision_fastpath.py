"""The fast per-frame path computes exactly what the plain formulation computes.

Pre-processing, decoding, NMS and the way back to image pixels were rewritten for speed: one resize into a reused
buffer and a conversion straight into the tensor, thresholds before any per-box work, float64 boxes into OpenCV's
NMS, Python numbers for the messages in one go. Each test keeps the plain formulation they replaced as its
reference and requires identical output: on synthetic inputs over every option of the manifest's input block,
and end to end on real models and frames (the shipped family always; the reference zoos' yolox, nanodet,
fastestdet, yunet and blazeface where ../shared is).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from edged.vision.decoders.base import Candidates, best_class
from edged.vision.decoders.yolov8 import Yolov8Decoder
from edged.vision.detector import Detector
from edged.vision.postprocess import PostprocessOptions, non_max_suppression
from edged.vision.preprocess import InputSpec, Preprocessor, Transform
from edged.vision.types import DetectedObject, Detections
from edged.zoo.manifest import load_zoo

ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = ROOT / "edged" / "demo" / "vtest_10s.mp4"
LIVE = PostprocessOptions(score_threshold=0.25)
EVALUATION = PostprocessOptions.for_evaluation()
OTHER = PostprocessOptions(score_threshold=0.05, nms_iou=0.45, max_detections=300, class_agnostic_nms=True)


# --- the plain formulations, kept as references ------------------------------------------------------------------


def plain_preprocess(spec: InputSpec, image: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
    """Pad a fresh canvas, resize into it, swap colours, astype, scale, shift, transpose, copy."""
    h, w = image.shape[:2]
    tw, th = spec.size
    if spec.resize == "stretch":
        canvas = cv2.resize(image, (tw, th), interpolation=cv2.INTER_LINEAR)
        transform: tuple[float, ...] = (tw / w, th / h, 0.0, 0.0, w, h)
    else:
        ratio = min(tw / w, th / h)
        nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
        px, py = ((tw - nw) // 2, (th - nh) // 2) if spec.letterbox_align == "center" else (0, 0)
        canvas = np.full((th, tw, 3), spec.pad_value, dtype=np.uint8)
        canvas[py : py + nh, px : px + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        transform = (nw / w, nh / h, float(px), float(py), w, h)
    if spec.color == "RGB":
        canvas = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
    tensor: np.ndarray = canvas
    if spec.dtype == "float32":
        std = np.asarray(spec.std, dtype=np.float32)
        gain = (spec.scale / std).astype(np.float32)
        bias = (np.asarray(spec.mean, dtype=np.float32) / std).astype(np.float32)
        tensor = canvas.astype(np.float32) * gain - bias
    tensor = tensor[np.newaxis]
    if spec.layout == "NCHW":
        tensor = tensor.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(tensor), transform


def plain_best_class(class_scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Argmax and score of every row, then the threshold."""
    ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(ids)), ids]
    keep = scores >= threshold
    return np.flatnonzero(keep), scores[keep], ids[keep]


def plain_nms(candidates: Candidates, options: PostprocessOptions) -> Candidates:
    """float32 xywh rows into OpenCV, as before."""
    if len(candidates.scores) == 0:
        return candidates
    boxes = candidates.boxes
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    scores = candidates.scores.astype(np.float32)
    if options.class_agnostic_nms:
        kept = cv2.dnn.NMSBoxes(xywh, scores, 0.0, options.nms_iou)
    else:
        ids = candidates.class_ids.astype(np.int32)
        kept = cv2.dnn.NMSBoxesBatched(xywh, scores, ids, 0.0, options.nms_iou)
    keep = np.asarray(kept, dtype=np.int64).reshape(-1)
    keep = keep[np.argsort(-scores[keep], kind="stable")][: options.max_detections]
    return Candidates(boxes[keep], scores[keep], candidates.class_ids[keep])


def plain_to_image(t: Transform, boxes: np.ndarray) -> np.ndarray:
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, 0::2] = (boxes[:, 0::2] - t.pad_x) / t.scale_x
    out[:, 1::2] = (boxes[:, 1::2] - t.pad_y) / t.scale_y
    np.clip(out[:, 0::2], 0, t.width, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, t.height, out=out[:, 1::2])
    return out


def plain_yolov8(outputs: list[np.ndarray], threshold: float) -> Candidates:
    """The shipped family's decoder as it was: every one of the N boxes scored and converted, then thresholded."""
    pred = outputs[0][0].T
    rows, scores, ids = plain_best_class(pred[:, 4:], threshold)
    cxcywh = pred[rows, :4]
    half = cxcywh[:, 2:4] / 2
    boxes = np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)
    return Candidates(boxes.astype(np.float32), scores.astype(np.float32), ids.astype(np.int64))


def assert_same(actual: Candidates, expected: Candidates, where: str) -> None:
    assert actual.boxes.dtype == expected.boxes.dtype == np.float32, where
    np.testing.assert_array_equal(actual.boxes, expected.boxes, err_msg=where)
    np.testing.assert_array_equal(actual.scores, expected.scores, err_msg=where)
    np.testing.assert_array_equal(actual.class_ids, expected.class_ids, err_msg=where)


# --- synthetic inputs ---------------------------------------------------------------------------------------------

NORMALISATIONS = [
    {"scale": 1.0},  # identity: a plain cast
    {"scale": 1 / 255},  # the shipped family
    {"mean": (103.53, 116.28, 123.675), "std": (57.375, 57.12, 58.395)},  # nanodet
    {"scale": 2 / 255, "mean": (1.0, 1.0, 1.0)},  # blazeface
    {"scale": -0.5, "mean": (3.0, 0.0, -2.0), "std": (1.0, -2.0, 0.3)},  # every sign
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("color", ["BGR", "RGB"])
@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_preprocess_is_bit_identical_to_the_plain_formulation(layout: str, color: str, dtype: str):
    rng = np.random.default_rng(0)
    sizes = [(576, 768), (480, 640), (37, 100), (5, 300), (576, 768)]  # back to the first: a new placement again
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    for size, resize, align, pad, norm in itertools.product(
        [(64, 64), (40, 24), (17, 33)], ["stretch", "letterbox"], ["center", "top-left"], [114, 0], NORMALISATIONS
    ):
        spec = InputSpec.model_validate(
            {"size": size, "layout": layout, "color": color, "resize": resize, "letterbox_align": align}
            | {"pad_value": pad, "dtype": dtype, **norm}
        )
        preprocess = Preprocessor(spec)
        for image in [*images, images[-1]]:  # twice the same size: the cached placement
            tensor, transform = preprocess(image)
            expected, expected_transform = plain_preprocess(spec, image)
            where = f"{spec} on {image.shape}"
            assert tensor.dtype == expected.dtype and tensor.shape == expected.shape, where
            assert tensor.flags.c_contiguous, where
            assert tensor.tobytes() == expected.tobytes(), where  # bitwise: -0.0 and NaN included
            assert dataclasses.astuple(transform) == expected_transform, where


def test_preprocess_hands_out_a_new_tensor_each_frame():
    """Callers may keep tensors (calibration keeps a whole set): the next frame must not overwrite them."""
    preprocess = Preprocessor(InputSpec(size=(32, 32), resize="letterbox", scale=1 / 255))
    first, _ = preprocess(np.full((48, 64, 3), 10, np.uint8))
    kept = first.copy()
    second, _ = preprocess(np.full((48, 64, 3), 200, np.uint8))
    assert second is not first
    np.testing.assert_array_equal(first, kept)


@pytest.mark.parametrize("transposed", [False, True], ids=["classes-contiguous", "classes-strided"])
@pytest.mark.parametrize("threshold", [0.0, 0.25, 0.8, 2.0])
def test_best_class_thresholds_first_without_changing_the_answer(transposed: bool, threshold: float):
    rng = np.random.default_rng(1)
    scores = np.round(rng.random((500, 7), dtype=np.float32) * 4) / 4  # coarse: ties between classes on most rows
    class_scores = np.ascontiguousarray(scores.T).T if transposed else scores
    assert (class_scores.strides[1] == 4) != transposed
    rows, best, ids = best_class(class_scores, threshold)
    expected = plain_best_class(scores, threshold)
    for actual, wanted in zip((rows, best, ids), expected):
        np.testing.assert_array_equal(actual, wanted)


def test_to_image_is_bit_identical_to_the_plain_formulation():
    rng = np.random.default_rng(2)
    boxes = rng.uniform(-80, 720, (300, 4)).astype(np.float32)  # many fall outside: clipping included
    for transform in [
        Transform(640 / 768, 480 / 576, 0.0, 80.0, 768, 576),
        Transform(0.3, 0.7, 12.0, 0.0, 1920, 1080),
        Transform(416 / 640, 416 / 640, 0.0, 0.0, 640, 427),
    ]:
        np.testing.assert_array_equal(transform.to_image(boxes), plain_to_image(transform, boxes))
    assert transform.to_image(boxes[:0]).shape == (0, 4)


@pytest.mark.parametrize("options", [LIVE, EVALUATION, OTHER], ids=["live", "evaluation", "agnostic"])
def test_nms_is_identical_to_opencv_on_float32_rows(options: PostprocessOptions):
    rng = np.random.default_rng(3)
    for n in (1, 5, 60, 700):
        centres = rng.uniform(-20, 340, (n, 2))  # clustered boxes, some over the edges
        sizes = rng.uniform(2, 120, (n, 2))
        boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
        scores = rng.random(n, dtype=np.float32)
        scores[: n // 4] = scores[n // 4 : 2 * (n // 4)]  # equal scores: the order of ties matters
        candidates = Candidates(boxes, scores, rng.integers(0, 4, n).astype(np.int64))
        assert_same(non_max_suppression(candidates, options), plain_nms(candidates, options), f"{n} boxes")


def test_objects_are_the_plain_conversion():
    rng = np.random.default_rng(4)
    boxes = rng.uniform(-5, 800, (40, 4)).astype(np.float32)
    found = Detections(boxes, rng.random(40, dtype=np.float32), rng.integers(0, 3, 40), 768, 576, 1.0, 1.0)
    labels = ["person", "car", "bus"]
    normalised = np.clip(boxes / np.array([768, 576, 768, 576], np.float32), 0.0, 1.0)
    expected = [
        DetectedObject(
            label=labels[int(c)],
            class_id=int(c),
            score=round(float(s), 4),
            box=(round(float(b[0]), 5), round(float(b[1]), 5), round(float(b[2]), 5), round(float(b[3]), 5)),
        )
        for b, s, c in zip(normalised, found.scores, found.class_ids)
    ]
    assert found.objects(labels) == expected


# --- real models, real frames ----------------------------------------------------------------------------------


def demo_frames(count: int, step: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(DEMO_CLIP))
    frames = []
    try:
        while len(frames) < count:
            ok, frame = capture.read()
            assert ok, f"{DEMO_CLIP}: cannot read the demo clip"
            frames.append(frame)
            for _ in range(step - 1):
                capture.read()
    finally:
        capture.release()
    return frames


def plain_detect(detector: Detector, image: np.ndarray, decode) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The whole frame the plain way: its own tensor, `decode` for the candidates, the plain NMS and way back."""
    tensor, transform = plain_preprocess(detector.preprocess.spec, image)
    kept = plain_nms(decode(detector.engine.run(tensor), detector.postprocess.score_threshold), detector.postprocess)
    return plain_to_image(Transform(*transform), kept.boxes), kept.scores, kept.class_ids


def decode_all_then_threshold(detector: Detector):
    """For decoders without a plain twin here: decode every box (threshold -inf), then keep those that reach it."""

    def decode(outputs: list[np.ndarray], threshold: float) -> Candidates:
        every = detector.decoder.decode(outputs, -np.inf)
        keep = every.scores >= threshold
        return Candidates(every.boxes[keep], every.scores[keep], every.class_ids[keep])

    return decode


def assert_detects_as_the_plain_path(detector: Detector, images: list[np.ndarray], decode, name: str) -> int:
    found = 0
    for number, image in enumerate(images):
        got = detector.detect(image)
        boxes, scores, class_ids = plain_detect(detector, image, decode)
        where = f"{name}, image {number}, score >= {detector.postprocess.score_threshold}"
        np.testing.assert_array_equal(got.boxes, boxes, err_msg=where)
        np.testing.assert_array_equal(got.scores, scores, err_msg=where)
        np.testing.assert_array_equal(got.class_ids, class_ids, err_msg=where)
        found += len(scores)
    return found


@pytest.fixture(scope="module")
def shipped_zoo():
    return load_zoo(ROOT / "model_zoo")


@pytest.mark.parametrize("options", [LIVE, EVALUATION], ids=["live", "evaluation"])
def test_the_shipped_family_detects_exactly_as_the_plain_path(shipped_zoo, options: PostprocessOptions):
    frames = demo_frames(4, 20)
    for variant in shipped_zoo.variants:
        if variant.input.tiles is not None:
            continue  # the plain path here is one whole frame; tiled inference has its own (tests/test_tiling.py)
        detector = shipped_zoo.open_detector(variant.id, postprocess=options)
        try:
            assert isinstance(detector.decoder, Yolov8Decoder)
            found = assert_detects_as_the_plain_path(detector, frames, plain_yolov8, variant.id)
            found_too = assert_detects_as_the_plain_path(
                detector, frames[:1], decode_all_then_threshold(detector), variant.id
            )
        finally:
            detector.close()
        assert found > 0 and found_too > 0, f"{variant.id}: nothing detected, so nothing compared"


@pytest.mark.parametrize("options", [LIVE, EVALUATION, OTHER], ids=["live", "evaluation", "agnostic"])
def test_every_reference_decoder_detects_exactly_as_the_plain_path(
    coco_zoo, face_zoo, val_dev: Path, group_photo: Path, options: PostprocessOptions
):
    images = [cv2.imread(str(p)) for p in sorted((val_dev / "images").glob("*.jpg"))[:3]]
    images += [cv2.imread(str(group_photo)), *demo_frames(1, 1)]
    for zoo in (coco_zoo, face_zoo):
        for variant in zoo.variants:
            detector = zoo.open_detector(variant.id, postprocess=options)
            try:
                decode = decode_all_then_threshold(detector)
                found = assert_detects_as_the_plain_path(detector, images, decode, variant.id)
            finally:
                detector.close()
            assert found > 0, f"{variant.id}: nothing detected, so nothing compared"
