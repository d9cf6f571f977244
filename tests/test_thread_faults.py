"""A thread dying anywhere in the daemon (edged.threads): said on `state`, logged once with its traceback, and the
daemon stops and exits with status 70 for systemd to restart it, never left half-alive.

Real parts throughout (mosquitto, the models, the demo clip); the one thing injected is the fault: a method the
thread calls raises RuntimeError("injected"), once, on that thread only, after frames are flowing.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.exposition import ThreadingWSGIServer

from edged.config import EdgedConfig
from edged.daemon import Daemon
from edged.mqtt.link import MqttLink
from edged.mqtt.sender import OutboxSender
from edged.power import PowerSampler
from edged.sources import FrameQueue
from edged.threads import EXIT_THREAD_DIED
from edged.worker import InferenceWorker
from tests.mqtt.conftest import Recorder, wait_until
from tests.mqtt_broker import Mosquitto
from tests.test_faults import DEVICE, ROOT, config_dict  # the daemon as test_faults runs it

BASE = f"edged/{DEVICE}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as running:
        yield running


@pytest.fixture
def recorder(broker: Mosquitto) -> Iterator[Recorder]:
    made = Recorder(broker, f"{BASE}/#", client_id="thread-fault-recorder")
    yield made
    made.close()


def detections(recorder: Recorder) -> int:
    return len(recorder.on(f"{BASE}/detections"))


class Injection:
    """Wraps `owner.method`: once armed, its next call on the thread named `thread` raises RuntimeError."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: type, method: str, thread: str) -> None:
        self.thread = thread
        self.armed = threading.Event()
        self.fired = threading.Event()
        self._lock = threading.Lock()
        original = getattr(owner, method)

        def injected(*args: Any, **kwargs: Any) -> Any:
            if self.armed.is_set() and threading.current_thread().name == thread:
                with self._lock:
                    fire = not self.fired.is_set()
                    self.fired.set()
                if fire:
                    raise RuntimeError("injected")
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, method, injected)


def set_command(name: str, value: str) -> Callable[[Recorder, Daemon], None]:
    def send(recorder: Recorder, _daemon: Daemon) -> None:
        recorder.client.publish(f"{BASE}/set/{name}", value, qos=1)

    return send


def switch_to_a_variant_not_loaded(recorder: Recorder, daemon: Daemon) -> None:
    """A switch the loader has to load for (the loader thread runs only then)."""
    cold = [v.id for v in daemon.zoo.variants if v.id not in daemon.worker.warm_variants]
    set_command("variant", cold[0])(recorder, daemon)


@dataclass(frozen=True)
class Case:
    thread: str
    owner: type
    method: str  # called on that thread, outside the errors its part handles
    trigger: Callable[[Recorder, Daemon], None] | None = None  # what makes the thread call it, when frames do not
    sections: dict[str, Any] | None = None
    flushes: bool = True  # the outbox is sent before the exit (not when the thread that sends it is the dead one)


CASES = [
    Case("edged-source", FrameQueue, "put"),
    Case("edged-inference", InferenceWorker, "_swap_if_pending"),
    Case("edged-loader", InferenceWorker, "_evict", trigger=switch_to_a_variant_not_loaded),
    Case("power-sampler", PowerSampler, "step"),
    Case("edged-mqtt-sender", OutboxSender, "feed", flushes=False),
    Case("edged-mqtt-commands", MqttLink, "_publish_result", trigger=set_command("paused", "false")),
    # paho's network loop. Without tracking: paho also calls on_publish in the middle of writing a QoS 0 message
    # (the per-label counts), and an exception there leaves a half-written packet on the wire, after which nothing
    # more gets through on that connection (the broker sends the will); this case is about an ack's callback.
    Case(
        f"paho-mqtt-client-edged-{DEVICE}",
        MqttLink,
        "_on_publish",
        flushes=False,
        sections={"tracking": {"enabled": False}},
    ),
    Case("edged-metrics", ThreadingWSGIServer, "service_actions", sections={"metrics": {"enabled": True, "port": 0}}),
]


class Run:
    """Daemon.run on a thread, its exit status kept."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.daemon = Daemon(EdgedConfig.model_validate(config))
        self.status: int | None = None
        self.thread = threading.Thread(target=self._run, name="test-daemon", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.status = self.daemon.run()

    def wait(self, timeout_s: float) -> int | None:
        self.thread.join(timeout_s)
        return self.status

    def stop(self) -> None:
        self.daemon.request_stop()
        self.thread.join(30)


def daemon_threads(daemon: Daemon) -> list[threading.Thread]:
    threads = [daemon.producer._thread, daemon.worker._thread, daemon.worker._loader]
    if daemon.link is not None:
        threads += [daemon.link._sender, daemon.link._command_worker]
    threads += [daemon.power._thread, daemon.link._client._thread if daemon.link else None]
    return [t for t in threads if t is not None]


def outbox_depth(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])


def tracebacks_of_the_injection(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.exc_info and r.exc_info[1] is not None and str(r.exc_info[1]) == "injected"]


@pytest.mark.parametrize("case", CASES, ids=[case.thread.split("-client-")[0] for case in CASES])
def test_a_thread_that_dies_is_on_state_logged_once_and_the_daemon_exits_for_systemd(
    case, profiled_zoo, broker, recorder, tmp_path, monkeypatch, caplog
):
    injection = Injection(monkeypatch, case.owner, case.method, case.thread)
    other_hook_calls: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", other_hook_calls.append)  # pytest's or the default: not called
    caplog.set_level(logging.INFO)
    run = Run(config_dict(profiled_zoo, broker.port, tmp_path, **(case.sections or {})))
    try:
        wait_until(lambda: detections(recorder) >= 3, 30, "detections")
        injection.armed.set()
        if case.trigger is not None:
            case.trigger(recorder, run.daemon)
        assert injection.fired.wait(10), f"{case.thread} did not call {case.owner.__name__}.{case.method}"
        status = run.wait(30)
    finally:
        run.stop()

    assert status == EXIT_THREAD_DIED  # `edged run` exits with it: systemd's Restart=on-failure restarts edged
    assert not [t.name for t in daemon_threads(run.daemon) if t.is_alive()], "a part is left running"
    assert threading.excepthook == other_hook_calls.append, "the daemon's hook is removed when it stops"

    expected = f"thread {case.thread} died: RuntimeError: injected"
    wait_until(lambda: expected in (recorder.on(f"{BASE}/state")[-1].json()["error"] or ""), 10, "the fault on state")
    wait_until(lambda: recorder.on(f"{BASE}/availability")[-1].payload == b"offline", 10, "offline, not stopped")

    logged = tracebacks_of_the_injection(caplog.records)
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].levelno == logging.CRITICAL and case.thread in logged[0].getMessage()
    assert other_hook_calls == [], "the death reached another hook too (printed twice)"
    if case.flushes:
        assert outbox_depth(tmp_path / "outbox.sqlite3") == 0, "the outbox is flushed before the exit"


INJECT_AND_RUN = """
import sys, threading
from edged.cli import main
from edged.worker import InferenceWorker

original, calls = InferenceWorker._swap_if_pending, []

def injected(self):
    calls.append(1)
    if len(calls) == 20 and threading.current_thread().name == "edged-inference":
        raise RuntimeError("injected")
    return original(self)

InferenceWorker._swap_if_pending = injected
sys.exit(main(["run", "-c", sys.argv[1]]))
"""


def test_edged_run_exits_with_status_70_when_a_thread_dies(profiled_zoo, broker, recorder, tmp_path):
    """The process as systemd runs it: `edged run -c FILE`, JSON logs, the inference thread dying at frame 20."""
    config = tmp_path / "edged.yaml"
    config.write_text(
        yaml.safe_dump({**config_dict(profiled_zoo, broker.port, tmp_path), "logging": {"format": "json"}})
    )
    done = subprocess.run(
        [sys.executable, "-c", INJECT_AND_RUN, str(config)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == EXIT_THREAD_DIED, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    with_traceback = [e for e in entries if "RuntimeError: injected" in e.get("exc", "")]
    assert len(with_traceback) == 1 and with_traceback[0]["level"] == "critical"
    assert "Traceback" not in "\n".join(line for line in lines if not line.startswith("{"))
    wait_until(
        lambda: "thread edged-inference died" in (recorder.on(f"{BASE}/state")[-1].json()["error"] or ""),
        10,
        "the fault on state",
    )
    assert recorder.on(f"{BASE}/availability")[-1].payload == b"offline"
    assert outbox_depth(tmp_path / "outbox.sqlite3") == 0
