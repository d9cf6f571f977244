"""Labelled image sets for evaluation: YOLO layout (images/, labels/, classes.txt) or COCO JSON.

Both become the same thing: class names and a stream of (image, ground-truth boxes in pixels), with a
fingerprint of the labels so a profile's `eval_set` can be checked to mean the same data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edged.errors import DatasetError
from edged.sources import IMAGE_SUFFIXES, read_image


@dataclass(frozen=True)
class GroundTruth:
    class_index: int  # into EvalSet.classes
    box: tuple[float, float, float, float]  # x, y, w, h in pixels (COCO convention)
    iscrowd: int = 0


@dataclass(frozen=True)
class Sample:
    image_id: int
    path: Path
    image: np.ndarray
    truths: list[GroundTruth]


@dataclass
class EvalSet:
    name: str
    classes: list[str]
    fingerprint: str
    size: int
    _samples: Iterator[Sample] = field(repr=False)
    unlabelled: int = 0  # YOLO images without a label file, counted as background

    def __iter__(self) -> Iterator[Sample]:
        return self._samples


def open_eval_set(data: str | Path, images: str | Path | None = None) -> EvalSet:
    """A directory in YOLO layout, or a COCO JSON annotation file (images next to it or in `images`)."""
    path = Path(data)
    if not path.exists():
        raise DatasetError(f"{path}: evaluation data not found")
    if path.is_file() and path.suffix == ".json":
        return _coco_set(path, Path(images) if images else _coco_images_dir(path))
    if path.is_dir():
        return _yolo_set(path)
    raise DatasetError(f"{path}: expected a YOLO dataset directory (images/, labels/, classes.txt) or a COCO .json")


def _yolo_set(root: Path) -> EvalSet:
    classes_file, images_dir, labels_dir = root / "classes.txt", root / "images", root / "labels"
    for needed in (classes_file, images_dir, labels_dir):
        if not needed.exists():
            raise DatasetError(
                f"{root}: not a YOLO dataset: {needed.name} is missing (need images/, labels/, classes.txt)"
            )
    classes = [c.strip() for c in classes_file.read_text(encoding="utf-8").splitlines() if c.strip()]
    if not classes:
        raise DatasetError(f"{classes_file}: no class names")
    image_paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not image_paths:
        raise DatasetError(f"{images_dir}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    digest = hashlib.sha256()
    label_texts: dict[Path, str | None] = {}
    for image_path in image_paths:
        label_path = labels_dir / f"{image_path.stem}.txt"
        text = label_path.read_text(encoding="utf-8") if label_path.exists() else None
        label_texts[image_path] = text
        digest.update(image_path.name.encode() + b"\0" + (text or "").encode() + b"\0")
    unlabelled = sum(1 for t in label_texts.values() if t is None)

    def samples() -> Iterator[Sample]:
        for image_id, image_path in enumerate(image_paths, start=1):
            image = read_image(image_path)
            h, w = image.shape[:2]
            label_path = labels_dir / f"{image_path.stem}.txt"
            truths = _parse_yolo_labels(label_texts[image_path] or "", label_path, len(classes), w, h)
            yield Sample(image_id, image_path, image, truths)

    return EvalSet(root.name, classes, digest.hexdigest(), len(image_paths), samples(), unlabelled)


def _parse_yolo_labels(text: str, path: Path, num_classes: int, width: int, height: int) -> list[GroundTruth]:
    truths = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls = int(parts[0])
            cx, cy, bw, bh = (float(v) for v in parts[1:5])
        except ValueError:
            raise DatasetError(f"{path}:{number}: expected 'class cx cy w h', got {line.strip()!r}") from None
        if not 0 <= cls < num_classes:
            raise DatasetError(f"{path}:{number}: class {cls} is not in classes.txt ({num_classes} classes)")
        truths.append(GroundTruth(cls, ((cx - bw / 2) * width, (cy - bh / 2) * height, bw * width, bh * height)))
    return truths


def _coco_images_dir(json_path: Path) -> Path:
    for candidate in (json_path.parent / "images", json_path.parent):
        if candidate.is_dir():
            return candidate
    return json_path.parent


def _coco_set(json_path: Path, images_dir: Path) -> EvalSet:
    raw = json_path.read_bytes()
    try:
        doc = json.loads(raw)
        categories = sorted(doc["categories"], key=lambda c: c["id"])
        images = doc["images"]
        annotations = doc.get("annotations", [])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DatasetError(f"{json_path}: not a COCO annotation file ({type(exc).__name__}: {exc})") from None
    classes = [c["name"] for c in categories]
    index_of = {c["id"]: i for i, c in enumerate(categories)}
    by_image: dict[int, list[GroundTruth]] = {img["id"]: [] for img in images}
    for ann in annotations:
        if ann.get("image_id") in by_image and ann.get("category_id") in index_of:
            box = tuple(float(v) for v in ann["bbox"])
            by_image[ann["image_id"]].append(GroundTruth(index_of[ann["category_id"]], box, int(ann.get("iscrowd", 0))))  # type: ignore[arg-type]
    if not images:
        raise DatasetError(f"{json_path}: no images listed")

    def samples() -> Iterator[Sample]:
        for img in images:
            path = images_dir / img["file_name"]
            yield Sample(int(img["id"]), path, read_image(path), by_image[img["id"]])

    return EvalSet(json_path.stem, classes, hashlib.sha256(raw).hexdigest(), len(images), samples())
