"""Optional Prometheus endpoint (`metrics:` in the config): the figures of the `state` and `stats` messages for a
scraper that does not speak MQTT.

The control loop pushes a snapshot at each stats tick; a scrape reads the latest one and never touches the
pipeline's threads, so a slow or hostile scraper cannot stall a frame. Served by prometheus_client (the optional
`[metrics]` extra) on loopback by default: the endpoint has no authentication.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from edged import __version__
from edged.config import MetricsConfig
from edged.errors import EdgedError, MissingExtraError
from edged.mqtt.messages import PipelineStats, StateMessage
from edged.power.sample import Quality
from edged.telemetry import LatencyHistogram

NAMESPACE = "edged"


@dataclass(frozen=True)
class MetricsSnapshot:
    """What one stats tick knew: the `state` message, the pipeline figures and the outbox (None without MQTT), and
    the totals since start that only Prometheus gets: every frame's latency, inference energy, variant switches."""

    state: StateMessage
    stats: PipelineStats
    outbox_depth: int | None
    outbox_dropped: int | None
    taken_at: float
    latency: LatencyHistogram | None = None
    energy_j: Mapping[Quality, float] = field(default_factory=dict)
    switches: int | None = None


class MetricsExporter:
    """Holds the latest snapshot and serves it at http://host:port/metrics."""

    def __init__(self, config: MetricsConfig, device: str, variants: list[str]) -> None:
        self.config = config
        self.device = device
        self.variants = tuple(variants)  # the zoo's, fixed for the process: each gets its 0/1 series
        self._latest: MetricsSnapshot | None = None
        self._lock = threading.Lock()
        self._server: Any = None

    def start(self) -> None:
        try:
            from prometheus_client import ProcessCollector, start_http_server
            from prometheus_client.registry import CollectorRegistry
        except ImportError:
            raise MissingExtraError(
                "prometheus_client", "metrics", "the Prometheus endpoint (metrics.enabled)"
            ) from None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_SnapshotCollector(self))
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, cpu, fds: RSS over months is watched
        try:
            self._server, thread = start_http_server(self.config.port, self.config.host, registry=registry)
        except OSError as exc:
            raise EdgedError(
                f"metrics: cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}"
            ) from None
        thread.name = "edged-metrics"  # named on `state` and in the log should it die (edged.threads)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        """The port actually bound (config port 0 asks the kernel for a free one)."""
        return int(self._server.server_port) if self._server else self.config.port

    def update(self, snapshot: MetricsSnapshot) -> None:
        with self._lock:
            self._latest = snapshot

    def latest(self) -> MetricsSnapshot | None:
        with self._lock:
            return self._latest


class _SnapshotCollector:
    """prometheus_client's custom-collector protocol: build the metric families from the latest snapshot."""

    def __init__(self, exporter: MetricsExporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

        yield InfoMetricFamily(
            f"{NAMESPACE}_build",
            "edged version and device id",
            value={"version": __version__, "device": self._exporter.device},
        )
        snapshot = self._exporter.latest()
        if snapshot is not None:
            yield from _families(snapshot, self._exporter.variants, GaugeMetricFamily)


def _families(snapshot: MetricsSnapshot, variants: tuple[str, ...], gauge: Any) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    state, stats = snapshot.state, snapshot.stats

    def single(name: str, text: str, value: float | None) -> Iterator[Any]:
        if value is not None:
            yield gauge(f"{NAMESPACE}_{name}", text, value=value)

    def counter(name: str, text: str, value: int | None) -> Iterator[Any]:
        if value is not None:
            yield CounterMetricFamily(f"{NAMESPACE}_{name}", text, value=value)

    yield from single("snapshot_timestamp_seconds", "when these figures were taken (Unix s)", snapshot.taken_at)
    yield from counter("frames_processed", "frames processed since start", stats.frames_processed)
    yield from counter(
        "frames_dropped", "frames the source queue dropped (oldest first) since start", stats.frames_dropped
    )
    yield from single("fps", "frames processed per second, recent", stats.fps)
    if snapshot.latency is not None:
        yield _latency_histogram(snapshot.latency, HistogramMetricFamily)
    if snapshot.energy_j:
        energy = CounterMetricFamily(
            f"{NAMESPACE}_energy_joules",
            "energy the power meter attributed to inference since start, by how it was obtained",
            labels=["quality"],
        )
        for quality, joules in sorted(snapshot.energy_j.items()):
            energy.add_metric([quality], joules)
        yield energy
    yield from counter("variant_switches", "times the running variant changed since start", snapshot.switches)
    active = gauge(f"{NAMESPACE}_variant_active", "1 for the variant running now", labels=["variant"])
    quarantined = gauge(
        f"{NAMESPACE}_variant_quarantined", "1 for a variant that failed and is skipped", labels=["variant"]
    )
    for variant in variants:
        active.add_metric([variant], 1.0 if variant == state.variant else 0.0)
        quarantined.add_metric([variant], 1.0 if variant in state.quarantined else 0.0)
    yield active
    yield quarantined
    yield from single("accuracy_floor", "mAP50-95 the users ask for now", state.accuracy_floor)
    yield from single("fps_target", "frame rate the governor chose", state.fps)
    yield from single("paused", "1 while paused by command", float(state.paused))
    yield from single("source_up", "1 while the frame source delivers", float(state.source_status == "ok"))
    yield from single("fault", "1 while a fault is reported on `state`", float(state.error is not None))
    yield from single("battery_ratio", "battery state of charge, 0..1", _ratio(state.battery_pct))
    if state.power_w is not None:
        power = gauge(
            f"{NAMESPACE}_power_watts", "power drawn, as the source measured or estimated it", labels=["quality"]
        )
        power.add_metric([state.power_quality or "unknown"], state.power_w)
        yield power
    yield from single("outbox_depth", "messages waiting for the broker's acknowledgement", snapshot.outbox_depth)
    yield from counter("outbox_dropped", "oldest messages dropped because the outbox was full", snapshot.outbox_dropped)


def _latency_histogram(histogram: LatencyHistogram, family: Any) -> Any:
    buckets, cumulative = [], 0
    for bound, count in zip([*map(str, histogram.bounds_s), "+Inf"], histogram.counts):
        cumulative += count
        buckets.append((bound, cumulative))
    return family(
        f"{NAMESPACE}_frame_latency_seconds",
        "time per frame in the detector (pre-processing, inference, decoding, NMS), every frame since start",
        buckets=buckets,
        sum_value=histogram.sum_s,
    )


def _ratio(percent: float | None) -> float | None:
    return None if percent is None else percent / 100.0


def snapshot_now(
    state: StateMessage,
    stats: PipelineStats,
    outbox: tuple[int, int] | None,
    latency: LatencyHistogram | None = None,
    energy_j: Mapping[Quality, float] | None = None,
    switches: int | None = None,
) -> MetricsSnapshot:
    return MetricsSnapshot(
        state=state,
        stats=stats,
        outbox_depth=outbox[0] if outbox else None,
        outbox_dropped=outbox[1] if outbox else None,
        taken_at=time.time(),
        latency=latency,
        energy_j=energy_j or {},
        switches=switches,
    )
