"""Shared fixtures: the real models and data in ../shared, and the reference zoos that describe them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI replays the same examples every run (a red build must mean a regression, not a new draw); locally each run
# explores new ones, and EDGED_HYPOTHESIS_EXAMPLES raises the count for a deeper search.
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_ZOOS = ROOT / "deploy" / "zoos"


def _shared_dir() -> Path | None:
    candidate = Path(os.environ.get("EDGED_SHARED", ROOT.parent / "shared"))
    return candidate if (candidate / "models").is_dir() else None


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared (or $EDGED_SHARED). Absent: skip, unless EDGED_REQUIRE_SHARED=1 (CI), where it fails."""
    path = _shared_dir()
    if path is None:
        reason = "../shared (real models and data) is not here; set EDGED_SHARED to run these tests"
        if os.environ.get("EDGED_REQUIRE_SHARED") == "1":
            pytest.fail(reason + " (EDGED_REQUIRE_SHARED=1)")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def coco_zoo(shared: Path):
    from edged.zoo.manifest import load_zoo

    return load_zoo(REFERENCE_ZOOS / "coco-reference")


@pytest.fixture(scope="session")
def face_zoo(shared: Path):
    from edged.zoo.manifest import load_zoo

    return load_zoo(REFERENCE_ZOOS / "face-reference")


@pytest.fixture(scope="session")
def val_dev(shared: Path) -> Path:
    return shared / "data" / "coco-val-dev"


@pytest.fixture(scope="session")
def group_photo(shared: Path) -> Path:
    """A street photo with several frontal faces (jetson-inference sample data)."""
    return shared / "data" / "distill" / "street-photos" / "images" / "data_images_humans_1.jpg"
