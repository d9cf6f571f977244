"""COCO mAP of a detector on a labelled set, computed by pycocotools (the reference implementation)."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from tqdm import tqdm

from edged.errors import DatasetError, MissingExtraError
from edged.vision.detector import Detector
from edged.zoo.datasets import EvalSet


class EvalReport(BaseModel):
    """`edged zoo eval --json` output, one per variant."""

    variant: str
    eval_set: str
    eval_set_sha256: str
    images: int
    classes: list[str] = Field(description="classes evaluated: those the model and the dataset share")
    map50_95: float
    map50: float
    per_class_ap: dict[str, float] = Field(description="AP50-95 per evaluated class")
    per_class_ap50: dict[str, float]
    score_threshold: float
    nms_iou: float
    max_detections: int
    ap_at_iou: dict[str, float] = Field(
        default_factory=dict,
        description="AP of the scored classes at other IoU thresholds (`--iou`): how far boxes are from their "
        "objects where mAP50 misses them (a person 2 pixels wide is lost to a box 1 pixel too wide)",
    )
    mean_latency_ms: float
    unlabelled_images: int = 0


def evaluate(
    detector: Detector,
    eval_set: EvalSet,
    variant_id: str,
    classes: list[str] | None = None,
    progress: bool = True,
    extra_iou: tuple[float, ...] = (),
) -> EvalReport:
    """Run the detector over every image and score it. Classes are matched between model and data by name."""
    coco_eval_cls, coco_cls = _pycocotools()
    shared = _shared_classes(detector.labels, eval_set.classes, classes, eval_set.name)
    category_of_label = {detector.labels.index(name): eval_set.classes.index(name) + 1 for name in shared}

    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    latencies: list[float] = []
    for sample in tqdm(eval_set, total=eval_set.size, desc=f"eval {variant_id}", unit="img", disable=not progress):
        h, w = sample.image.shape[:2]
        images.append({"id": sample.image_id, "width": w, "height": h, "file_name": sample.path.name})
        for truth in sample.truths:
            x, y, bw, bh = truth.box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": sample.image_id,
                    "category_id": truth.class_index + 1,
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": truth.iscrowd,
                }
            )
        found = detector.detect(sample.image)
        latencies.append(found.latency_ms)
        for box, score, label in zip(found.boxes, found.scores, found.class_ids):
            category = category_of_label.get(int(label))
            if category is not None:
                x1, y1, x2, y2 = (float(v) for v in box)
                results.append(
                    {
                        "image_id": sample.image_id,
                        "category_id": category,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": float(score),
                    }
                )
    category_ids = [eval_set.classes.index(name) + 1 for name in shared]
    categories = [{"id": eval_set.classes.index(n) + 1, "name": n} for n in eval_set.classes]
    options = detector.postprocess
    scoring = (coco_eval_cls, coco_cls, images, annotations, results, categories, category_ids)
    stats, per_class = _score(*scoring, options.max_detections)
    at_iou = {f"{t:g}": round(_score(*scoring, options.max_detections, (t,))[0][1], 4) for t in extra_iou}
    return EvalReport(
        variant=variant_id,
        eval_set=eval_set.name,
        eval_set_sha256=eval_set.fingerprint,
        images=len(images),
        classes=shared,
        map50_95=round(stats[0], 4),
        map50=round(stats[1], 4),
        per_class_ap={n: round(ap, 4) for n, (ap, _) in zip(shared, per_class)},
        per_class_ap50={n: round(ap50, 4) for n, (_, ap50) in zip(shared, per_class)},
        score_threshold=options.score_threshold,
        nms_iou=options.nms_iou,
        max_detections=options.max_detections,
        ap_at_iou=at_iou,
        mean_latency_ms=round(float(np.mean(latencies)), 2),
        unlabelled_images=eval_set.unlabelled,
    )


def _shared_classes(labels: list[str], dataset: list[str], chosen: list[str] | None, name: str) -> list[str]:
    shared = [c for c in dataset if c in labels]
    if chosen:
        unknown = [c for c in chosen if c not in shared]
        if unknown:
            raise DatasetError(
                f"classes {', '.join(unknown)} are not shared by the model and {name} "
                f"(shared: {', '.join(shared) or 'none'})"
            )
        shared = [c for c in shared if c in chosen]
    if not shared:
        raise DatasetError(
            f"the model's labels ({', '.join(labels[:5])}...) and {name}'s classes "
            f"({', '.join(dataset[:5])}...) share no name: nothing to evaluate"
        )
    return shared


def _score(
    coco_eval_cls: Any,
    coco_cls: Any,
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    results: list[dict[str, Any]],
    categories: list[dict[str, Any]],
    category_ids: list[int],
    max_detections: int,
    iou_thresholds: tuple[float, ...] | None = None,
) -> tuple[list[float], list[tuple[float, float]]]:
    """pycocotools prints as it works; keep stdout for our own output.

    Its mAP reads the top `maxDets[-1]` detections per image (100 by default): set to the detector's own cap, so that
    `--max-detections 500` on a crowd (VisDrone's protocol) is scored on all 500, not silently on the first 100.
    With `iou_thresholds`, the second figure is the AP at the first of them instead of at 0.5."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = coco_cls()
        truth.dataset = {"images": images, "annotations": annotations, "categories": categories}
        truth.createIndex()
        if not results:
            return [0.0, 0.0], [(0.0, 0.0)] * len(category_ids)
        predicted = truth.loadRes(results)
        evaluator = coco_eval_cls(truth, predicted, "bbox")
        evaluator.params.catIds = category_ids
        evaluator.params.maxDets = [1, 10, max_detections]
        if iou_thresholds:
            evaluator.params.iouThrs = np.asarray(iou_thresholds, float)
        evaluator.evaluate()
        evaluator.accumulate()
    # [iou, recall, class, area, max_dets]: area "all", the last cap. Read here, not from `stats`: its mAP50-95
    # line asks for 100 detections whatever maxDets holds (pycocotools' summarize), and finds none at another cap.
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    per_class = [(_mean_valid(precision[:, :, k]), _mean_valid(precision[0, :, k])) for k in range(len(category_ids))]
    return [_mean_valid(precision), _mean_valid(precision[0])], per_class


def _mean_valid(precision: np.ndarray) -> float:
    """pycocotools' average: -1 marks no ground truth for that cell."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else 0.0


def _pycocotools() -> tuple[Any, Any]:
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise MissingExtraError("pycocotools", "tools", "edged zoo eval") from None
    return COCOeval, COCO
