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
from edged.vision.tiling import TileSpec
from edged.zoo.manifest import Manifest, Provenance, Variant, load_zoo, sha256_of

FAMILY = "edged-aerial-road"
HEADER = """\
# edged's own demo family: people and vehicles seen from drones and road / pole cameras.
# Every model here was trained by edged's build code (python -m edged.factory.train.family); see MODEL_CARD.md.
# Accuracy figures are on held-out in-domain data (family-heldout); latency and energy come from `edged zoo profile`.
"""


def input_spec(size: int, tiles: TileSpec | None = None) -> InputSpec:
    """What the family was trained on: BGR, 0..1, letterboxed (grey 114) into a square."""
    return InputSpec(size=(size, size), color="BGR", resize="letterbox", pad_value=114, scale=1 / 255, tiles=tiles)


@dataclass(frozen=True)
class Entry:
    id: str
    technique: str
    file: Path
    size: int
    provenance: Provenance
    tiles: TileSpec | None = None


def variant(entry: Entry, root: Path) -> Variant:
    return Variant.model_validate(
        {
            "id": entry.id,
            "technique": entry.technique,
            "format": "onnx",
            "file": str(entry.file.relative_to(root)) if entry.file.is_relative_to(root) else str(entry.file),
            "sha256": sha256_of(entry.file),
            "input": input_spec(entry.size, entry.tiles),
            "decoder": {"type": "yolov8"},
            "provenance": entry.provenance,
        }
    )


def write_zoo(
    root: Path, labels: list[str], entries: list[Entry], family: str = FAMILY, default: str | None = None
) -> Path:
    """Write zoo.yaml for `entries` (replacing any manifest there) and load it back, verified."""
    manifest = Manifest.model_validate(
        {
            "schema": "edged.zoo/v1",
            "family": family,
            "labels": labels,
            "default": default,
            "variants": [variant(e, root) for e in entries],
        }
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


def run_edged(*args: str, capture_json: bool = False, refusal_ok: bool = False) -> Any:
    """Run an `edged` command with this interpreter; its output streams to ours unless JSON is captured.
    `refusal_ok`: exit status 1 with a JSON report (a guard that refused) is an answer, not a failure."""
    command = [sys.executable, "-m", "edged", *args]
    print("$ edged " + " ".join(args), flush=True)
    if capture_json:
        done = subprocess.run(command, check=False, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0 and not (refusal_ok and done.returncode == 1 and done.stdout.strip()):
            raise subprocess.CalledProcessError(done.returncode, command, done.stdout)
        return json.loads(done.stdout)
    subprocess.run(command, check=True)
    return None
