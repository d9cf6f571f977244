"""The family's manifest: one entry per exported file, with how it was built; and the `edged` CLI calls that
measure it (the same commands anyone can run to check the figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edged import __version__
from edged.vision.preprocess import InputSpec
from edged.zoo.manifest import Manifest, Provenance, Variant, load_zoo, sha256_of

FAMILY = "edged-aerial-road"
HEADER = """\
# edged's own demo family: people and vehicles seen from drones and road / pole cameras.
# Every model here was trained by edged's build code (python -m edged.zoo.build.train.family); see MODEL_CARD.md.
# Accuracy figures are on held-out in-domain data (family-heldout); latency and energy come from `edged zoo profile`.
"""


def input_spec(size: int) -> InputSpec:
    """What the student was trained on: BGR, 0..1, letterboxed (grey 114) into a square."""
    return InputSpec(size=(size, size), color="BGR", resize="letterbox", pad_value=114, scale=1 / 255)


@dataclass(frozen=True)
class Entry:
    id: str
    technique: str
    file: Path
    size: int
    provenance: Provenance


def variant(entry: Entry, root: Path) -> Variant:
    return Variant.model_validate(
        {
            "id": entry.id,
            "technique": entry.technique,
            "format": "onnx",
            "file": str(entry.file.relative_to(root)) if entry.file.is_relative_to(root) else str(entry.file),
            "sha256": sha256_of(entry.file),
            "input": input_spec(entry.size),
            "decoder": {"type": "yolov8"},
            "provenance": entry.provenance,
        }
    )


def write_zoo(root: Path, labels: list[str], entries: list[Entry], family: str = FAMILY) -> Path:
    """Write zoo.yaml for `entries` (replacing any manifest there) and load it back, verified."""
    manifest = Manifest.model_validate(
        {"schema": "edged.zoo/v1", "family": family, "labels": labels, "variants": [variant(e, root) for e in entries]}
    )
    data = manifest.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=False)
    for item, entry in zip(data["variants"], entries):
        item["technique"] = entry.technique
        item["provenance"] = {k: v for k, v in item["provenance"].items() if v not in (None, [])}
    path = root / "zoo.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + yaml.safe_dump(data, sort_keys=False, width=120), encoding="utf-8")
    load_zoo(path)
    return path


def provenance(command: str, data: list[str], seed: int, **extra: Any) -> Provenance:
    return Provenance(command=command, data=data, seed=seed, edged_version=__version__, **extra)


def run_edged(*args: str, capture_json: bool = False) -> Any:
    """Run an `edged` command with this interpreter; its output streams to ours unless JSON is captured."""
    command = [sys.executable, "-m", "edged", *args]
    print("$ edged " + " ".join(args), flush=True)
    if capture_json:
        done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
        return json.loads(done.stdout)
    subprocess.run(command, check=True)
    return None
