"""The model zoo manifest (zoo.yaml): one family of variants of one detector, and what was measured of each.

Loading checks everything that can be checked without running a model (schema, labels, files, sha256); opening a
variant's detector checks the rest (input shape, output layout). Every error names the variant, the field and
the line.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edged.errors import ConfigError, EdgedError, ModelError
from edged.vision.decoders import AnyDecoderSpec, DecoderMismatch
from edged.vision.detector import Detector, InputMismatch
from edged.vision.engines import EngineOptions, ModelFormat
from edged.vision.postprocess import PostprocessOptions
from edged.vision.preprocess import InputSpec
from edged.yamlfile import Problem, YamlDocument, format_loc, load_yaml

MANIFEST_NAME = "zoo.yaml"
Technique = Literal["baseline", "distilled", "pruned", "int8", "binary"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Provenance(_Strict):
    """How a variant came to be: enough to rebuild it, or to know it was not built here."""

    command: str | None = None
    parent: str | None = Field(None, description="id of the variant this one was derived from")
    teacher_sha256: str | None = None
    data: list[str] = Field(default_factory=list, description="datasets used to train or calibrate")
    seed: int | None = None
    origin: str | None = Field(None, description="where a third-party model came from")
    license: str | None = None
    built_at: str | None = None
    edged_version: str | None = None
    notes: str | None = None


class AccuracyProfile(_Strict):
    eval_set: str = Field(min_length=1, description="name of the dataset the figures were measured on")
    eval_set_sha256: str | None = Field(None, description="fingerprint of the labels, so equal names can't lie")
    images: int | None = Field(None, ge=1)
    map50_95: float = Field(ge=0.0, le=1.0)
    map50: float = Field(ge=0.0, le=1.0)
    per_class_ap: dict[str, float] = Field(default_factory=dict)


class LatencyProfile(_Strict):
    p50_ms: float = Field(gt=0)
    p95_ms: float = Field(gt=0)
    threads: int = Field(ge=1)
    runs: int | None = Field(None, ge=1)


class EnergyProfile(_Strict):
    mj_per_inference: float = Field(ge=0)
    quality: Literal["measured", "estimated", "simulated"]
    method: str = Field(min_length=1, description="what measured it (RAPL, INA219, ...) or what the estimate assumes")


class DeviceProfile(_Strict):
    """Figures measured on one device class (e.g. 'x86_64-2core', 'raspberrypi5')."""

    accuracy: AccuracyProfile | None = None
    latency: LatencyProfile | None = None
    energy: EnergyProfile | None = None
    params: int | None = Field(None, ge=0)
    macs: int | None = Field(None, ge=0)
    file_bytes: int | None = Field(None, ge=0)
    measured_at: str | None = None
    edged_version: str | None = None


class Variant(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    technique: list[Technique] = Field(min_length=1)
    format: ModelFormat
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input: InputSpec
    decoder: AnyDecoderSpec
    labels: list[str] | str | None = Field(None, description="overrides the family's labels")
    provenance: Provenance = Field(default_factory=Provenance)
    profiles: dict[str, DeviceProfile] = Field(default_factory=dict)

    @field_validator("technique", mode="before")
    @classmethod
    def _split_combined(cls, v: Any) -> Any:
        """Accept 'distilled+pruned+int8' as well as a list."""
        return [t.strip() for t in v.split("+")] if isinstance(v, str) else v

    @field_validator("decoder", mode="before")
    @classmethod
    def _decoder_shorthand(cls, v: Any) -> Any:
        """Accept `decoder: yolox` for a decoder with default parameters."""
        return {"type": v} if isinstance(v, str) else v

    @property
    def technique_name(self) -> str:
        return "+".join(self.technique)


class Manifest(_Strict):
    schema_: Literal["edged.zoo/v1"] = Field("edged.zoo/v1", alias="schema")
    family: str = Field(min_length=1)
    task: Literal["detection"] = "detection"
    labels: list[str] | str = Field(description="class names, or a file with one name per line")
    variants: list[Variant] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _unique_ids(self) -> Manifest:
        seen: set[str] = set()
        for v in self.variants:
            if v.id in seen:
                raise ValueError(f"variant id '{v.id}' is used twice")
            seen.add(v.id)
        return self


class Zoo:
    """A loaded, verified manifest: variants with resolved files and labels."""

    def __init__(self, manifest: Manifest, path: Path, document: YamlDocument | None = None) -> None:
        self.manifest = manifest
        self.path = path
        self.root = path.parent
        self._document = document
        self._labels: dict[str, list[str]] = {}

    @property
    def variants(self) -> list[Variant]:
        return self.manifest.variants

    def variant(self, variant_id: str) -> Variant:
        for v in self.manifest.variants:
            if v.id == variant_id:
                return v
        known = ", ".join(v.id for v in self.manifest.variants)
        raise EdgedError(f"{self.path}: no variant '{variant_id}' (the zoo has: {known})")

    def file_of(self, variant: Variant) -> Path:
        return (self.root / variant.file).resolve()

    def labels_of(self, variant: Variant) -> list[str]:
        if variant.id not in self._labels:
            self._labels[variant.id] = self._resolve_labels(variant.labels or self.manifest.labels)
        return self._labels[variant.id]

    def open_detector(
        self,
        variant_id: str,
        engine_options: EngineOptions | None = None,
        postprocess: PostprocessOptions | None = None,
    ) -> Detector:
        """Open a variant; failures name the variant and the manifest field that disagrees with the model."""
        variant = self.variant(variant_id)
        index = self.variants.index(variant)
        path = self.file_of(variant)
        if path.is_file() and (actual := sha256_of(path)) != variant.sha256:  # changed on disk since load_zoo
            raise ModelError(
                self._where(index, "sha256")
                + f": {path.name} now has sha256 {actual}, the manifest says {variant.sha256} (changed on disk)"
            )
        try:
            return Detector.open(
                self.file_of(variant),
                variant.format,
                variant.input,
                variant.decoder,
                self.labels_of(variant),
                engine_options,
                postprocess,
            )
        except InputMismatch as exc:
            raise ModelError(self._where(index, "input") + f": {exc}") from None
        except DecoderMismatch as exc:
            raise ModelError(self._where(index, "decoder") + f": {exc}") from None
        except ModelError as exc:
            raise ModelError(self._where(index, "file") + f": {exc}") from None

    def _where(self, index: int, field: str) -> str:
        loc = ("variants", index, field)
        line = self._document.line_of(loc) if self._document else None
        place = f"{self.path}:{line}" if line else str(self.path)
        return f"{place}: {format_loc(loc)} (variant '{self.variants[index].id}')"

    def _resolve_labels(self, labels: list[str] | str) -> list[str]:
        if isinstance(labels, list):
            return labels
        return read_labels(self.root / labels)


def read_labels(path: Path) -> list[str]:
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgedError(f"{path}: cannot read labels: {exc}") from None
    names = [n for n in names if n]
    if not names:
        raise EdgedError(f"{path}: labels file is empty")
    return names


def manifest_path(zoo: str | Path) -> Path:
    """A zoo is named by its directory or its manifest file."""
    path = Path(zoo)
    return path / MANIFEST_NAME if path.is_dir() else path


def load_zoo(zoo: str | Path, verify_files: bool = True) -> Zoo:
    """Load and verify a manifest. Every problem is reported at once, each with its line."""
    path = manifest_path(zoo)
    if not path.exists():
        raise ConfigError([f"{path}: no model zoo manifest here (expected a directory with {MANIFEST_NAME})"])
    document = load_yaml(path)
    manifest = document.validate(Manifest)
    zoo_obj = Zoo(manifest, path, document)
    problems = _check_labels(zoo_obj, document)
    if verify_files:
        problems += _check_files(zoo_obj, document)
    if problems:
        raise ConfigError([str(p) for p in problems])
    return zoo_obj


def _check_labels(zoo: Zoo, document: YamlDocument) -> list[Problem]:
    problems = []
    for loc, labels in [(("labels",), zoo.manifest.labels)] + [
        (("variants", i, "labels"), v.labels) for i, v in enumerate(zoo.variants) if v.labels is not None
    ]:
        assert labels is not None
        try:
            zoo._resolve_labels(labels)
        except EdgedError as exc:
            problems.append(Problem(str(zoo.path), document.line_of(loc), format_loc(loc), str(exc)))
    return problems


def _check_files(zoo: Zoo, document: YamlDocument) -> list[Problem]:
    problems = []
    for i, variant in enumerate(zoo.variants):
        path = zoo.file_of(variant)
        field = f"variants[{i}] (variant '{variant.id}')"
        if not path.is_file():
            line = document.line_of(("variants", i, "file"))
            problems.append(Problem(str(zoo.path), line, f"{field}.file", f"model file not found: {path}"))
            continue
        actual = sha256_of(path)
        if actual != variant.sha256:
            line = document.line_of(("variants", i, "sha256"))
            problems.append(
                Problem(
                    str(zoo.path),
                    line,
                    f"{field}.sha256",
                    f"{path.name} has sha256 {actual}, the manifest says {variant.sha256} "
                    "(file replaced or corrupted; rebuild it or update the manifest)",
                )
            )
    return problems


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_zoo_path() -> Path:
    """$EDGED_ZOO, else ./model_zoo, else the model_zoo of the checkout this package runs from."""
    if os.environ.get("EDGED_ZOO"):
        return Path(os.environ["EDGED_ZOO"])
    local = Path("model_zoo")
    if (local / MANIFEST_NAME).exists():
        return local
    return Path(__file__).resolve().parents[2] / "model_zoo"
