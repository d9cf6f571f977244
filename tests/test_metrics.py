"""The Prometheus endpoint: a real HTTP server scraped over TCP, parsed with prometheus_client's own parser."""

from __future__ import annotations

import socket

import pytest

from edged import __version__
from edged.config import MetricsConfig
from edged.errors import EdgedError
from edged.metrics import MetricsExporter, snapshot_now
from edged.mqtt.messages import PipelineStats, StateMessage
from tests.helpers import scrape

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
    assert samples[("edged_frame_latency_seconds", (("quantile", "0.5"),))] == pytest.approx(0.012)
    assert samples[("edged_frame_latency_seconds", (("quantile", "0.95"),))] == pytest.approx(0.030)
    assert samples[("edged_variant_active", (("variant", "student-384"),))] == 1
    assert samples[("edged_variant_active", (("variant", "pruned-192"),))] == 0
    assert samples[("edged_variant_quarantined", (("variant", "binary-384"),))] == 1
    assert samples[("edged_battery_ratio", ())] == pytest.approx(0.625)
    assert samples[("edged_power_watts", (("quality", "measured"),))] == 4.2
    assert samples[("edged_outbox_depth", ())] == 7
    assert samples[("edged_outbox_dropped_total", ())] == 2
    assert samples[("edged_source_up", ())] == 1


def test_unknown_readings_are_left_out_not_reported_as_zero(exporter: MetricsExporter) -> None:
    unknown = state(battery_pct=None, power_w=None, power_quality=None, source_status="camera gone")
    exporter.update(snapshot_now(unknown, PipelineStats(fps=0.0), None))
    names = {name for name, _ in scrape(exporter.port)}
    assert "edged_battery_ratio" not in names
    assert "edged_power_watts" not in names
    assert "edged_outbox_depth" not in names  # MQTT disabled: no outbox
    assert scrape(exporter.port)[("edged_source_up", ())] == 0


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exporter = MetricsExporter(MetricsConfig(enabled=True, port=port), device="cam1", variants=VARIANTS)
        with pytest.raises(EdgedError, match=f"metrics: cannot listen on 127.0.0.1:{port}"):
            exporter.start()
