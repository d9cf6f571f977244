"""Nothing that entered the outbox is lost: broker restarts, broker outages, and kill -9 of the publisher.

The assertions are the contract's: every frame arrives, in order; duplicates (a re-sent suffix) are allowed.
Where the broker goes away, the test makes sure the subscriber cannot miss what the broker did accept (a persistent
session, or the subscriber back before the publisher): what is under test is the publisher, not the broker.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from edged.config import MqttConfig
from edged.mqtt.link import MqttLink
from tests.mqtt.conftest import (
    BASE_TOPIC,
    Links,
    Recorder,
    assert_in_order_without_gaps,
    detection,
    frames_of,
    link_config,
    wait_until,
)
from tests.mqtt_broker import Mosquitto, TcpRelay

ROOT = Path(__file__).resolve().parents[2]
DETECTIONS = f"{BASE_TOPIC}/detections"


def publish_paced(link: MqttLink, total: int) -> None:
    for frame in range(total):
        link.publish_detections(detection(frame))
        if frame % 50 == 0:
            time.sleep(0.01)


def wait_quiet(recorder: Recorder, quiet_s: float = 0.3) -> None:
    """Until nothing new has arrived for `quiet_s`."""
    seen = -1
    while len(recorder.messages) != seen:
        seen = len(recorder.messages)
        time.sleep(quiet_s)


def spawn_publisher(config: MqttConfig, tmp_path: Path, first: int, count: int, then: str) -> subprocess.Popen[str]:
    config_file = tmp_path / f"publisher-{first}.json"
    config_file.write_text(config.model_dump_json())
    return subprocess.Popen(
        [sys.executable, "-m", "tests.mqtt.publisher_process", str(config_file), str(first), str(count), then],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def read_until(process: subprocess.Popen[str], done: str, timeout_s: float = 30.0) -> list[str]:
    """Lines the publisher printed, up to and including the first one starting with `done`."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline().strip()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if line.startswith(done):
            return lines
    raise AssertionError(f"the publisher never printed {done!r}; it printed {lines[-5:]}")


def entered(lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith("entered ")]


def test_a_broker_crash_and_restart_mid_publish_loses_nothing(
    broker: Mosquitto, tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    """The link reaches the broker through a relay, so the test can make the broker stop hearing it mid-publish
    (its in-flight messages are never acknowledged), kill -9 the broker once it has delivered what it did
    acknowledge, and let the link back in only when the subscriber is listening again."""
    recorders.append(recorder := Recorder(broker, DETECTIONS))
    relay = TcpRelay(broker.port)
    try:
        link = links.start(link_config(broker, tmp_path, port=relay.port))
        total = 1500
        publisher = threading.Thread(target=publish_paced, args=(link, total))
        publisher.start()
        wait_until(lambda: len(recorder.on(DETECTIONS)) > 300, what="the first frames")
        relay.hold()
        wait_quiet(recorder)
        broker.kill()
        relay.refuse()
        cut_at, waiting_at_cut = len(recorder.on(DETECTIONS)), link.outbox_depth
        broker.start()
        wait_until(lambda: recorder.subscriptions >= 2, what="the recorder to subscribe again")
        relay.admit()
        publisher.join()
        wait_until(lambda: link.connected and link.outbox_depth == 0, timeout_s=20, what="the outbox to drain")
        wait_until(lambda: max(frames_of(recorder.on(DETECTIONS))) == total - 1, what="the last frame")
        assert cut_at < total and waiting_at_cut > 0, "the broker went away mid-publish"
        assert_in_order_without_gaps(frames_of(recorder.on(DETECTIONS)), total)
        assert link.outbox_dropped == 0
    finally:
        relay.close()


def test_a_clean_broker_restart_loses_nothing(
    durable_broker: Mosquitto, tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    recorders.append(recorder := Recorder(durable_broker, DETECTIONS, client_id="durable-recorder", persistent=True))
    link = links.start(link_config(durable_broker, tmp_path))
    for frame in range(100):
        link.publish_detections(detection(frame))
    wait_until(lambda: link.outbox_depth == 0, what="the first frames to be acknowledged")
    durable_broker.stop()
    for frame in range(100, 400):
        link.publish_detections(detection(frame))
    assert link.outbox_depth == 300
    durable_broker.start()
    wait_until(lambda: link.connected and link.outbox_depth == 0, timeout_s=20, what="the outbox to drain")
    wait_until(lambda: max(frames_of(recorder.on(DETECTIONS)), default=-1) == 399, what="the last frame")
    assert_in_order_without_gaps(frames_of(recorder.on(DETECTIONS)), 400)


def test_mqtt_3_1_1_through_a_broker_outage_loses_nothing_and_keeps_order(
    tmp_path: Path, links: Links, recorders: list[Recorder]
) -> None:
    """The README's MQTT 3.1.1 (no reason codes, no properties): the link speaks it to mosquitto, and the frames
    published while the broker is stopped arrive after it starts again, none lost, none out of order."""
    with Mosquitto(tmp_path / "broker", persistence=True, extra_config=["log_type notice"]) as broker:
        recorders.append(recorder := Recorder(broker, DETECTIONS, client_id="v311-recorder", persistent=True))
        config = link_config(broker, tmp_path, protocol="3.1.1")
        link = links.start(config)
        for frame in range(100):
            link.publish_detections(detection(frame))
        # stopped with nothing in flight: mosquitto may acknowledge during its shutdown and lose it (not ours)
        wait_until(lambda: link.outbox_depth == 0, what="the first frames to be acknowledged")
        broker.stop()
        wait_until(lambda: not link.connected, what="the link to see the broker gone")
        for frame in range(100, 400):
            link.publish_detections(detection(frame))
        assert link.outbox_depth >= 300
        broker.start()
        wait_until(lambda: link.connected and link.outbox_depth == 0, timeout_s=20, what="the outbox to drain")
        wait_until(lambda: max(frames_of(recorder.on(DETECTIONS)), default=-1) == 399, what="the last frame")
        assert_in_order_without_gaps(frames_of(recorder.on(DETECTIONS)), 400)
        connects = [line for line in broker.log_path.read_text().splitlines() if f"as {config.client_id} (" in line]
    assert len(connects) == 2 and all("(p2," in line for line in connects), connects  # p2: MQTT 3.1.1, p5: MQTT 5


def test_kill_9_mid_publish_loses_nothing_and_leaves_availability_offline(
    broker: Mosquitto, tmp_path: Path, recorders: list[Recorder]
) -> None:
    recorders.append(recorder := Recorder(broker, DETECTIONS, f"{BASE_TOPIC}/availability"))
    config = link_config(broker, tmp_path)
    first = spawn_publisher(config, tmp_path, 0, 100_000, then="hang")
    try:
        lines = read_until(first, "entered 800")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.stdout is not None
    lines += first.stdout.read().split("\n")
    before_kill = entered(lines)
    assert len(before_kill) > 800
    availability = recorder.wait_for(f"{BASE_TOPIC}/availability", 2)
    assert [m.payload for m in availability] == [b"online", b"offline"], "the last will announces offline"

    resumed_from = before_kill[-1] + 1
    second = spawn_publisher(config, tmp_path, resumed_from, 200, then="stop")
    lines = read_until(second, "stopped")
    second.wait(timeout=30)
    assert lines[-1] == "stopped 0"
    # "stopped 0": the broker acknowledged everything; its copies to the recorder may still be on their way
    last = resumed_from + 199
    wait_until(lambda: max(frames_of(recorder.on(DETECTIONS)), default=-1) == last, what="the last frame")
    frames = frames_of(recorder.on(DETECTIONS))
    assert set(before_kill) <= set(frames), "every message that entered the outbox arrived"
    assert_in_order_without_gaps(frames, resumed_from + 200)
    assert recorder.on(f"{BASE_TOPIC}/availability")[-1].payload == b"stopped"


def test_kill_9_with_the_broker_away_replays_the_whole_outbox_on_the_next_start(
    durable_broker: Mosquitto, tmp_path: Path, recorders: list[Recorder]
) -> None:
    recorders.append(recorder := Recorder(durable_broker, DETECTIONS, client_id="durable-recorder", persistent=True))
    config = link_config(durable_broker, tmp_path)
    durable_broker.stop()
    first = spawn_publisher(config, tmp_path, 0, 500, then="hang")
    try:
        lines = read_until(first, "hanging")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert entered(lines) == list(range(500))
    durable_broker.start()
    second = spawn_publisher(config, tmp_path, 500, 10, then="stop")
    assert read_until(second, "stopped")[-1] == "stopped 0"
    second.wait(timeout=30)
    wait_until(lambda: len(recorder.on(DETECTIONS)) >= 510, what="all 510 frames")
    assert frames_of(recorder.on(DETECTIONS)) == list(range(510)), "replayed in order, nothing twice"


def test_publisher_config_round_trips_through_json(broker: Mosquitto, tmp_path: Path) -> None:
    config = link_config(broker, tmp_path)
    assert MqttConfig.model_validate(json.loads(config.model_dump_json())) == config
