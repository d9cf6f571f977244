"""Fixtures for the MQTT tests: a real mosquitto per test, links that are always stopped, a recording subscriber."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.config import MqttConfig
from edged.mqtt.commands import Command
from edged.mqtt.link import MqttLink
from edged.mqtt.messages import DetectionsMessage, StateMessage
from edged.vision.types import DetectedObject
from tests.mqtt_broker import Mosquitto

DEVICE = "cam1"
BASE_TOPIC = f"edged/{DEVICE}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as running:
        yield running


@pytest.fixture
def durable_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Keeps sessions across a clean restart (SIGTERM) and queues without limit for a subscriber that is away.
    Stop it only when nothing is in flight: mosquitto may acknowledge a message during shutdown and then lose it."""
    with Mosquitto(tmp_path / "broker", persistence=True) as running:
        yield running


def link_config(broker: Mosquitto, tmp_path: Path, **overrides: Any) -> MqttConfig:
    fields: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "device_id": DEVICE,
        "client_id": f"edged-{DEVICE}-{broker.port}",
        "keepalive_s": 5,
        "outbox_path": tmp_path / "outbox.sqlite3",
    }
    return MqttConfig(**{**fields, **overrides})


class Links:
    """Creates MqttLinks and stops every one at teardown; records the commands their handlers receive."""

    def __init__(self) -> None:
        self.created: list[MqttLink] = []
        self.applied: list[Command] = []

    def start(
        self, config: MqttConfig, handler: Callable[[Command], None] | None = None, wait_connected: bool = True
    ) -> MqttLink:
        link = MqttLink(config, on_command=handler or self.applied.append)
        self.created.append(link)
        link.start()
        if wait_connected:
            wait_until(lambda: link.accepting_commands, what="the link to connect and subscribe")
        return link


@pytest.fixture
def links() -> Iterator[Links]:
    made = Links()
    yield made
    for link in made.created:
        link.stop(timeout_s=1.0)


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.01)


class Received:
    """One message as a subscriber saw it."""

    def __init__(self, message: mqtt.MQTTMessage) -> None:
        self.topic = message.topic
        self.payload = bytes(message.payload)
        self.retain = bool(message.retain)
        self.properties = getattr(message, "properties", None)

    def json(self) -> Any:
        return json.loads(self.payload)


class Recorder:
    """A paho subscriber that records everything on its filters. `persistent`: a 3.1.1 session that survives
    its own reconnects and (with broker persistence) a broker restart, so nothing is missed while away."""

    def __init__(
        self,
        broker: Mosquitto,
        *filters: str,
        client_id: str = "recorder",
        persistent: bool = False,
        protocol: int = mqtt.MQTTv5,
        setup: Callable[[mqtt.Client], None] | None = None,
    ) -> None:
        self.filters = filters
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.subscriptions = 0  # acknowledged SUBSCRIBEs, one per (re)connect
        if persistent:
            protocol = mqtt.MQTTv311
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,  # type: ignore[arg-type]
            clean_session=(not persistent) if protocol != mqtt.MQTTv5 else None,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        if setup is not None:
            setup(self.client)  # credentials, TLS
        self.client.connect(broker.host, broker.port, keepalive=5)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise AssertionError("the recorder could not subscribe")

    def _on_connect(self, client: mqtt.Client, *_args: Any) -> None:
        client.subscribe([(topic_filter, 1) for topic_filter in self.filters])

    def _on_subscribe(self, *_args: Any) -> None:
        self.subscriptions += 1
        self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(message))

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, topic: str, count: int = 1, timeout_s: float = 10.0) -> list[Received]:
        wait_until(lambda: len(self.on(topic)) >= count, timeout_s, f"{count} message(s) on {topic}")
        return self.on(topic)

    def request(self, topic: str, payload: bytes | str, response_topic: str, correlation: bytes) -> None:
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = response_topic
        properties.CorrelationData = correlation
        self.client.publish(topic, payload, qos=1, properties=properties)

    def close(self) -> None:
        self.client.disconnect()  # first: wakes the network thread, so loop_stop need not wait out its select
        self.client.loop_stop()


@pytest.fixture
def recorders() -> Iterator[list[Recorder]]:
    made: list[Recorder] = []
    yield made
    for recorder in made:
        recorder.close()


def detection(frame: int, device: str = DEVICE) -> DetectionsMessage:
    return DetectionsMessage(
        device=device,
        source="test.mp4",
        frame=frame,
        captured_at=1_700_000_000.0 + frame / 10,
        variant="yolox-nano-416",
        latency_ms=12.5,
        energy_mj=None,
        width=640,
        height=480,
        objects=[DetectedObject(label="person", class_id=0, score=0.9, box=(0.1, 0.2, 0.3, 0.4))],
    )


def state(**overrides: Any) -> StateMessage:
    fields: dict[str, Any] = {
        "device": DEVICE,
        "at": time.time(),
        "variant": "yolox-nano-416",
        "mode": "auto",
        "accuracy_floor": 0.2,
        "fps": 5.0,
        "paused": False,
        "battery_pct": 80.0,
        "power_w": 4.2,
        "power_quality": "simulated",
    }
    return StateMessage(**{**fields, **overrides})


def frames_of(messages: list[Received]) -> list[int]:
    return [m.json()["frame"] for m in messages]


def assert_in_order_without_gaps(frames: list[int], expected: int) -> None:
    """At-least-once in order: re-sends may repeat a suffix, but frames seen for the first time come 0, 1, 2, ..."""
    newest = -1
    for index, frame in enumerate(frames):
        if frame > newest:
            around = frames[max(0, index - 5) : index + 5]
            assert frame == newest + 1, f"gap: frame {frame} came right after {newest} (around: {around})"
            newest = frame
    assert newest == expected - 1, f"expected frames 0..{expected - 1}, the newest seen is {newest}"
