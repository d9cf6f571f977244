"""Training data for the student: which images, whose labels, and a cache decoded once.

The family is specialised to what drones and pole cameras see. Real labels are the teacher where they exist
(drone-people: the COCO teachers are nearly blind on aerial views; highway; coco128-train), and the teacher's
detections are soft pseudo-labels where there are none (overhead parking and indoor frames, street photos, the
vtest video). Each labelled set is split by name into train / tune / held-out: held-out images (the sets' own
valid and test splits) are never trained on and are what the model card reports; the tune split (every 12th
training image, also never trained on) is what build decisions such as the pruning ratio are taken on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from edged.sources import IMAGE_SUFFIXES, read_image
from edged.vision.detector import Detector
from edged.vision.postprocess import PostprocessOptions

LABELS = ("person", "car", "motorbike", "bus", "truck")
DEPLOY_SIDE = 640  # the longest side at which the family's most accurate variant looks at a frame
TUNE_EVERY = 12  # every 12th training image of a labelled set is kept back for build decisions
TEACHER_ID = "yolox-nano-416"
TEACHER_SCORE = 0.3  # pseudo-labels below this are dropped; above it the score is the soft target
VIDEO_TRAIN_FRAMES = range(0, 640, 4)  # vtest.avi frames the student learns from ...
VIDEO_HELDOUT_FRAMES = range(640, 795, 5)  # ... and later frames it is scored on against the teacher


@dataclass
class LabelledImage:
    """One training image with boxes in its own pixels (xyxy), class ids into LABELS, and a weight per box."""

    source: str
    name: str
    load: Callable[[], np.ndarray]
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    supervised: tuple[str, ...] = LABELS  # classes whose absence is meaningful in this image
    scale_range: tuple[float, float] = (0.4, 1.25)


@dataclass(frozen=True)
class SourceSpec:
    """A training source: where, how labelled, how often sampled per epoch."""

    name: str
    kind: str  # "yolo" (real labels), "images" or "video" (teacher pseudo-labels)
    path: str
    sample_weight: float
    splits: tuple[str, ...] = ()  # file-name prefixes that make the training split, for "yolo"
    supervised: tuple[str, ...] = LABELS
    # scale jitter around the deployed scale: tiny aerial people are never shrunk much (they would vanish),
    # large road objects are shrunk more often so that small training crops still show them whole
    scale_range: tuple[float, float] = (0.4, 1.25)


# Scales multiply the cache's base scale (longest side -> DEPLOY_SIDE). Drone people (median 3 x 10 pixels at
# 640) are learnt about twice as large as they come: the tiled drone variant shows each quarter of a frame to the
# network at twice its size. Road objects span the full-frame variants' scales and the tiles' (up to ~2.4x).
SOURCES = (
    SourceSpec("drone-people", "yolo", "data/distill/drone-people", 1.5, ("train",), ("person",), (1.4, 2.6)),
    SourceSpec("highway", "yolo", "data/distill/highway", 1.0, ("train",), LABELS, (0.4, 2.0)),
    SourceSpec("coco128-train", "yolo", "data/coco128-train", 1.0),
    # the teacher misses nearly every car seen from above in these frames: only its people are trusted
    SourceSpec("intel-sample-frames", "images", "data/distill/intel-sample-frames", 0.5, (), ("person",)),
    SourceSpec("street-photos", "images", "data/distill/street-photos", 1.0),
    SourceSpec("vtest", "video", "data/video/vtest.avi", 0.5),
)

# Held-out evaluation sets: the datasets' own valid and test splits, never trained on.
HELDOUT = {
    "drone-people-heldout": ("data/distill/drone-people", ("valid", "test")),
    "highway-heldout": ("data/distill/highway", ("valid", "test")),
}
TUNE = {
    "drone-people-tune": "data/distill/drone-people",
    "highway-tune": "data/distill/highway",
}


def image_paths(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def split_of(path: Path) -> str:
    """The Roboflow exports keep their split as the file-name prefix (train_..., valid_..., test_...)."""
    return path.name.split("_", 1)[0]


def training_split(folder: Path, prefixes: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """(train, tune): the named splits (all images when none are named), every TUNE_EVERY-th kept back."""
    chosen = [p for p in image_paths(folder) if not prefixes or split_of(p) in prefixes]
    tune = chosen[TUNE_EVERY - 1 :: TUNE_EVERY] if prefixes else []
    kept = set(tune)
    return [p for p in chosen if p not in kept], tune


def read_yolo_boxes(label_path: Path, classes: list[str], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """YOLO txt -> (xyxy pixels, class ids into LABELS); classes outside LABELS are dropped."""
    boxes, ids = [], []
    text = label_path.read_text(encoding="utf-8") if label_path.exists() else ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or classes[int(parts[0])] not in LABELS:
            continue
        cx, cy, w, h = (float(v) for v in parts[1:5])
        boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        ids.append(LABELS.index(classes[int(parts[0])]))
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(ids, np.int64)


def yolo_images(spec: SourceSpec, shared: Path) -> list[LabelledImage]:
    folder = shared / spec.path
    classes = [c.strip() for c in (folder / "classes.txt").read_text(encoding="utf-8").splitlines() if c.strip()]
    train, _ = training_split(folder, spec.splits)
    items = []
    for path in train:
        image = read_image(path)
        h, w = image.shape[:2]
        boxes, ids = read_yolo_boxes(folder / "labels" / f"{path.stem}.txt", classes, w, h)
        items.append(
            LabelledImage(
                spec.name,
                path.name,
                _loader(path),
                boxes,
                ids,
                np.ones(len(ids), np.float32),
                spec.supervised,
                spec.scale_range,
            )
        )
    return items


def _loader(path: Path) -> Callable[[], np.ndarray]:
    return lambda: read_image(path)


def _holder(image: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: image


def video_frames(path: Path, indices: range) -> Iterator[tuple[int, np.ndarray]]:
    wanted = set(indices)
    capture = cv2.VideoCapture(str(path))
    try:
        index = 0
        while index <= max(indices):
            ok, frame = capture.read()
            if not ok:
                break
            if index in wanted:
                yield index, frame
            index += 1
    finally:
        capture.release()


def unlabelled_images(spec: SourceSpec, shared: Path) -> list[tuple[str, np.ndarray]]:
    if spec.kind == "video":
        return [(f"frame{i:04d}", f) for i, f in video_frames(shared / spec.path, VIDEO_TRAIN_FRAMES)]
    return [(p.name, read_image(p)) for p in image_paths(shared / spec.path)]


def open_teacher(shared: Path, repo_root: Path) -> tuple[Detector, str]:
    """The teacher as edged itself runs it (reference zoo entry), and its file's sha256."""
    from edged.zoo.manifest import load_zoo

    os.environ["EDGED_SHARED"] = str(shared.resolve())
    zoo = load_zoo(repo_root / "deploy" / "zoos" / "coco-reference")
    options = PostprocessOptions(score_threshold=TEACHER_SCORE, nms_iou=0.5, max_detections=100)
    return zoo.open_detector(TEACHER_ID, postprocess=options), zoo.variant(TEACHER_ID).sha256


def pseudo_label(teacher: Detector, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teacher detections of the family's classes: (xyxy, class ids into LABELS, scores as soft weights)."""
    found = teacher.detect(image)
    keep = [i for i, c in enumerate(found.class_ids) if teacher.labels[int(c)] in LABELS]
    ids = np.asarray([LABELS.index(teacher.labels[int(found.class_ids[i])]) for i in keep], np.int64)
    return found.boxes[keep].astype(np.float32).reshape(-1, 4), ids, found.scores[keep].astype(np.float32)


def teacher_images(spec: SourceSpec, shared: Path, teacher: Detector) -> list[LabelledImage]:
    items = []
    for name, image in tqdm(unlabelled_images(spec, shared), desc=f"teacher labels {spec.name}", unit="img"):
        boxes, ids, scores = pseudo_label(teacher, image)
        items.append(
            LabelledImage(spec.name, name, _holder(image), boxes, ids, scores, spec.supervised, spec.scale_range)
        )
    return items


# --- the cache: every training image decoded once, at the scale the deployed model sees it ---------------------


@dataclass
class TrainCache:
    """All training images as uint8 arrays (longest side <= DEPLOY_SIDE) with their boxes, in one npz."""

    images: list[np.ndarray]
    boxes: list[np.ndarray]  # xyxy in cached pixels
    classes: list[np.ndarray]
    weights: list[np.ndarray]
    supervised: np.ndarray  # [n, len(LABELS)] bool
    base_scale: np.ndarray  # [n]: cached pixels -> deployed-input pixels
    scale_range: np.ndarray  # [n, 2]: jitter multiplying the base scale
    sample_weight: np.ndarray  # [n]: relative draw probability
    group: np.ndarray  # [n]: images that may share a mosaic (same supervised classes)
    sources: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def of_source(self, source: str) -> np.ndarray:
        """[n] bool: which images came from `source`."""
        return np.asarray([s == source for s in self.sources])

    def focused(self, source: str, share: float) -> TrainCache:
        """The same images, drawn so that `source` makes `share` of the samples (the rest keep their ratios)."""
        mine = self.of_source(source)
        if not mine.any() or mine.all() or not 0.0 < share < 1.0:
            raise ValueError(f"cannot give {source} a {share} share: it has {int(mine.sum())} of {len(self)} images")
        weight = self.sample_weight.copy()
        weight[mine] *= share / (1 - share) * weight[~mine].sum() / weight[mine].sum()
        return replace(self, sample_weight=weight)

    def rescaled(self, source: str, scale_range: tuple[float, float]) -> TrainCache:
        """The same images, `source`'s drawn at another scale jitter: a specialist learns them at the scale it runs."""
        low, high = scale_range
        mine = self.of_source(source)
        if not mine.any():
            raise ValueError(f"cannot rescale {source}: the cache has no images from it")
        if not 0.0 < low <= high:
            raise ValueError(f"a scale range must be positive and ordered (low <= high), not {scale_range}")
        jitter = self.scale_range.copy()
        jitter[mine] = (low, high)
        return replace(self, scale_range=jitter)

    def at_scale(self, factor: float) -> TrainCache:
        """The same images drawn `factor` times as large: for a network that runs at another input size (a 208-pixel
        network sees a frame at half the size the 416-pixel one does)."""
        if not factor > 0.0:
            raise ValueError(f"a scale factor must be positive, not {factor}")
        return replace(self, base_scale=self.base_scale * np.float32(factor))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            pixels=np.concatenate([im.reshape(-1) for im in self.images]),
            shapes=np.asarray([im.shape for im in self.images], np.int64),
            boxes=np.concatenate(self.boxes).reshape(-1, 4),
            classes=np.concatenate(self.classes),
            weights=np.concatenate(self.weights),
            box_counts=np.asarray([len(b) for b in self.boxes], np.int64),
            supervised=self.supervised,
            base_scale=self.base_scale,
            scale_range=self.scale_range,
            sample_weight=self.sample_weight,
            group=self.group,
            sources=np.asarray(self.sources),
        )

    @classmethod
    def load(cls, path: Path) -> TrainCache:
        data = np.load(path)
        shapes = data["shapes"]
        sizes = shapes.prod(axis=1)
        pixels = np.split(data["pixels"], np.cumsum(sizes)[:-1])
        images = [p.reshape(s) for p, s in zip(pixels, shapes)]
        cuts = np.cumsum(data["box_counts"])[:-1]
        return cls(
            images,
            np.split(data["boxes"], cuts),
            np.split(data["classes"], cuts),
            np.split(data["weights"], cuts),
            data["supervised"],
            data["base_scale"],
            data["scale_range"],
            data["sample_weight"],
            data["group"],
            [str(s) for s in data["sources"]],
        )


def build_cache(items: list[LabelledImage], weights: dict[str, float]) -> TrainCache:
    images, boxes, classes, box_weights, supervised, base, jitter, draw, group, sources = ([] for _ in range(10))
    groups: dict[tuple[str, ...], int] = {}
    for item in tqdm(items, desc="cache", unit="img"):
        image = item.load()
        h, w = image.shape[:2]
        shrink = min(1.0, DEPLOY_SIDE / max(h, w))
        if shrink < 1.0:
            image = cv2.resize(image, (round(w * shrink), round(h * shrink)), interpolation=cv2.INTER_AREA)
        images.append(np.ascontiguousarray(image))
        boxes.append((item.boxes * shrink).astype(np.float32))
        classes.append(item.classes)
        box_weights.append(item.weights)
        supervised.append([label in item.supervised for label in LABELS])
        base.append(DEPLOY_SIDE / max(image.shape[:2]))
        jitter.append(item.scale_range)
        draw.append(weights[item.source])
        group.append(groups.setdefault(item.supervised, len(groups)))
        sources.append(item.source)
    return TrainCache(
        images,
        boxes,
        classes,
        box_weights,
        np.asarray(supervised, bool),
        np.asarray(base, np.float32),
        np.asarray(jitter, np.float32).reshape(-1, 2),
        np.asarray(draw, np.float64),
        np.asarray(group, np.int64),
        sources,
    )


def collect_training_images(shared: Path, repo_root: Path) -> tuple[list[LabelledImage], str]:
    """Every training image with its labels (real or the teacher's), and the teacher's sha256."""
    teacher, teacher_sha = open_teacher(shared, repo_root)
    items: list[LabelledImage] = []
    try:
        for spec in SOURCES:
            items += yolo_images(spec, shared) if spec.kind == "yolo" else teacher_images(spec, shared, teacher)
    finally:
        teacher.close()
    return items, teacher_sha


def fingerprint(shared: Path) -> str:
    """Changes when the recipe's inputs change: the source list and the shared files' names and sizes."""
    digest = hashlib.sha256(json.dumps([s.__dict__ for s in SOURCES], sort_keys=True).encode())
    digest.update(json.dumps([LABELS, DEPLOY_SIDE, TUNE_EVERY, TEACHER_SCORE]).encode())
    for spec in SOURCES:
        root = shared / spec.path
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            digest.update(f"{f.relative_to(shared)}:{f.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def load_or_build_cache(shared: Path, repo_root: Path, cache_dir: Path) -> tuple[TrainCache, str]:
    """The cache is keyed by fingerprint: built once (about a minute), reused by every later run."""
    key = fingerprint(shared)
    path = cache_dir / f"train-{key}.npz"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        return TrainCache.load(path), json.loads(meta_path.read_text())["teacher_sha256"]
    items, teacher_sha = collect_training_images(shared, repo_root)
    cache = build_cache(items, {s.name: s.sample_weight for s in SOURCES})
    cache.save(path)
    meta_path.write_text(json.dumps({"teacher_sha256": teacher_sha, "images": len(cache)}))
    return cache, teacher_sha


# --- evaluation sets: materialised as YOLO folders of links, so `edged zoo eval --data DIR` reads them ----------


def materialise_yolo_subset(source: Path, images: list[Path], out: Path) -> Path:
    """A YOLO folder whose images and labels link to `source`'s: nothing is copied."""
    if out.exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    for sub in ("images", "labels"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    (tmp / "classes.txt").symlink_to((source / "classes.txt").resolve())
    for image in images:
        (tmp / "images" / image.name).symlink_to(image.resolve())
        label = source / "labels" / f"{image.stem}.txt"
        if label.exists():
            (tmp / "labels" / label.name).symlink_to(label.resolve())
    tmp.rename(out)
    return out


def materialise_eval_sets(shared: Path, out: Path) -> dict[str, Path]:
    """Held-out and tune splits as YOLO folders under `out` (git-ignored): {name: folder}."""
    sets = {}
    for name, (rel, prefixes) in HELDOUT.items():
        folder = shared / rel
        chosen = [p for p in image_paths(folder) if split_of(p) in prefixes]
        sets[name] = materialise_yolo_subset(folder, chosen, out / name)
    for name, rel in TUNE.items():
        folder = shared / rel
        _, tune = training_split(folder, ("train",))
        sets[name] = materialise_yolo_subset(folder, tune, out / name)
    return sets


def yolo_box(box: np.ndarray, width: int, height: int) -> str:
    """xyxy pixels -> 'cx cy w h' normalised, as YOLO label files write it."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return f"{(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"


def materialise_video_agreement_set(shared: Path, out: Path, teacher: Detector) -> Path:
    """Held-out vtest frames labelled by the teacher: a student's score here is its agreement with the teacher."""
    target = out / "vtest-heldout-teacher"
    if target.exists():
        return target
    tmp = target.with_name(target.name + ".tmp")
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    (tmp / "labels").mkdir(parents=True, exist_ok=True)
    (tmp / "classes.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    for index, frame in video_frames(shared / "data/video/vtest.avi", VIDEO_HELDOUT_FRAMES):
        name = f"frame{index:04d}"
        cv2.imwrite(str(tmp / "images" / f"{name}.png"), frame)
        boxes, ids, _ = pseudo_label(teacher, frame)
        h, w = frame.shape[:2]
        lines = [f"{c} {yolo_box(b, w, h)}" for b, c in zip(boxes, ids)]
        (tmp / "labels" / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    tmp.rename(target)
    return target


def materialise_family_set(shared: Path, out: Path, name: str, splits: dict[str, list[Path]]) -> Path:
    """One YOLO folder over several labelled sets, classes renamed into LABELS (for one in-domain figure):
    images are links, label files are rewritten with the family's class ids."""
    target = out / name
    if target.exists():
        return target
    tmp = target.with_name(target.name + ".tmp")
    (tmp / "images").mkdir(parents=True, exist_ok=True)
    (tmp / "labels").mkdir(parents=True, exist_ok=True)
    (tmp / "classes.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    for source, images in splits.items():
        folder = shared / source
        classes = [c.strip() for c in (folder / "classes.txt").read_text(encoding="utf-8").splitlines() if c.strip()]
        prefix = Path(source).name
        for image in images:
            (tmp / "images" / f"{prefix}__{image.name}").symlink_to(image.resolve())
            label = folder / "labels" / f"{image.stem}.txt"
            text = label.read_text(encoding="utf-8") if label.exists() else ""
            lines = []
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 5 and classes[int(parts[0])] in LABELS:
                    lines.append(" ".join([str(LABELS.index(classes[int(parts[0])])), *parts[1:5]]))
            (tmp / "labels" / f"{prefix}__{image.stem}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.rename(target)
    return target


def materialise_family_sets(shared: Path, out: Path) -> dict[str, Path]:
    """`family-heldout` (what the manifest's accuracy is measured on) and `family-tune` (build decisions)."""
    heldout, tune = {}, {}
    for rel, prefixes in HELDOUT.values():
        heldout[rel] = [p for p in image_paths(shared / rel) if split_of(p) in prefixes]
    for rel in TUNE.values():
        tune[rel] = training_split(shared / rel, ("train",))[1]
    return {
        "family-heldout": materialise_family_set(shared, out, "family-heldout", heldout),
        "family-tune": materialise_family_set(shared, out, "family-tune", tune),
    }


def materialise_calibration_set(shared: Path, out: Path, count: int = 128, seed: int = 0) -> Path:
    """Unlabelled training images (never held-out or tune ones) for int8 calibration, as a folder of links."""
    target = out / "calibration"
    if target.exists():
        return target
    pool = []
    for spec in SOURCES:
        if spec.kind == "yolo":
            pool += training_split(shared / spec.path, spec.splits)[0]
        elif spec.kind == "images":
            pool += image_paths(shared / spec.path)
    chosen = sorted(np.random.default_rng(seed).choice(len(pool), size=min(count, len(pool)), replace=False))
    tmp = target.with_name(target.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for i in chosen:
        path = pool[int(i)]
        (tmp / f"{path.parent.parent.name}__{path.name}").symlink_to(path.resolve())
    tmp.rename(target)
    return target
