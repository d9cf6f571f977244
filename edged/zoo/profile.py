"""`edged zoo profile`: what each variant costs on this device — latency, size, parameters, MACs, energy.

Figures are written into the manifest under a device-class key, with the date and the edged version, because
the governor's predictions hold only on the device (and at the thread count) they were measured on.

Energy per inference goes through one seam, `EnergyMeter`: something that runs a piece of work and says how
many joules it took and how it knows. Until a measured source is plugged in (edged.power: RAPL, INA219, a
battery gauge), `AssumedPowerMeter` estimates it as wall time x an assumed active power, and says so in every
figure it produces (quality `estimated`, and the assumption in `method`).
"""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
from pydantic import BaseModel, Field
from tqdm import tqdm

from edged import __version__
from edged.errors import EdgedError, MissingExtraError
from edged.vision.detector import Detector
from edged.vision.engines import EngineOptions, Runtime, runtime_missing
from edged.zoo.eval import EvalReport
from edged.zoo.manifest import AccuracyProfile, DeviceProfile, EnergyProfile, LatencyProfile, Variant, Zoo
from edged.zoo.manifest_writer import replace_variant, save_zoo, with_profile

if TYPE_CHECKING:  # the factory package (onnx) is imported only where params/MACs are counted
    from edged.factory.graph_stats import GraphStats

DEFAULT_ASSUMED_POWER_W = 5.0  # a guess for a small board's whole-system draw while inferring; not a measurement
EnergyQuality = Literal["measured", "estimated", "simulated"]


@dataclass(frozen=True)
class EnergyWindow:
    """Energy over one window of work, and how it is known."""

    joules: float
    seconds: float
    quality: EnergyQuality
    method: str


class MeasuredEnergy(Protocol):
    """What a meter reports for one window (EnergyWindow here, edged.power's MeasuredWindow for a real meter)."""

    @property
    def joules(self) -> float: ...
    @property
    def seconds(self) -> float: ...
    @property
    def quality(self) -> EnergyQuality: ...
    @property
    def method(self) -> str: ...


class EnergyMeter(Protocol):
    """The seam for edged.power: run `work` (some inferences) and report the energy it took."""

    def measure(self, work: Callable[[], None]) -> MeasuredEnergy: ...


class AssumedPowerMeter:
    """No power meter: energy = wall time x an assumed active power. Every figure says `estimated` and why."""

    def __init__(self, power_w: float = DEFAULT_ASSUMED_POWER_W) -> None:
        if power_w <= 0:
            raise EdgedError(f"assumed power must be > 0 W, got {power_w}")
        self.power_w = power_w

    def measure(self, work: Callable[[], None]) -> EnergyWindow:
        start = time.perf_counter()
        work()
        seconds = time.perf_counter() - start
        method = (
            f"estimated: inference wall time x assumed active power {self.power_w:g} W "
            "(no power meter on this device; `edged zoo profile --assumed-power-w` sets the assumption)"
        )
        return EnergyWindow(seconds * self.power_w, seconds, "estimated", method)


class ProfileSettings(BaseModel):
    runs: int = Field(200, ge=1, description="timed inferences per variant")
    warmup: int = Field(
        20, ge=0, le=100, description="untimed inferences first: arena allocation, kernel choice, caches"
    )
    rounds: int = Field(5, ge=1, description="the runs are split into rounds that alternate between variants")
    threads: int = Field(2, ge=1)
    device_class: str = Field(min_length=1)
    runtimes: list[Runtime] | None = Field(
        None, description="engines to measure (default: every one a variant has a file for and is installed here)"
    )


class VariantProfile(BaseModel):
    variant: str
    technique: str
    profile: DeviceProfile
    notes: list[str] = Field(default_factory=list, description="figures that could not be measured, and why")


class ProfileReport(BaseModel):
    """`edged zoo profile --json`."""

    device_class: str
    cpu: str
    threads: int
    runs: int
    manifest: str
    saved: bool
    variants: list[VariantProfile]


def profile_zoo(
    zoo: Zoo,
    variant_ids: list[str],
    settings: ProfileSettings,
    meter: EnergyMeter | None = None,
    progress: bool = True,
) -> ProfileReport:
    """Latency and energy of each variant on each engine it has a file for, in the same run: rounds alternate
    between all of them, so a load that comes and goes on a shared CPU falls on all alike. Each variant's figures
    are those of its fastest engine, which is the one edged then opens on this device class."""
    meter = meter or AssumedPowerMeter()
    options = EngineOptions(threads=settings.threads, warmup_runs=settings.warmup)
    detectors: dict[tuple[str, Runtime], Detector] = {}
    notes: dict[str, list[str]] = {v: [] for v in variant_ids}
    try:
        for variant_id in variant_ids:
            for runtime, why_not in _runtimes_to_measure(zoo.variant(variant_id), settings.runtimes):
                if why_not:
                    notes[variant_id].append(f"{runtime} not measured: {why_not}")
                    continue
                detectors[(variant_id, runtime)] = zoo.open_detector(variant_id, options, runtime=runtime)
        timings = _time_rounds(detectors, settings, meter, progress)
    finally:
        for detector in detectors.values():
            detector.close()
    results = []
    for variant_id in variant_ids:
        measured = {runtime: timings[(v, runtime)] for v, runtime in timings if v == variant_id}
        if not measured:
            raise EdgedError(f"variant '{variant_id}': no engine to measure it on ({'; '.join(notes[variant_id])})")
        engines = {runtime: _latency(latencies, settings.threads) for runtime, (latencies, _) in measured.items()}
        fastest = min(engines, key=lambda r: engines[r].p50_ms)
        variant = zoo.variant(variant_id)
        graph, graph_notes = _graph_figures(zoo, variant)
        profile = DeviceProfile(
            engine=fastest,
            engines=engines,
            latency=engines[fastest],
            energy=_energy(measured[fastest][1], len(measured[fastest][0])),
            file_bytes=zoo.file_of(variant, variant.file_for(fastest)).stat().st_size,
            measured_at=_now(),
            edged_version=__version__,
        )
        if graph is not None:
            profile = profile.model_copy(update={"params": graph.params, "macs": graph.macs})
        results.append(
            VariantProfile(
                variant=variant_id,
                technique=variant.technique_name,
                profile=profile,
                notes=notes[variant_id] + graph_notes,
            )
        )
    return ProfileReport(
        device_class=settings.device_class,
        cpu=cpu_model(),
        threads=settings.threads,
        runs=settings.runs,
        manifest=str(zoo.path),
        saved=False,
        variants=results,
    )


def _runtimes_to_measure(variant: Variant, wanted: list[Runtime] | None) -> list[tuple[Runtime, str | None]]:
    """(engine, why it is not measured or None) for every engine the variant has a file for."""
    return [(r, runtime_missing(r)) for r in variant.runtimes if wanted is None or r in wanted]


def record_profiles(zoo: Zoo, report: ProfileReport) -> Zoo:
    """Merge the measured figures into each variant's profile for the device class (accuracy is kept)."""
    manifest = zoo.manifest
    for result in report.variants:
        figures = {k: getattr(result.profile, k) for k in result.profile.model_fields_set if k != "accuracy"}
        variant = next(v for v in manifest.variants if v.id == result.variant)
        manifest = replace_variant(manifest, with_profile(variant, report.device_class, **figures))
    return save_zoo(zoo, manifest)


def record_accuracy(zoo: Zoo, reports: list[EvalReport], device_class: str) -> Zoo:
    """Write `zoo eval` results into each variant's profile for the device class."""
    manifest = zoo.manifest
    for report in reports:
        variant = next(v for v in manifest.variants if v.id == report.variant)
        updated = with_profile(
            variant,
            device_class,
            accuracy=accuracy_profile(report),
            measured_at=_now(),
            edged_version=__version__,
        )
        manifest = replace_variant(manifest, updated)
    return save_zoo(zoo, manifest)


def accuracy_profile(report: EvalReport) -> AccuracyProfile:
    return AccuracyProfile(
        eval_set=report.eval_set,
        eval_set_sha256=report.eval_set_sha256,
        images=report.images,
        map50_95=report.map50_95,
        map50=report.map50,
        per_class_ap=report.per_class_ap,
    )


def device_class() -> str:
    """A key for 'this kind of device': the CPU model and core count, slugified (e.g. 'amd-epyc-2core')."""
    cores = os.cpu_count() or 1
    return f"{slug(cpu_model())}-{cores}core"


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo ('model name' on x86, 'Model' on a Raspberry Pi), else the platform's."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        match = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if match and match.group(1).strip():
            return match.group(1).strip()
    try:
        return Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n ") or platform.machine()
    except OSError:
        return platform.processor() or platform.machine() or "unknown-cpu"


def _time_rounds(
    detectors: dict[tuple[str, Runtime], Detector], settings: ProfileSettings, meter: EnergyMeter, progress: bool
) -> dict[tuple[str, Runtime], tuple[list[float], list[MeasuredEnergy]]]:
    tensors = {key: _probe_tensor(d) for key, d in detectors.items()}
    results: dict[tuple[str, Runtime], tuple[list[float], list[MeasuredEnergy]]] = {k: ([], []) for k in detectors}
    per_round = [len(chunk) for chunk in np.array_split(np.arange(settings.runs), settings.rounds) if len(chunk)]
    bar = tqdm(total=settings.runs * len(detectors), desc="profiling", unit="inf", disable=not progress)
    with bar:
        for runs in per_round:
            for key, detector in detectors.items():
                latencies, windows = results[key]
                work = _timed_runs(detector, tensors[key], runs, latencies)
                windows.append(meter.measure(work))
                bar.update(runs)
    return results


def _timed_runs(detector: Detector, tensor: np.ndarray, runs: int, latencies: list[float]) -> Callable[[], None]:
    """Each timed run is one frame's inferences: one, or one per tile (and the full frame) for a tiled variant."""
    tiles = detector.preprocess.spec.tiles
    passes = range(tiles.passes if tiles is not None else 1)

    def work() -> None:
        for _ in range(runs):
            start = time.perf_counter()
            for _ in passes:
                detector.engine.run(tensor)
            latencies.append((time.perf_counter() - start) * 1000)

    return work


def _probe_tensor(detector: Detector) -> np.ndarray:
    """A fixed noise image through the variant's own pre-processing: model-only latency, realistic values."""
    width, height = detector.preprocess.spec.size
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return detector.preprocess(image)[0]


def _latency(latencies: list[float], threads: int) -> LatencyProfile:
    p50, p95 = np.percentile(latencies, [50, 95])
    return LatencyProfile(
        p50_ms=round(float(p50), 3), p95_ms=round(float(p95), 3), threads=threads, runs=len(latencies)
    )


def _energy(windows: list[MeasuredEnergy], inferences: int) -> EnergyProfile:
    qualities = {w.quality for w in windows}
    quality: EnergyQuality = qualities.pop() if len(qualities) == 1 else "estimated"  # mixed: no better than a guess
    joules = sum(w.joules for w in windows)
    return EnergyProfile(
        mj_per_inference=round(joules * 1000 / inferences, 4), quality=quality, method=windows[0].method
    )


def _graph_figures(zoo: Zoo, variant: Variant) -> tuple[GraphStats | None, list[str]]:
    """Parameters and MACs from the ONNX graph, when the variant is ONNX and the onnx package is installed."""
    if variant.format != "onnx":
        return None, [f"params/MACs are counted from ONNX graphs only ({variant.format} here)"]
    try:
        from edged.factory.graph_stats import graph_stats

        stats = graph_stats(zoo.file_of(variant), variant.input.tensor_shape())
    except MissingExtraError:
        return None, ["params/MACs need the onnx package (pip install onnx); not counted"]
    notes = [f"MACs leave out {len(stats.uncounted)} nodes of unknown shape"] if stats.uncounted else []
    tiles = variant.input.tiles
    if tiles is not None:  # MACs per frame, as latency and energy are
        stats = stats.model_copy(update={"macs": stats.macs * tiles.passes})
        notes.append(
            f"MACs and latency per frame: {tiles.passes} inferences ({tiles.grid[0]}x{tiles.grid[1]} tiles"
            + (" + the full frame)" if tiles.full_frame else ")")
        )
    return stats, notes


def slug(text: str) -> str:
    """A CPU name as a profile key: lower case, trademarks, 'CPU' and clock speed dropped."""
    text = re.sub(r"\((r|tm)\)|\b(cpu|processor|with|radeon graphics)\b|@.*$", " ", text, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown-cpu"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
