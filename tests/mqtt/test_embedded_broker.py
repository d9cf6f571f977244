"""The demo's in-process broker (amqtt, the [demo] extra): MqttLink works against it over MQTT 3.1.1."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest

from edged.errors import EdgedError, MissingExtraError
from edged.mqtt.broker import EmbeddedBroker
from edged.mqtt.link import _protocol
from tests.mqtt.conftest import BASE_TOPIC, Links, Recorder, detection, frames_of, link_config, state
from tests.mqtt_broker import free_port


def test_the_embedded_broker_carries_detections_state_and_commands(
    tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    pytest.importorskip("amqtt")
    with EmbeddedBroker("127.0.0.1", free_port()) as broker:
        address = SimpleNamespace(host=broker.host, port=broker.port)
        recorders.append(
            recorder := Recorder(address, f"{BASE_TOPIC}/#", protocol=mqtt.MQTTv311)  # type: ignore[arg-type]
        )
        link = links.start(link_config(address, tmp_path, protocol="3.1.1"))  # type: ignore[arg-type]
        link.publish_state(state(variant="yolox-s"))
        for frame in range(20):
            link.publish_detections(detection(frame))
        recorder.client.publish(f"{BASE_TOPIC}/set/paused", "true", qos=1)
        assert frames_of(recorder.wait_for(f"{BASE_TOPIC}/detections", 20)) == list(range(20))
        assert recorder.wait_for(f"{BASE_TOPIC}/set/paused/result")[0].json()["ok"] is True
        assert recorder.wait_for(f"{BASE_TOPIC}/state")[0].json()["variant"] == "yolox-s"
        link.stop()
        assert recorder.wait_for(f"{BASE_TOPIC}/availability", 2)[-1].payload == b"stopped"


def test_the_embedded_broker_means_mqtt_3_1_1() -> None:
    assert _protocol(SimpleNamespace(broker="embedded", protocol="5")) == mqtt.MQTTv311  # type: ignore[arg-type]
    assert _protocol(SimpleNamespace(broker="external", protocol="5")) == mqtt.MQTTv5  # type: ignore[arg-type]


def test_a_missing_amqtt_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amqtt.broker", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'edged\[demo\]'"):
        EmbeddedBroker("127.0.0.1", free_port()).start()


def test_a_port_in_use_is_a_clear_error() -> None:
    pytest.importorskip("amqtt")
    with EmbeddedBroker("127.0.0.1", free_port()) as first, pytest.raises(EdgedError, match="cannot listen on"):
        EmbeddedBroker(first.host, first.port).start()


def test_a_config_asking_for_the_embedded_broker_gets_it_from_edged_run(tmp_path: Path, shared: Path) -> None:
    """`mqtt.broker: embedded` in a config file used to be honoured only by the no-config demo."""
    pytest.importorskip("amqtt")
    import subprocess
    import time

    import yaml

    root = Path(__file__).resolve().parents[2]
    port = free_port()
    config = {
        "source": {"type": "file", "path": str(root / "edged" / "demo" / "vtest_10s.mp4"), "loop": True},
        "zoo": {"path": str(root / "deploy" / "zoos" / "coco-reference"), "variant": "fastestdet-352"},
        "mqtt": {
            "broker": "embedded",
            "host": "127.0.0.1",
            "port": port,
            "protocol": "3.1.1",
            "device_id": "embedded-test",
            "outbox_path": str(tmp_path / "outbox.sqlite3"),
            "discovery_prefix": None,
        },
    }
    (tmp_path / "edged.yaml").write_text(yaml.safe_dump(config))
    env = {"EDGED_SHARED": str(shared), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "-c", str(tmp_path / "edged.yaml")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        recorder = None
        while recorder is None and time.monotonic() < deadline and process.poll() is None:
            try:
                address = SimpleNamespace(host="127.0.0.1", port=port)
                recorder = Recorder(address, "edged/embedded-test/detections", protocol=mqtt.MQTTv311)  # type: ignore[arg-type]
            except (OSError, AssertionError):
                time.sleep(0.5)
        assert recorder is not None, (
            f"no broker on {port}; edged said: {process.stdout.read() if process.stdout else ''}"
        )
        assert recorder.wait_for("edged/embedded-test/detections", 3, timeout_s=60)
        recorder.close()
    finally:
        process.terminate()
        process.wait(30)
