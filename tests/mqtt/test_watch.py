"""`edged watch`: readable lines and JSON lines, from the pure describer and against a real broker."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from edged.cli import main
from edged.errors import EdgedError
from edged.mqtt.messages import DecisionInputs, DecisionMessage, EventMessage, ObjectCountMessage, TrackedObject
from edged.mqtt.watch import Describer, parse_broker_url, split_topic
from tests.mqtt.conftest import DEVICE, Links, detection, link_config, state, wait_until
from tests.mqtt_broker import Mosquitto


def describe(describer: Describer, kind: str, payload: bytes) -> str | None:
    received = split_topic(f"edged/{DEVICE}/{kind}", "edged", payload)
    assert received is not None
    return describer.line(received)


def test_a_detection_is_one_line_with_frame_variant_latency_and_objects() -> None:
    line = describe(Describer(), "detections", detection(42).to_json())
    assert line == "cam1 #42 yolox-nano-416 12.5 ms  1 object: person 0.90"


def test_track_ids_events_and_counts_are_readable() -> None:
    message = detection(7)
    tracked = message.model_copy(update={"objects": [message.objects[0].model_copy(update={"track_id": 12})]})
    assert (
        describe(Describer(), "detections", tracked.to_json())
        == "cam1 #7 yolox-nano-416 12.5 ms  1 object: person #12 0.90"
    )
    seen = TrackedObject(
        track_id=12, label="person", class_id=0, score=0.8, top_score=0.91, box=(0.1, 0.2, 0.3, 0.4),
        start_time=100.0, last_seen=108.3, frames=80, end_time=108.3,
    )  # fmt: skip
    end = EventMessage(device=DEVICE, type="end", source="cam", frame=93, at=110.0, before=seen, after=seen)
    assert describe(Describer(), "events", end.to_json()) == (
        "cam1 event: end person #12 at frame 93 (top 0.91, 80 frames, 8.3 s)"
    )
    count = ObjectCountMessage(device=DEVICE, label="person", count=3, frame=93, at=110.0)
    assert describe(Describer(), "objects/person", count.to_json()) == "cam1 person count 3"


def test_state_is_shown_only_when_it_changes() -> None:
    describer = Describer()
    first = describe(describer, "state", state(at=1.0).to_json())
    assert first is not None and "variant=yolox-nano-416 mode=auto floor=0.20 fps=5" in first
    assert "battery=80%" in first and "power=4.20 W (simulated)" in first
    assert describe(describer, "state", state(at=2.0).to_json()) is None, "only the timestamp changed"
    changed = describe(describer, "state", state(at=3.0, paused=True, error="camera gone").to_json())
    assert changed is not None and "PAUSED" in changed and "error: camera gone" in changed


def test_decisions_results_and_unknown_payloads_are_readable() -> None:
    describer = Describer()
    decision = DecisionMessage(
        device=DEVICE,
        at=1.0,
        from_variant="yolox-s",
        to_variant="yolox-nano-416",
        fps=5,
        reason="battery 28 %",
        inputs=DecisionInputs(mode="auto", accuracy_floor=0.2),
    )
    assert describe(describer, "governor/decision", decision.to_json()) == (
        "cam1 decision: yolox-s -> yolox-nano-416 at 5 fps: battery 28 %"
    )
    result = b'{"ok": false, "error": "unknown variant", "command": "variant"}'
    assert describe(describer, "set/variant/result", result) == "cam1 set/variant -> error: unknown variant"
    assert describe(describer, "availability", b"offline") == "cam1 is offline"
    assert describe(describer, "detections", b'{"odd": 1}') == 'cam1 detections: {"odd": 1}'
    assert describe(describer, "detections", b"\xff garbage") == "cam1 detections: \ufffd garbage"


def test_broker_urls_are_parsed_or_refused_clearly() -> None:
    assert parse_broker_url("mqtts://u:p%40ss@broker.lan") == parse_broker_url("ssl://u:p%40ss@broker.lan:8883")
    address = parse_broker_url("mqtts://u:p%40ss@broker.lan")
    assert (address.host, address.port, address.tls, address.password) == ("broker.lan", 8883, True, "p@ss")
    assert parse_broker_url("10.0.0.5:1884").port == 1884
    with pytest.raises(EdgedError, match="use mqtt://host"):
        parse_broker_url("http://broker")
    with pytest.raises(EdgedError, match="port must be a number"):
        parse_broker_url("mqtt://broker:99999")


def run_watch(args: list[str]) -> tuple[threading.Thread, list[str]]:
    """Runs `edged watch` in a thread; returns it and a list that fills with the printed lines."""
    lines: list[str] = []
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(main(["watch", *args])))
    thread.start()
    thread.codes = codes  # type: ignore[attr-defined]
    return thread, lines


def collect(capsys: pytest.CaptureFixture[str], lines: list[str]) -> list[str]:
    lines.extend(line for line in capsys.readouterr().out.splitlines() if line)
    return lines


def test_watch_prints_what_a_device_publishes(
    broker: Mosquitto, tmp_path: Path, links: Links, capsys: pytest.CaptureFixture[str]
) -> None:
    link = links.start(link_config(broker, tmp_path, discovery_prefix=None))
    link.publish_state(state())
    args = ["--broker", f"mqtt://{broker.host}:{broker.port}", "--device", DEVICE, "--count", "4", "--timeout", "20"]
    thread, lines = run_watch(args)
    wait_until(lambda: any("state:" in line for line in collect(capsys, lines)), what="the retained state")
    link.publish_detections(detection(7))
    link.publish_state(state(fps=2.0))
    thread.join(20)
    collect(capsys, lines)
    assert thread.codes == [0]  # type: ignore[attr-defined]
    assert lines[:2] == ["cam1 is online", lines[1]] and lines[1].startswith("cam1 state: variant=yolox-nano-416")
    later = sorted(lines[2:])  # detections go through the outbox, state does not: no order between them
    assert later[0] == "cam1 #7 yolox-nano-416 12.5 ms  1 object: person 0.90"
    assert later[1].startswith("cam1 state:") and "fps=2" in later[1]


def test_watch_json_prints_one_parseable_line_per_message(
    broker: Mosquitto, tmp_path: Path, links: Links, capsys: pytest.CaptureFixture[str]
) -> None:
    link = links.start(link_config(broker, tmp_path, discovery_prefix=None))
    args = ["--broker", f"{broker.host}:{broker.port}", "--json", "--count", "2", "--timeout", "20"]
    thread, lines = run_watch(args)
    wait_until(lambda: len(collect(capsys, lines)) >= 1, what="the retained availability")
    link.publish_detections(detection(3))
    thread.join(20)
    documents = [json.loads(line) for line in collect(capsys, lines)]
    assert [(d["device"], d["kind"]) for d in documents] == [(DEVICE, "availability"), (DEVICE, "detections")]
    assert documents[0]["payload"] == "online" and documents[1]["payload"]["frame"] == 3


def test_watch_reports_an_unreachable_broker_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.mqtt_broker import free_port

    assert main(["watch", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--timeout", "1"]) == 1
    assert "edged: error: cannot connect to the broker at 127.0.0.1" in capsys.readouterr().err
