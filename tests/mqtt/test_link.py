"""MqttLink against a real mosquitto: what subscribers see, commands and their answers, discovery."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from edged.mqtt import schemas
from edged.mqtt.commands import Command, CommandRejected, SetAccuracyFloor, SetPaused
from edged.mqtt.messages import (
    DecisionInputs,
    DecisionMessage,
    EventMessage,
    ObjectCountMessage,
    PipelineStats,
    PowerMessage,
    TrackedObject,
)
from tests.mqtt.conftest import (
    DEVICE,
    Links,
    Recorder,
    detection,
    frames_of,
    link_config,
    state,
    wait_until,
)
from tests.mqtt_broker import Mosquitto

BASE = f"edged/{DEVICE}"


def test_every_published_message_arrives_and_matches_its_schema(
    broker: Mosquitto, tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    recorders.append(recorder := Recorder(broker, f"{BASE}/#"))
    link = links.start(link_config(broker, tmp_path))
    for frame in range(50):
        link.publish_detections(detection(frame))
    link.publish_decision(
        DecisionMessage(
            device=DEVICE,
            at=1.0,
            from_variant="yolox-s",
            to_variant="yolox-nano-416",
            fps=5,
            reason="battery 28 % < 30 % band: cheaper variant",
            inputs=DecisionInputs(mode="auto", accuracy_floor=0.2, battery_pct=28.0, budget_w=3.5),
        )
    )
    link.publish_state(state())
    link.publish_power(PowerMessage(device=DEVICE, ts=1.0, power_w=4.1, source="simulated", quality="simulated"))
    wait_until(lambda: link.outbox_depth == 0, what="every detection and decision to be acknowledged")
    link.publish_stats(PipelineStats(fps=4.9, latency_p50_ms=20.0, latency_p95_ms=31.0, frames_processed=50))

    detections = recorder.wait_for(f"{BASE}/detections", 50)
    assert frames_of(detections) == list(range(50))
    for kind, topic in [
        ("detections", f"{BASE}/detections"),
        ("decision", f"{BASE}/governor/decision"),
        ("state", f"{BASE}/state"),
        ("power", f"{BASE}/power"),
        ("stats", f"{BASE}/stats"),
    ]:
        for message in recorder.wait_for(topic):
            jsonschema.validate(message.json(), schemas.load(kind))
    assert recorder.on(f"{BASE}/availability")[0].payload == b"online"
    stats = recorder.on(f"{BASE}/stats")[0].json()
    assert (stats["outbox_depth"], stats["outbox_dropped"], stats["frames_processed"]) == (0, 0, 50)


def test_clean_stop_leaves_availability_stopped_and_unclean_offline(
    broker: Mosquitto, tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    link = links.start(link_config(broker, tmp_path))
    link.stop()
    recorders.append(late := Recorder(broker, f"{BASE}/availability", client_id="late"))
    assert late.wait_for(f"{BASE}/availability")[-1].payload == b"stopped"
    assert late.on(f"{BASE}/availability")[-1].retain

    link = links.start(link_config(broker, tmp_path))
    late.wait_for(f"{BASE}/availability", 2)
    link.stop(clean=False)
    assert late.wait_for(f"{BASE}/availability", 3)[-1].payload == b"offline"


def test_stop_completes_when_the_broker_drops_between_the_connected_check_and_the_availability_publish(
    broker: Mosquitto, tmp_path: Path, links: Links
) -> None:
    """The race seen once in the crash test, made certain: the link still believes it is connected (the flag is
    set back after paho reported the drop), so stop() publishes `stopped` into a closed socket; paho refuses it
    and stop() must still finish: no exception, the outbox closed and reopenable by the next link."""
    config = link_config(broker, tmp_path)
    link = links.start(config)
    link.publish_detections(detection(0))
    wait_until(lambda: link.outbox_depth == 0, what="the detection to be acknowledged")
    broker.stop()
    wait_until(lambda: not link.connected, what="the link to notice")
    link._connected = True  # the window between the check in _announce and paho's publish
    link.stop(timeout_s=2.0)

    # the outbox's lock is released (a link that had not closed it would hold it) and nothing was left in it
    assert links.start(config, wait_connected=False).outbox_depth == 0


def test_retained_state_and_availability_are_republished_after_a_broker_restart(
    broker: Mosquitto, tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    link = links.start(link_config(broker, tmp_path))
    link.publish_state(state(variant="yolox-s"))
    broker.stop()  # no persistence: the broker forgets every retained message
    wait_until(lambda: not link.connected, what="the link to notice")
    link.publish_state(state(variant="yolox-nano-416", paused=True))  # while away: only the latest counts
    broker.start()
    # accepting_commands: the broker has answered the SUBSCRIBE sent after the retained messages, so it has them.
    wait_until(lambda: link.accepting_commands, what="the link to reconnect")
    recorders.append(late := Recorder(broker, f"{BASE}/state", f"{BASE}/availability", client_id="late"))
    current = late.wait_for(f"{BASE}/state")
    assert len(current) == 1 and current[0].retain
    assert (current[0].json()["variant"], current[0].json()["paused"]) == ("yolox-nano-416", True)
    assert late.wait_for(f"{BASE}/availability")[0].payload == b"online"


def test_valid_commands_reach_the_handler_and_are_answered_ok(
    broker: Mosquitto, tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    recorders.append(recorder := Recorder(broker, f"{BASE}/set/+/result"))
    links.start(link_config(broker, tmp_path))
    recorder.client.publish(f"{BASE}/set/accuracy_floor", '{"value": 0.35, "expires_s": 60}', qos=1)
    recorder.client.publish(f"{BASE}/set/paused", "true", qos=1)

    floor = recorder.wait_for(f"{BASE}/set/accuracy_floor/result")[0].json()
    paused = recorder.wait_for(f"{BASE}/set/paused/result")[0].json()
    assert (floor["ok"], floor["value"], floor["error"]) == (True, 0.35, None)
    assert (paused["ok"], paused["value"]) == (True, True)
    jsonschema.validate(floor, schemas.load("command-result"))
    wait_until(lambda: len(links.applied) == 2, what="both commands to be applied")
    assert links.applied == [SetAccuracyFloor(value=0.35, expires_s=60), SetPaused(value=True)]


@pytest.mark.parametrize(
    ("name", "payload", "error"),
    [
        ("accuracy_floor", b'{"value": 0.3', "invalid JSON"),
        ("reboot", b"now", "unknown command 'reboot'"),
        ("accuracy_floor", b"7", "less than or equal to 1"),
        ("fps", b'"fast"', "valid number"),
        ("paused", b'{"value": true, "pad": "' + b"x" * 5000 + b'"}', "payload too large"),
    ],
)
def test_bad_commands_are_answered_with_an_error_and_change_nothing(
    broker: Mosquitto,
    tmp_path: Path,
    links: Links,
    recorders: list[Recorder],
    name: str,
    payload: bytes,
    error: str,
) -> None:
    recorders.append(recorder := Recorder(broker, f"{BASE}/set/+/result"))
    link = links.start(link_config(broker, tmp_path))
    recorder.client.publish(f"{BASE}/set/{name}", payload, qos=1)
    result = recorder.wait_for(f"{BASE}/set/{name}/result")[0].json()
    assert result["ok"] is False and error in result["error"]
    jsonschema.validate(result, schemas.load("command-result"))
    # The link still serves: a good command after the bad one is applied, and only that one.
    recorder.client.publish(f"{BASE}/set/governor_mode", "eco", qos=1)
    assert recorder.wait_for(f"{BASE}/set/governor_mode/result")[0].json()["ok"] is True
    assert [command.name for command in links.applied] == ["governor_mode"]
    assert link.connected


def test_a_handler_rejection_or_failure_is_published_as_the_error(
    broker: Mosquitto, tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    def handler(command: Command) -> None:
        if command.name == "variant":
            raise CommandRejected(f"unknown variant '{command.value}'; known: yolox-nano-416, yolox-s")
        raise RuntimeError("governor queue closed")

    recorders.append(recorder := Recorder(broker, f"{BASE}/set/+/result"))
    links.start(link_config(broker, tmp_path), handler)
    recorder.client.publish(f"{BASE}/set/variant", "resnet-9000", qos=1)
    recorder.client.publish(f"{BASE}/set/paused", "false", qos=1)
    rejected = recorder.wait_for(f"{BASE}/set/variant/result")[0].json()
    failed = recorder.wait_for(f"{BASE}/set/paused/result")[0].json()
    assert rejected["ok"] is False
    assert rejected["error"] == "unknown variant 'resnet-9000'; known: yolox-nano-416, yolox-s"
    assert failed["ok"] is False and "internal error" in failed["error"] and "governor queue closed" in failed["error"]


def test_mqtt5_requests_are_answered_on_the_response_topic_with_the_correlation_data(
    broker: Mosquitto, tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    recorders.append(requester := Recorder(broker, "replies/me"))
    links.start(link_config(broker, tmp_path))
    requester.request(f"{BASE}/set/governor_mode", "eco", "replies/me", b"req-1")
    requester.request(f"{BASE}/set/governor_mode", "turbo", "replies/me", b"req-2")
    replies = requester.wait_for("replies/me", 2)
    by_correlation = {bytes(r.properties.CorrelationData): r.json() for r in replies}  # type: ignore[union-attr]
    assert by_correlation[b"req-1"]["ok"] is True and by_correlation[b"req-1"]["value"] == "eco"
    assert by_correlation[b"req-2"]["ok"] is False and "'auto', 'pinned'" in by_correlation[b"req-2"]["error"]


def test_a_response_topic_with_a_wildcard_is_ignored_and_later_commands_still_answered(
    broker: Mosquitto, tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    """Publishing to `x/#` raises in paho: it once killed the command thread, and no command was applied after."""
    recorders.append(requester := Recorder(broker, f"{BASE}/set/+/result", "replies/me"))
    links.start(link_config(broker, tmp_path))
    requester.request(f"{BASE}/set/governor_mode", "eco", "x/#", b"bad")
    first = requester.wait_for(f"{BASE}/set/governor_mode/result")[0].json()
    assert first["ok"] is True and first["value"] == "eco"
    requester.request(f"{BASE}/set/governor_mode", "performance", "replies/me", b"good")
    reply = requester.wait_for("replies/me")[0]
    assert reply.json()["ok"] is True and reply.json()["value"] == "performance"
    assert bytes(reply.properties.CorrelationData) == b"good"  # type: ignore[union-attr]
    assert len(requester.wait_for(f"{BASE}/set/governor_mode/result", 2)) == 2


def test_home_assistant_discovery_is_retained_and_resent_when_home_assistant_comes_online(
    broker: Mosquitto, tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    topic = f"homeassistant/device/edged_{DEVICE}/config"
    links.start(link_config(broker, tmp_path))
    marker = f"{BASE}/set/teleport/result"
    # subscribes after the fact: gets the retained config
    recorders.append(recorder := Recorder(broker, topic, marker))
    first = recorder.wait_for(topic)[0]
    assert first.retain and first.json()["cmps"][f"edged_{DEVICE}_paused"]["cmd_t"] == f"{BASE}/set/paused"
    recorder.client.publish("homeassistant/status", "offline", qos=1)
    # a bad command is answered on the link's network thread, after it handled `offline`: once its answer is here,
    # a config re-sent for `offline` would be here too (one sender, one subscriber, QoS 1: in order)
    recorder.client.publish(f"{BASE}/set/teleport", "1", qos=1)
    recorder.wait_for(marker)
    assert len(recorder.on(topic)) == 1, "Home Assistant going offline is no reason to re-send the config"
    recorder.client.publish("homeassistant/status", "online", qos=1)
    again = recorder.wait_for(topic, 2)
    assert again[1].json() == first.json()
    recorder.client.publish(f"{BASE}/set/teleport", "1", qos=1)
    recorder.wait_for(marker, 2)
    assert len(recorder.on(topic)) == 2, "one re-send per `online`"


def test_discovery_disabled_publishes_no_config(
    broker: Mosquitto, tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    recorders.append(recorder := Recorder(broker, "homeassistant/#", f"{BASE}/availability"))
    links.start(link_config(broker, tmp_path, discovery_prefix=None))
    recorder.wait_for(f"{BASE}/availability")
    recorder.client.publish("homeassistant/status", "online", qos=1)
    wait_until(lambda: len(recorder.on("homeassistant/status")) == 1, what="the status echo")
    assert [m.topic for m in recorder.messages if m.topic.startswith("homeassistant/device")] == []


def test_a_full_outbox_drops_the_oldest_and_reports_it_in_stats(
    durable_broker: Mosquitto, tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    topics = (f"{BASE}/detections", f"{BASE}/stats")
    recorders.append(recorder := Recorder(durable_broker, *topics, client_id="durable-recorder", persistent=True))
    durable_broker.stop()
    link = links.start(link_config(durable_broker, tmp_path, outbox_max_messages=100), wait_connected=False)
    for frame in range(150):
        link.publish_detections(detection(frame))
    assert (link.outbox_depth, link.outbox_dropped) == (100, 50)
    durable_broker.start()
    wait_until(lambda: link.connected and link.outbox_depth == 0, what="the outbox to drain")
    assert frames_of(recorder.wait_for(f"{BASE}/detections", 100)) == list(range(50, 150))
    link.publish_stats(PipelineStats(fps=5.0))
    stats = recorder.wait_for(f"{BASE}/stats")[0].json()
    assert (stats["outbox_depth"], stats["outbox_dropped"]) == (0, 50)


def test_counts_are_retained_and_republished_after_a_broker_restart_and_events_wait_in_the_outbox(
    broker: Mosquitto, tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    def count(label: str, value: int, frame: int) -> ObjectCountMessage:
        return ObjectCountMessage(device=DEVICE, label=label, count=value, frame=frame, at=1.0)

    def event(kind: str, frame: int) -> EventMessage:
        seen = TrackedObject(
            track_id=7, label="person", class_id=0, score=0.8, top_score=0.9, box=(0.1, 0.2, 0.3, 0.4),
            start_time=1.0, last_seen=1.0 + frame, frames=frame,
        )  # fmt: skip
        return EventMessage(device=DEVICE, type=kind, source="cam", frame=frame, at=1.0, before=None, after=seen)

    link = links.start(link_config(broker, tmp_path))
    link.publish_count(count("person", 2, 1))
    link.publish_count(count("traffic light", 1, 1))
    broker.stop()  # no persistence: the broker forgets every retained message
    wait_until(lambda: not link.connected, what="the link to notice")
    link.publish_count(count("person", 3, 2))  # while away: only the latest counts
    link.publish_event(event("new", 3))
    assert link.outbox_depth == 1, "an event waits in the outbox, as detections do"
    broker.start()
    wait_until(lambda: link.accepting_commands and link.outbox_depth == 0, what="the link to reconnect and send")
    recorders.append(late := Recorder(broker, f"{BASE}/objects/#", client_id="late"))
    current = {m.topic: m for m in late.wait_for(f"{BASE}/objects/person")}
    current.update({m.topic: m for m in late.wait_for(f"{BASE}/objects/traffic_light")})
    assert all(m.retain for m in current.values())
    assert current[f"{BASE}/objects/person"].json()["count"] == 3
    assert current[f"{BASE}/objects/traffic_light"].json()["label"] == "traffic light"
    for message in current.values():
        jsonschema.validate(message.json(), schemas.load("object-count"))
