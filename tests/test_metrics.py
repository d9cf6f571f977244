"""The Prometheus endpoint: a real HTTP server scraped over TCP, parsed with prometheus_client's own parser."""

from __future__ import annotations

import socket

import pytest

from edged import __version__
from edged.config import MetricsConfig
from edged.errors import EdgedError
from edged.metrics import MetricsExporter, snapshot_now
from edged.mqtt.messages import PipelineStats, StateMessage
from edged.telemetry import FrameStats
from tests.helpers import scrape, scrape_families

VARIANTS = ["student-384", "binary-384", "pruned-192"]


def state(**changes) -> StateMessage:
    fields = dict(
        device="cam1",
        at=0.0,
        variant="student-384",
        mode="auto",
        accuracy_floor=0.05,
        fps=10.0,
        paused=False,
        battery_pct=62.5,
        power_w=4.2,
        power_quality="measured",
        quarantined={"binary-384": "load failed"},
    )
    return StateMessage(**{**fields, **changes})


@pytest.fixture
def exporter():
    made = MetricsExporter(MetricsConfig(enabled=True, port=0), device="cam1", variants=VARIANTS)
    made.start()
    yield made
    made.stop()


def test_before_the_first_tick_only_the_build_info_is_served(exporter: MetricsExporter) -> None:
    samples = scrape(exporter.port)
    assert samples[("edged_build_info", (("device", "cam1"), ("version", __version__)))] == 1
    assert not any(name.startswith("edged_frames") for name, _ in samples)


def test_a_snapshot_is_served_with_units_and_labels(exporter: MetricsExporter) -> None:
    stats = PipelineStats(fps=9.5, latency_p50_ms=12.0, latency_p95_ms=30.0, frames_processed=1234, frames_dropped=3)
    exporter.update(snapshot_now(state(), stats, (7, 2)))
    samples = scrape(exporter.port)

    assert samples[("edged_frames_processed_total", ())] == 1234
    assert samples[("edged_frames_dropped_total", ())] == 3
    assert samples[("edged_fps", ())] == 9.5
    assert samples[("edged_variant_active", (("variant", "student-384"),))] == 1
    assert samples[("edged_variant_active", (("variant", "pruned-192"),))] == 0
    assert samples[("edged_variant_quarantined", (("variant", "binary-384"),))] == 1
    assert samples[("edged_battery_ratio", ())] == pytest.approx(0.625)
    assert samples[("edged_power_watts", (("quality", "measured"),))] == 4.2
    assert samples[("edged_outbox_depth", ())] == 7
    assert samples[("edged_outbox_dropped_total", ())] == 2
    assert samples[("edged_source_up", ())] == 1


def test_latency_is_a_histogram_and_energy_and_switches_are_counters(exporter: MetricsExporter) -> None:
    frames = FrameStats()
    for i, ms in enumerate([3.0, 4.0, 12.0, 40.0, 700.0]):
        frames.record("student-384", i, latency_ms=ms, inference_ms=ms, done_at=float(i))
    stats = PipelineStats(fps=5.0, frames_processed=5)
    energy = {"measured": 1.25, "estimated": 0.5}
    exporter.update(snapshot_now(state(), stats, None, frames.latency_histogram(), energy, switches=3))
    families = scrape_families(exporter.port)

    latency = families["edged_frame_latency_seconds"]
    assert latency.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in latency.samples if s.name.endswith("_bucket")}
    assert buckets["0.005"] == 2 and buckets["0.02"] == 3 and buckets["0.05"] == 4 and buckets["1.0"] == 5
    assert list(buckets.values()) == sorted(buckets.values()), "cumulative"
    totals = {s.name: s.value for s in latency.samples if not s.name.endswith("_bucket")}
    assert totals["edged_frame_latency_seconds_count"] == buckets["+Inf"] == 5
    assert totals["edged_frame_latency_seconds_sum"] == pytest.approx(0.759)
    assert families["edged_energy_joules"].type == "counter"
    assert {s.labels["quality"]: s.value for s in families["edged_energy_joules"].samples} == energy
    assert families["edged_variant_switches"].type == "counter"
    assert [s.value for s in families["edged_variant_switches"].samples] == [3]
    assert families["process_resident_memory_bytes"].samples[0].value > 10e6


def test_unknown_readings_are_left_out_not_reported_as_zero(exporter: MetricsExporter) -> None:
    unknown = state(battery_pct=None, power_w=None, power_quality=None, source_status="camera gone")
    exporter.update(snapshot_now(unknown, PipelineStats(fps=0.0), None))
    names = {name for name, _ in scrape(exporter.port)}
    assert "edged_battery_ratio" not in names
    assert "edged_power_watts" not in names
    assert "edged_outbox_depth" not in names  # MQTT disabled: no outbox
    assert not any(name.startswith(("edged_energy", "edged_frame_latency")) for name in names)
    assert scrape(exporter.port)[("edged_source_up", ())] == 0


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exporter = MetricsExporter(MetricsConfig(enabled=True, port=port), device="cam1", variants=VARIANTS)
        with pytest.raises(EdgedError, match=f"metrics: cannot listen on 127.0.0.1:{port}"):
            exporter.start()
