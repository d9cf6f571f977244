"""The model zoo manifest (zoo.yaml): one family of variants of one detector, and what was measured of each.

Loading checks everything that can be checked without running a model (schema, labels, files, sha256); opening a
variant's detector checks the rest (input shape, output layout). Every error names the variant, the field and
the line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edged.errors import ConfigError, EdgedError, ModelError
from edged.vision.decoders import AnyDecoderSpec, DecoderMismatch
from edged.vision.detector import Detector, InputMismatch
from edged.vision.engines import (
    DEFAULT_RUNTIME,
    RUNTIME_FORMAT,
    EngineOptions,
    ModelFormat,
    Runtime,
    runtime_missing,
)
from edged.vision.postprocess import PostprocessOptions
from edged.vision.preprocess import InputSpec
from edged.yamlfile import Problem, YamlDocument, format_loc, load_yaml

MANIFEST_NAME = "zoo.yaml"
Technique = Literal["baseline", "fine-tuned", "distilled", "pruned", "low-rank", "int8", "binary"]


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
    """Figures measured on one device class (e.g. 'x86_64-2core', 'raspberrypi5').

    `latency` and `energy` are those of `engine`, the engine measured fastest here, which is the one edged opens
    on this device class; `engines` keeps what every engine measured, for the report."""

    engine: Runtime | None = Field(None, description="the engine the figures are for: the fastest measured here")
    engines: dict[Runtime, LatencyProfile] = Field(default_factory=dict, description="latency on every engine")
    accuracy: AccuracyProfile | None = None
    latency: LatencyProfile | None = None
    energy: EnergyProfile | None = None
    params: int | None = Field(None, ge=0)
    macs: int | None = Field(None, ge=0)
    file_bytes: int | None = Field(None, ge=0)
    measured_at: str | None = None
    edged_version: str | None = None


class ModelFile(_Strict):
    """The same model in another format, for another engine (a .tflite beside the .onnx)."""

    format: ModelFormat
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    layout: Literal["NCHW", "NHWC"] | None = Field(
        None, description="this file's input layout, where it differs from the variant's `input.layout`"
    )


class Variant(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    technique: list[Technique] = Field(min_length=1)
    format: ModelFormat
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    alternates: list[ModelFile] = Field(default_factory=list, description="the same model for other engines")
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

    @model_validator(mode="after")
    def _one_file_per_format(self) -> Variant:
        formats = [self.format, *(a.format for a in self.alternates)]
        if len(set(formats)) != len(formats):
            raise ValueError(f"alternates: one file per format ({', '.join(formats)} given)")
        return self

    @property
    def technique_name(self) -> str:
        return "+".join(self.technique)

    @property
    def model_files(self) -> list[ModelFile]:
        """The primary file first, then the alternates."""
        return [ModelFile(format=self.format, file=self.file, sha256=self.sha256), *self.alternates]

    def file_for(self, runtime: Runtime) -> ModelFile | None:
        return next((f for f in self.model_files if f.format == RUNTIME_FORMAT[runtime]), None)

    @property
    def runtimes(self) -> list[Runtime]:
        """Every engine some file of this variant runs on."""
        formats = {f.format for f in self.model_files}
        return [r for r, f in RUNTIME_FORMAT.items() if f in formats]


class Manifest(_Strict):
    schema_: Literal["edged.zoo/v1"] = Field("edged.zoo/v1", alias="schema")
    family: str = Field(min_length=1)
    task: Literal["detection"] = "detection"
    labels: list[str] | str = Field(description="class names, or a file with one name per line")
    default: str | None = Field(
        None, description="the variant `edged detect` and a daemon without a governor run (default: the first)"
    )
    variants: list[Variant] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _unique_ids(self) -> Manifest:
        seen: set[str] = set()
        for v in self.variants:
            if v.id in seen:
                raise ValueError(f"variant id '{v.id}' is used twice")
            seen.add(v.id)
        if self.default is not None and self.default not in seen:
            raise ValueError(f"default: no variant '{self.default}' (the zoo has: {', '.join(seen)})")
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

    @property
    def default_variant(self) -> str:
        return self.manifest.default or self.variants[0].id

    def variant(self, variant_id: str) -> Variant:
        for v in self.manifest.variants:
            if v.id == variant_id:
                return v
        known = ", ".join(v.id for v in self.manifest.variants)
        raise EdgedError(f"{self.path}: no variant '{variant_id}' (the zoo has: {known})")

    def file_of(self, variant: Variant, model_file: ModelFile | None = None) -> Path:
        return (self.root / (model_file or variant).file).resolve()

    def labels_of(self, variant: Variant) -> list[str]:
        if variant.id not in self._labels:
            self._labels[variant.id] = self._resolve_labels(variant.labels or self.manifest.labels)
        return self._labels[variant.id]

    def int8_not_faster(self, variant: Variant, device_class: str) -> str | None:
        """Why an int8 variant is no cheaper than its float parent on `device_class` (each on its own fastest
        engine), or None. Such a variant is dominated there: less accurate and not faster, it is no cheaper choice."""
        if "int8" not in variant.technique or not variant.provenance.parent:
            return None
        parent = next((v for v in self.variants if v.id == variant.provenance.parent), None)
        mine = variant.profiles.get(device_class)
        theirs = parent.profiles.get(device_class) if parent else None
        if not (mine and mine.latency and theirs and theirs.latency):
            return None
        if mine.latency.p50_ms < theirs.latency.p50_ms:
            return None
        return (
            f"int8 p50 {mine.latency.p50_ms:.2f} ms on {mine.engine or variant.format} is not below its float "
            f"parent {variant.provenance.parent}'s {theirs.latency.p50_ms:.2f} ms on {theirs.engine or 'its engine'}"
        )

    def runtime_for(self, variant: Variant, wanted: str = "auto", device_class: str | None = None) -> Runtime:
        """The engine to open `variant` on: the one asked for; else the fastest its profile for `device_class`
        measured among the engines installed here (a Pi without the [tflite] extra runs the ONNX file, not an
        error); else the usual engine of its first file."""
        if wanted != "auto":
            if wanted not in variant.runtimes:
                raise EdgedError(
                    f"{self.path}: variant '{variant.id}' has no file for the {wanted} engine "
                    f"(it runs on: {', '.join(variant.runtimes)}; engine.runtime: auto picks the fastest)"
                )
            return next(r for r in variant.runtimes if r == wanted)
        profile = variant.profiles.get(device_class) if device_class else None
        if profile is not None and profile.engine is not None and profile.engine in variant.runtimes:
            measured = {r: figures.p50_ms for r, figures in profile.engines.items() if r in variant.runtimes}
            ranked = sorted(measured, key=measured.__getitem__) or [profile.engine]
            if usable := [r for r in ranked if runtime_missing(r) is None]:
                return usable[0]
        return DEFAULT_RUNTIME[variant.format]

    def open_detector(
        self,
        variant_id: str,
        engine_options: EngineOptions | None = None,
        postprocess: PostprocessOptions | None = None,
        device_class: str | None = None,
        runtime: Runtime | None = None,
    ) -> Detector:
        """Open a variant on `runtime`, else on the engine `runtime_for` picks; failures name the variant and the
        manifest field that disagrees with the model."""
        variant = self.variant(variant_id)
        options = engine_options or EngineOptions()
        runtime = runtime or self.runtime_for(variant, options.runtime, device_class)
        model_file = variant.file_for(runtime)
        if model_file is None:
            raise EdgedError(f"{self.path}: variant '{variant.id}' has no file for the {runtime} engine")
        index = self.variants.index(variant)
        path = self.file_of(variant, model_file)
        field = "sha256" if model_file.format == variant.format else "alternates"
        try:
            actual = sha256_of(path) if path.is_file() else None
        except OSError as exc:  # permission denied, an SD card's I/O error: this variant cannot be used
            raise ModelError(self._where(index, "file") + f": cannot read {path}: {exc.strerror or exc}") from None
        if actual is not None and actual != model_file.sha256:  # changed on disk since load_zoo
            raise ModelError(
                self._where(index, field)
                + f": {path.name} now has sha256 {actual}, the manifest says {model_file.sha256} (changed on disk)"
            )
        spec = (
            variant.input
            if model_file.layout is None
            else variant.input.model_copy(update={"layout": model_file.layout})
        )
        try:
            return Detector.open(
                path,
                model_file.format,
                spec,
                variant.decoder,
                self.labels_of(variant),
                options,
                postprocess,
                runtime,
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
        for k, model_file in enumerate(variant.model_files):
            path = zoo.file_of(variant, model_file)
            base = ("variants", i) if k == 0 else ("variants", i, "alternates", k - 1)
            field = f"variants[{i}] (variant '{variant.id}')" + ("" if k == 0 else f".alternates[{k - 1}]")
            if not path.is_file():
                line = document.line_of((*base, "file"))
                problems.append(Problem(str(zoo.path), line, f"{field}.file", f"model file not found: {path}"))
                continue
            try:
                actual = sha256_of(path)
            except OSError as exc:
                line = document.line_of((*base, "file"))
                problems.append(
                    Problem(str(zoo.path), line, f"{field}.file", f"cannot read {path}: {exc.strerror or exc}")
                )
                continue
            if actual != model_file.sha256:
                line = document.line_of((*base, "sha256"))
                problems.append(
                    Problem(
                        str(zoo.path),
                        line,
                        f"{field}.sha256",
                        f"{path.name} has sha256 {actual}, the manifest says {model_file.sha256} "
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
    """$EDGED_ZOO, else ./model_zoo, else the demo family shipped with edged."""
    if os.environ.get("EDGED_ZOO"):
        return Path(os.environ["EDGED_ZOO"])
    local = Path("model_zoo")
    if (local / MANIFEST_NAME).exists():
        return local
    return shipped_zoo_path()


def shipped_zoo_path() -> Path:
    """The demo family: the package `edged._zoo`, which is model_zoo/ installed as package data in a wheel and the
    checkout's model_zoo/ in an editable install (setup.py maps one onto the other). Found, not imported."""
    spec = importlib.util.find_spec("edged._zoo")
    if spec is None or not spec.submodule_search_locations:  # a source tree on PYTHONPATH, not installed
        return Path(__file__).resolve().parents[2] / "model_zoo"
    return Path(next(iter(spec.submodule_search_locations)))
