"""The shipped family (model_zoo/) guards itself: the manifest loads, every file matches its sha256, every variant
opens, matches its manifest entry and detects people on a frame of the demo clip. No torch needed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edged.vision.postprocess import PostprocessOptions
from edged.zoo.manifest import load_zoo

ROOT = Path(__file__).resolve().parents[1]
MODEL_ZOO = ROOT / "model_zoo"
DEMO_CLIP = ROOT / "edged" / "demo" / "vtest_10s.mp4"
TECHNIQUES_REQUIRED = {"distilled", "pruned", "int8", "binary"}
SIZE_LIMIT = 20 * 1024 * 1024
# The family's scores are IoU-aware (trained towards the overlap of the box, not towards 1), so they run lower
# than a COCO model's confidences: 0.25 here is about what 0.35 is for those.
DEMO_SCORE_THRESHOLD = 0.25


@pytest.fixture(scope="module")
def zoo():
    if not (MODEL_ZOO / "zoo.yaml").exists():
        pytest.fail("model_zoo/zoo.yaml is missing: the shipped family is part of the project")
    return load_zoo(MODEL_ZOO)  # verifies schema, labels, files and sha256


@pytest.fixture(scope="module")
def demo_frame() -> np.ndarray:
    capture = cv2.VideoCapture(str(DEMO_CLIP))
    try:
        for _ in range(30):  # a frame a second in, with several pedestrians
            ok, frame = capture.read()
            assert ok, f"{DEMO_CLIP}: cannot read the demo clip"
    finally:
        capture.release()
    return frame


def test_family_covers_every_technique_within_the_size_budget(zoo) -> None:
    techniques = {t for v in zoo.variants for t in v.technique}
    assert techniques >= TECHNIQUES_REQUIRED
    assert len(zoo.variants) >= 5
    assert sum(zoo.file_of(v).stat().st_size for v in zoo.variants) <= SIZE_LIMIT
    for v in zoo.variants:
        assert zoo.file_of(v).is_relative_to(MODEL_ZOO.resolve()), f"{v.id}: the file must ship inside model_zoo/"


def test_every_variant_has_a_measured_profile_naming_its_eval_set(zoo) -> None:
    for v in zoo.variants:
        assert v.profiles, f"{v.id}: no profile"
        for profile in v.profiles.values():
            assert profile.accuracy is not None and profile.accuracy.eval_set, f"{v.id}: accuracy without eval set"
            assert profile.latency is not None and profile.latency.threads >= 1


def test_every_variant_opens_and_finds_people_on_the_demo_clip(zoo, demo_frame: np.ndarray) -> None:
    for v in zoo.variants:
        detector = zoo.open_detector(v.id, postprocess=PostprocessOptions(score_threshold=DEMO_SCORE_THRESHOLD))
        try:
            found = detector.detect(demo_frame)
        finally:
            detector.close()
        labels = [detector.labels[int(c)] for c in found.class_ids]
        assert labels.count("person") >= 2, f"{v.id}: found {labels} on a frame with several pedestrians"


def test_binary_variant_is_at_least_10x_smaller_than_its_fp32_parent(zoo) -> None:
    for v in zoo.variants:
        if "binary" in v.technique:
            parent = zoo.variant(v.provenance.parent)
            assert zoo.file_of(parent).stat().st_size >= 10 * zoo.file_of(v).stat().st_size
