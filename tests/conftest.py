"""Shared fixtures: the real models and data in ../shared, and the reference zoos that describe them."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, NoReturn

import pytest
from hypothesis import settings

# CI replays the same examples every run (a red build must mean a regression, not a new draw); locally each run
# explores new ones, and EDGED_HYPOTHESIS_EXAMPLES raises the count for a deeper search.
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_ZOOS = ROOT / "deploy" / "zoos"


def skip_or_fail(reason: str) -> NoReturn:
    """A prerequisite is missing: skip with `reason`, except under EDGED_REQUIRE_SHARED=1 (CI), where everything
    must run, so the test fails instead. Usable at module level too."""
    if os.environ.get("EDGED_REQUIRE_SHARED") == "1":
        pytest.fail(f"{reason} (EDGED_REQUIRE_SHARED=1: this must run here, not skip)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_or_skip(module: str, reason: str | None = None) -> Any:
    """pytest.importorskip that fails under EDGED_REQUIRE_SHARED=1: `module`, imported."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        skip_or_fail(f"{reason or module + ' is not installed'} ({exc})")


def _shared_dir() -> Path | None:
    candidate = Path(os.environ.get("EDGED_SHARED", ROOT.parent / "shared"))
    return candidate if (candidate / "models").is_dir() else None


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared (or $EDGED_SHARED). Absent: skip, unless EDGED_REQUIRE_SHARED=1 (CI), where it fails."""
    path = _shared_dir()
    if path is None:
        skip_or_fail("../shared (real models and data) is not here; set EDGED_SHARED to run these tests")
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


# Profiles for a test zoo: accuracy is `edged zoo eval` on coco-val-dev (see README), latency the order this 2-core
# VM measures, energy *estimated* as latency x 5 W. Figures for exercising the governor, not claims.
PROFILED_VARIANTS = {
    "nanodet-m-320": (0.270, 19.0, 25.0, 94.0),
    "fastestdet-352": (0.229, 7.5, 9.0, 37.5),
    "fastestdet-352-tflite-int8": (0.205, 9.0, 11.0, 45.0),
}


@pytest.fixture(scope="session")
def profiled_zoo(shared: Path, tmp_path_factory) -> Path:
    """The reference models with profiles under device class `ci-test`, so the governor has figures to use."""
    import yaml

    source = yaml.safe_load((REFERENCE_ZOOS / "coco-reference" / "zoo.yaml").read_text())
    root = tmp_path_factory.mktemp("profiled-zoo")
    base = shared.resolve()
    variants = []
    for variant in source["variants"]:
        if variant["id"] not in PROFILED_VARIANTS:
            continue
        accuracy, p50, p95, mj = PROFILED_VARIANTS[variant["id"]]
        variant["file"] = variant["file"].replace("${EDGED_SHARED:-../../../../shared}", str(base))
        variant["profiles"] = {
            "ci-test": {
                "accuracy": {"eval_set": "coco-val-dev", "map50_95": accuracy, "map50": accuracy * 1.6},
                "latency": {"p50_ms": p50, "p95_ms": p95, "threads": 2},
                "energy": {"mj_per_inference": mj, "quality": "estimated", "method": "test fixture: latency x 5 W"},
            }
        }
        variants.append(variant)
    source["labels"] = str(base / "models" / "coco" / "coco.names")
    source["variants"] = variants
    (root / "zoo.yaml").write_text(yaml.safe_dump(source, sort_keys=False))
    return root


@pytest.fixture()
def unreadable(monkeypatch):
    """unreadable(path): reading that file fails with permission denied, as an SD card's I/O error would.
    Injected at the read (edged's sha256 check), because root, which runs CI, reads any file whatever its mode."""
    import edged.zoo.manifest as manifest

    real_sha = manifest.sha256_of
    paths: set[Path] = set()

    def sha256_of(path: Path) -> str:
        if path in paths:
            raise PermissionError(13, "Permission denied", str(path))
        return real_sha(path)

    monkeypatch.setattr(manifest, "sha256_of", sha256_of)
    return paths.add
