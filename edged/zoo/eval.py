"""COCO mAP of a detector on a labelled set, computed by pycocotools (the reference implementation)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from tqdm import tqdm

from edged.errors import DatasetError, MissingExtraError
from edged.vision.detector import Detector
from edged.zoo.datasets import EvalSet


class SizeBin(BaseModel):
    """The objects of one size, by the square root of their box area in image pixels (AI-TOD's measure)."""

    name: str = Field(
        description="e.g. '2-4': counted from 2 up to, not including, 4 pixels (pycocotools scores an object exactly "
        "on an edge in both bins)"
    )
    objects: int
    ap50: float = Field(description="AP at IoU 0.5 on these objects (detections of other sizes left out)")
    recall50: float = Field(description="share of these objects matched by a detection at IoU 0.5 (pycocotools)")


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
    by_size: list[SizeBin] = Field(
        default_factory=list, description="the scored classes by object size (`--sizes`): which sizes are missed"
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
    size_edges: tuple[float, ...] = (),
) -> EvalReport:
    """Run the detector over every image and score it. Classes are matched between model and data by name."""
    _pycocotools()  # missing: say so before minutes of inference
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
    scoring = Scoring(images, annotations, results, categories, category_ids)
    stats, per_class = scoring.headline(options.max_detections)
    at_iou = {f"{t:g}": round(scoring.headline(options.max_detections, (t,))[0][1], 4) for t in extra_iou}
    by_size = scoring.by_size(options.max_detections, size_edges) if size_edges else []
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
        by_size=by_size,
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


@dataclass(frozen=True)
class Scoring:
    """What pycocotools scores, as COCO dicts: the images, their truths, the detections, the scored classes."""

    images: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    results: list[dict[str, Any]]
    categories: list[dict[str, Any]]
    category_ids: list[int]

    def headline(
        self, max_detections: int, iou_thresholds: tuple[float, ...] | None = None
    ) -> tuple[list[float], list[tuple[float, float]]]:
        """[mAP50-95, AP50] and the same per class; with `iou_thresholds`, the second figure is the AP at the first
        of them instead of at 0.5."""
        if not self.results:
            return [0.0, 0.0], [(0.0, 0.0)] * len(self.category_ids)
        evaluator = self.accumulate(max_detections, iou_thresholds)
        # [iou, recall, class, area, max_dets]: area "all", the last cap. Read here, not from `stats`: its mAP50-95
        # line asks for 100 detections whatever maxDets holds (pycocotools' summarize), and finds none at another cap.
        precision = evaluator.eval["precision"][:, :, :, 0, -1]
        per_class = [
            (_mean_valid(precision[:, :, k]), _mean_valid(precision[0, :, k])) for k in range(precision.shape[2])
        ]
        return [_mean_valid(precision), _mean_valid(precision[0])], per_class

    def by_size(self, max_detections: int, edges: tuple[float, ...]) -> list[SizeBin]:
        """AP50 and recall at IoU 0.5 per size bin, through pycocotools' area ranges (COCO's small / medium / large,
        with edges of one's own: tiny objects need finer ones). Bins: below edges[0], between edges, from the last."""
        bins = list(pairwise([0.0, *edges, float("inf")]))
        names = [f"{lo:g}-{hi:g}" if hi != float("inf") else f"{lo:g}+" for lo, hi in bins]
        scored = [a for a in self.annotations if a["category_id"] in self.category_ids and not a["iscrowd"]]
        sides = np.sqrt([a["area"] for a in scored])
        counts = [int(((sides >= lo) & (sides < hi)).sum()) for lo, hi in bins]
        if not self.results:
            return [SizeBin(name=n, objects=c, ap50=0.0, recall50=0.0) for n, c in zip(names, counts)]
        ranges = [[lo**2, min(hi**2, 1e10)] for lo, hi in bins]
        evaluator = self.accumulate(max_detections, (0.5,), (ranges, names))
        precision, recall = evaluator.eval["precision"], evaluator.eval["recall"]  # [T, R, K, A, M], [T, K, A, M]
        return [
            SizeBin(
                name=name,
                objects=count,
                ap50=round(_mean_valid(precision[0, :, :, a, -1]), 4),
                recall50=round(_mean_valid(recall[0, :, a, -1]), 4),
            )
            for a, (name, count) in enumerate(zip(names, counts))
        ]

    def accumulate(
        self,
        max_detections: int,
        iou_thresholds: tuple[float, ...] | None = None,
        area_ranges: tuple[list[list[float]], list[str]] | None = None,
    ) -> Any:
        """A pycocotools evaluation, accumulated (it prints as it works: stdout is kept for our own output).

        Its mAP reads the top `maxDets[-1]` detections per image (100 by default): set to the detector's own cap, so
        that `--max-detections 500` on a crowd (VisDrone's protocol) is scored on all 500, not on the first 100."""
        coco_eval_cls, coco_cls = _pycocotools()
        with contextlib.redirect_stdout(io.StringIO()):
            truth = coco_cls()
            truth.dataset = {"images": self.images, "annotations": self.annotations, "categories": self.categories}
            truth.createIndex()
            evaluator = coco_eval_cls(truth, truth.loadRes(self.results), "bbox")
            evaluator.params.catIds = self.category_ids
            evaluator.params.maxDets = [1, 10, max_detections]
            if iou_thresholds:
                evaluator.params.iouThrs = np.asarray(iou_thresholds, float)
            if area_ranges:
                evaluator.params.areaRng, evaluator.params.areaRngLbl = area_ranges
            evaluator.evaluate()
            evaluator.accumulate()
        return evaluator


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
