"""MQTT publisher throughput: detection messages/s at QoS 1 through the durable outbox to a local mosquitto, and
the outbox's replay rate after an outage.

    .venv/bin/python -m bench.bench_mqtt [--messages 20000] [--broker HOST:PORT] [--protocol 5|3.1.1]

Live: a message counts as sent when the broker has acknowledged it (PUBACK) and it has left the outbox: the clock
runs from the first publish_detections() to an empty outbox. Replay: the same number of messages is stored while
the link is not started (a broker that is away), then the link starts and the clock runs until the outbox is
empty. Each time a subscriber in its own process checks that every frame arrived. Without --broker a mosquitto
is started on a free port (tests/mqtt_broker.py). Quality bar: >= 2,000/s (live, and a backlog drains as fast).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import Outcome, Reporter, add_common_arguments, heading  # noqa: E402
from edged.config import MqttConfig  # noqa: E402
from edged.mqtt.link import MqttLink  # noqa: E402
from edged.mqtt.messages import DetectionsMessage  # noqa: E402
from edged.vision.types import DetectedObject  # noqa: E402

TARGET_PER_S = 2000.0


def detection(frame: int) -> DetectionsMessage:
    objects = [
        DetectedObject(label="person", class_id=0, score=0.91, box=(0.1, 0.2, 0.3, 0.6)),
        DetectedObject(label="car", class_id=2, score=0.77, box=(0.5, 0.5, 0.9, 0.8)),
        DetectedObject(label="dog", class_id=16, score=0.55, box=(0.05, 0.7, 0.2, 0.95)),
    ]
    return DetectionsMessage(
        device="bench",
        source="camera:0",
        frame=frame,
        captured_at=time.time(),
        variant="yolox-nano-416-int8",
        latency_ms=23.4,
        energy_mj=41.0,
        width=1280,
        height=720,
        objects=objects,
    )


class FrameCounter:
    """A subscriber in its own process (so it does not share the publisher's GIL) counting distinct frames."""

    def __init__(self, host: str, port: int, topic: str, expected: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--count-frames", host, str(port), topic, str(expected)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "subscribed":
            raise SystemExit("bench: the counting subscriber could not subscribe")

    def result(self, timeout_s: float) -> int:
        out, _ = self.process.communicate(timeout=timeout_s)
        return int(out.strip() or 0)


def count_frames(host: str, port: int, topic: str, expected: int, timeout_s: float = 120.0) -> None:
    """The subscriber process: print `subscribed`, then the number of distinct frames once all came (or timeout)."""
    frames: set[int] = set()
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-counter")
    client.on_message = lambda _c, _u, m: frames.add(int(m.payload.split(b'"frame":')[1].split(b",")[0]))
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
    client.connect(host, port)
    client.loop_start()
    subscribed.wait(10)
    print("subscribed", flush=True)
    deadline = time.monotonic() + timeout_s
    while len(frames) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    print(len(frames), flush=True)


def link_config(host: str, port: int, messages: int, protocol: str, outbox: Path) -> MqttConfig:
    return MqttConfig(
        host=host,
        port=port,
        protocol=protocol,  # type: ignore[arg-type]
        device_id="bench",
        discovery_prefix=None,
        outbox_path=outbox,
        outbox_max_messages=max(100, messages * 2),
    )


def wait_connected(link: MqttLink, host: str, port: int) -> None:
    deadline = time.monotonic() + 10
    while not link.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    if not link.connected:
        raise SystemExit(f"bench: cannot connect to {host}:{port}")


def run(host: str, port: int, messages: int, protocol: str, workdir: Path) -> float:
    """Live publishing: publish_detections() to an empty outbox, every message acknowledged. Returns msg/s."""
    link = MqttLink(link_config(host, port, messages, protocol, workdir / "live.sqlite3"), on_command=lambda _c: None)
    link.start()
    wait_connected(link, host, port)
    counter = FrameCounter(host, port, link.topics.detections, messages)
    payloads = [detection(i) for i in range(messages)]

    cpu_started = time.process_time()
    started = time.perf_counter()
    for message in payloads:
        link.publish_detections(message)
    enqueued = time.perf_counter() - started
    if not link.flush(timeout_s=120):
        raise SystemExit(f"bench: {link.outbox_depth} messages still unacknowledged after 120 s")
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    link.stop()

    received = counter.result(timeout_s=150)
    rate = messages / elapsed
    print(f"messages:          {messages} (QoS 1, MQTT {protocol}, {len(payloads[0].to_json())} bytes each)")
    print(f"into the outbox:   {messages / enqueued:,.0f}/s (publish_detections returns)")
    print(f"acknowledged:      {rate:,.0f}/s end to end ({elapsed:.2f} s)")
    print(f"publisher CPU:     {cpu:.2f} s, {messages / cpu:,.0f} messages per CPU-second (all its threads)")
    print(f"subscriber got:    {received}/{messages} distinct frames")
    if received != messages:
        raise SystemExit("bench: the subscriber did not receive every frame")
    return rate


def replay(host: str, port: int, messages: int, protocol: str, workdir: Path) -> float:
    """A backlog stored while the broker was away, sent when the link starts. Returns msg/s."""
    config = link_config(host, port, messages, protocol, workdir / "replay.sqlite3")
    link = MqttLink(config, on_command=lambda _c: None)
    for frame in range(messages):
        link.publish_detections(detection(frame))  # not started: stored, nothing sent
    counter = FrameCounter(host, port, link.topics.detections, messages)
    started = time.perf_counter()
    link.start()
    if not link.flush(timeout_s=120):
        raise SystemExit(f"bench: {link.outbox_depth} replayed messages still unacknowledged after 120 s")
    elapsed = time.perf_counter() - started
    link.stop()
    received = counter.result(timeout_s=150)
    rate = messages / elapsed
    print(f"replayed:          {messages} stored messages in {elapsed:.2f} s = {rate:,.0f}/s (connect included)")
    print(f"subscriber got:    {received}/{messages} distinct frames")
    if received != messages:
        raise SystemExit("bench: the subscriber did not receive every replayed frame")
    return rate


def measure(reporter: Reporter, host: str, port: int, messages: int, protocol: str, workdir: Path) -> None:
    live = run(host, port, messages, protocol, workdir)
    replayed = replay(host, port, messages, protocol, workdir)
    why = "the publisher (outbox commit + paho) or the broker is CPU-bound; see 'publisher CPU' above"
    reporter.add(
        Outcome(
            "MQTT QoS 1 publish rate / 2,000 msg/s",
            live / TARGET_PER_S,
            1.0,
            detail=f"{live:,.0f} msg/s acknowledged end to end, {messages} messages, MQTT {protocol}",
            why_missed=why,
        )
    )
    reporter.add(
        Outcome(
            "outbox replay rate / 2,000 msg/s",
            replayed / TARGET_PER_S,
            1.0,
            detail=f"{replayed:,.0f} msg/s; replay / live = {replayed / live:.2f}",
            why_missed=why,
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--broker", help="HOST:PORT of a running broker (default: start a mosquitto)")
    parser.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    parser.add_argument("--count-frames", nargs=4, metavar=("HOST", "PORT", "TOPIC", "N"), help=argparse.SUPPRESS)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.count_frames:
        host, port, topic, expected = args.count_frames
        count_frames(host, int(port), topic, int(expected))
        return 0
    reporter = Reporter("mqtt")
    heading("MQTT: publisher throughput and outbox replay (QoS 1, local mosquitto)")
    with tempfile.TemporaryDirectory(prefix="edged-bench-mqtt-") as tmp:
        if args.broker:
            host, _, port = args.broker.rpartition(":")
            measure(reporter, host or "127.0.0.1", int(port), args.messages, args.protocol, Path(tmp))
        else:
            from tests.mqtt_broker import Mosquitto

            # The subscriber may fall behind: let mosquitto queue for it rather than drop past its default 1000.
            with Mosquitto(Path(tmp) / "broker", extra_config=["max_queued_messages 0"]) as broker:
                measure(reporter, broker.host, broker.port, args.messages, args.protocol, Path(tmp))
    reporter.write(args.outcomes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
