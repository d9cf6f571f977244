"""Calibration images: a folder of unlabelled images, pre-processed exactly as the variant's manifest says.

Calibration data must never be the eval set: a guard measured on the images the ranges were fitted to flatters
the int8 model. Overlap is checked by content, so a renamed copy is caught too.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edged.errors import DatasetError
from edged.sources import IMAGE_SUFFIXES, read_image
from edged.vision.preprocess import InputSpec, Preprocessor


class CalibrationSet:
    """Up to `limit` images from `folder` (a seeded sample when it holds more), pre-processed once, kept in memory."""

    def __init__(self, folder: Path, limit: int, seed: int, role: str = "calibration") -> None:
        self.folder = folder
        self.role = role  # what the images are for, as errors name it: calibration, fine-tuning
        self.available = image_files(folder, role)
        chosen = self.available if len(self.available) <= limit else random.Random(seed).sample(self.available, limit)
        self.images = sorted(chosen)
        self._tensors: dict[InputSpec, list[np.ndarray]] = {}

    def describe(self) -> str:
        sample = "all" if len(self.images) == len(self.available) else f"a seeded sample of {len(self.images)}"
        return f"{self.folder} ({sample} of {len(self.available)} images)"

    def tensors(self, spec: InputSpec, progress: bool = True) -> list[np.ndarray]:
        """The images as network inputs; unreadable images are errors that name the file."""
        if spec not in self._tensors:
            preprocess = Preprocessor(spec)
            with tqdm(self.images, desc=f"{self.role} images", unit="img", disable=not progress, leave=False) as bar:
                self._tensors[spec] = [preprocess(read_image(path))[0] for path in bar]  # closed before an error
        return self._tensors[spec]

    def check_disjoint(self, eval_images: Path) -> None:
        """Refuse images that are also evaluation images (same bytes, whatever the name)."""
        eval_files = image_files(eval_images) if eval_images.is_dir() else []
        calib_digests = {_digest(p): p for p in self.images}
        shared = [(calib_digests[d], p) for p in eval_files if (d := _digest(p)) in calib_digests]
        if shared:
            (calib, evaluated), more = shared[0], len(shared) - 1
            raise DatasetError(
                f"{self.folder}: {len(shared)} {self.role} image(s) are also in the eval set "
                f"({calib.name} = {evaluated}{f', and {more} more' if more else ''}); {self.role} on the "
                "eval set makes the accuracy guard lie: use images the model will not be evaluated on"
            )


def image_files(folder: Path, role: str = "calibration") -> list[Path]:
    """The images in `folder`, or a DatasetError that says why there are none."""
    if not folder.exists():
        raise DatasetError(f"{folder}: {role} folder not found")
    if not folder.is_dir():
        raise DatasetError(f"{folder}: {role} data must be a folder of images")
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError as exc:
        raise DatasetError(f"{folder}: cannot read the {role} folder: {exc}") from None
    if not files:
        raise DatasetError(f"{folder}: {role} folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from None
