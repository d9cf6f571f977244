"""Fault injection against the real daemon: a real mosquitto, real models, real processes where it matters.

Each fault: the daemon keeps running (or restarts cleanly), says what happened, and nothing that entered the
outbox is lost before the broker acknowledged it. What a broker loses after acknowledging (mosquitto killed with
-9, or 2.0.11 acknowledging during its own SIGTERM shutdown) is the broker's to lose: around a broker restart the
assertions are survival, reconnection and order, not completeness; completeness is asserted where only the daemon's
side is cut (TcpRelay) or the daemon itself dies.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import yaml

import edged.daemon
from edged.config import EdgedConfig, MqttConfig
from edged.daemon import Daemon
from edged.errors import ModelError
from edged.mqtt.link import MqttLink
from edged.power.sources import SourceContext
from edged.zoo.manifest import load_zoo
from tests.conftest import skip_or_fail
from tests.helpers import NotifySocket
from tests.mqtt.conftest import Recorder, assert_in_order_without_gaps, detection, wait_until
from tests.mqtt_broker import Mosquitto, TcpRelay, free_port
from tests.power.sysfs import FakeSysfs

ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = ROOT / "edged" / "demo" / "vtest_10s.mp4"
DEVICE = "cam1"
BASE = f"edged/{DEVICE}"
LIVE_CLIP = {"realtime": True, "loop": True}  # the demo clip at its own 10 fps, as a camera delivers
FLAT_OUT = {"realtime": False, "loop": True}  # as fast as inference goes: heavy publishing


# --- the daemon, in this process or as its own ----------------------------------------------------------------


def config_dict(zoo: Path, port: int, state: Path, **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "source": {"type": "file", "path": str(DEMO_CLIP), **LIVE_CLIP},
        "zoo": {"path": str(zoo), "device_class": "ci-test"},
        "governor": {"min_dwell_s": 0, "fps_target": 5, "fps_min": 1},
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "device_id": DEVICE,
            "keepalive_s": 5,
            "outbox_path": str(state / "outbox.sqlite3"),
            "discovery_prefix": None,
        },
    }
    for name, value in sections.items():
        config[name] = {**config.get(name, {}), **value}
    return config


class InProcess:
    """A Daemon on a thread of this process (its internals stay inspectable)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.daemon = Daemon(EdgedConfig.model_validate(config))
        self.thread = threading.Thread(target=self.daemon.run, name="test-daemon", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop it; and stop its parts too, in case a fault killed run() before its own shutdown (each stop is
        idempotent): a model session left running aborts the interpreter at exit."""
        self.daemon.request_stop()
        self.thread.join(30)
        daemon = self.daemon
        daemon.producer.stop()
        daemon.queue.close()
        daemon.worker.stop()
        daemon.power.stop()
        if daemon.link is not None:
            daemon.link.stop(clean=False, timeout_s=1.0)


class Daemons:
    """Starts daemons in-process or as `python -m edged run` processes; stops every one at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.in_process: list[InProcess] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, config: dict[str, Any]) -> InProcess:
        run = InProcess(config)
        self.in_process.append(run)
        return run

    def spawn(self, config: dict[str, Any]) -> subprocess.Popen[bytes]:
        """The daemon as its own process; JSON log lines go to `edged.log` in the work directory."""
        path = self.workdir / "edged.yaml"
        path.write_text(yaml.safe_dump({**config, "logging": {"format": "json"}}))
        with open(self.workdir / "edged.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "edged", "run", "-c", str(path)],
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def log(self) -> list[dict[str, Any]]:
        lines = (self.workdir / "edged.log").read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop_all(self) -> None:
        for run in self.in_process:
            run.stop()
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    made = Daemons(tmp_path)
    yield made
    made.stop_all()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as running:
        yield running


@pytest.fixture
def recorder(broker: Mosquitto) -> Iterator[Recorder]:
    made = Recorder(broker, f"{BASE}/#", client_id="fault-recorder")
    yield made
    made.close()


@pytest.fixture
def relay(broker: Mosquitto) -> Iterator[TcpRelay]:
    made = TcpRelay(broker.port)
    yield made
    made.close()


def frames_seen(recorder: Recorder) -> list[int]:
    return [m.json()["frame"] for m in recorder.on(f"{BASE}/detections")]


def variants_seen(recorder: Recorder) -> set[str]:
    return {m.json()["variant"] for m in recorder.on(f"{BASE}/detections")}


def newest_frame(recorder: Recorder) -> int:
    return max(frames_seen(recorder), default=-1)


def wait_for_frames_after(recorder: Recorder, frame: int, count: int = 3, timeout_s: float = 30.0) -> None:
    wait_until(lambda: newest_frame(recorder) >= frame + count, timeout_s, f"{count} new frames after {frame}")


def state_now(recorder: Recorder) -> dict[str, Any]:
    """The daemon's state right now: a harmless valid command (set/paused false) makes it publish one."""
    before = len(recorder.on(f"{BASE}/state"))
    recorder.client.publish(f"{BASE}/set/paused", "false", qos=1)
    wait_until(lambda: len(recorder.on(f"{BASE}/state")) > before, 10, "a fresh state")
    return recorder.on(f"{BASE}/state")[-1].json()


def assert_first_seen_in_order(frames: list[int]) -> None:
    """Gaps allowed (a broker that dies loses what it acknowledged) but a frame never arrives late: any frame seen
    for the first time is newer than every frame before it; repeats are re-sends."""
    seen: set[int] = set()
    newest = -1
    for frame in frames:
        if frame not in seen:
            assert frame > newest, f"frame {frame} arrived for the first time after {newest}"
            seen.add(frame)
            newest = frame


def outbox_depth(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])


def outbox_frames(path: Path) -> list[int]:
    """The detections waiting in an outbox file (read while its daemon is dead)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT payload FROM messages WHERE topic LIKE '%/detections' ORDER BY id").fetchall()
    return [json.loads(payload)["frame"] for (payload,) in rows]


# --- the MQTT side: network cuts, broker restarts, kill -9 ------------------------------------------------------


def test_repeated_network_cuts_lose_no_frame_and_each_outage_is_logged_once(
    profiled_zoo, broker, recorder, relay, daemons, tmp_path, caplog
):
    config = config_dict(profiled_zoo, relay.port, tmp_path)
    caplog.set_level(logging.INFO, logger="edged.mqtt.link")
    run = daemons.start(config)
    wait_until(lambda: len(frames_seen(recorder)) >= 5, 30, "first detections")
    for _ in range(3):
        relay.hold()  # what the daemon sends now is never acknowledged: it stays in the outbox
        time.sleep(0.4)
        relay.refuse()  # the connection drops; reconnects are turned away
        time.sleep(1.2)
        assert run.daemon.link is not None and run.daemon.link.outbox_depth > 0, "frames wait in the outbox"
        cut_at = run.daemon.frames.last_index
        relay.admit()
        wait_for_frames_after(recorder, cut_at)
    run.stop()  # flushes the outbox
    expected = run.daemon.frames.last_index + 1
    wait_until(lambda: newest_frame(recorder) >= expected - 1, 20, "every frame")
    assert_in_order_without_gaps(frames_seen(recorder), expected)
    link_log = [r.getMessage() for r in caplog.records if r.name == "edged.mqtt.link"]
    assert sum("retrying with backoff" in m for m in link_log) == 3, link_log
    assert sum("connected again" in m for m in link_log) == 3, link_log


def test_daemon_survives_broker_kills_and_restarts_and_keeps_publishing_in_order(profiled_zoo, tmp_path, daemons):
    with Mosquitto(tmp_path / "broker", persistence=True) as broker:
        recorder = Recorder(broker, f"{BASE}/#", client_id="fault-durable", persistent=True)
        try:
            process = daemons.spawn(config_dict(profiled_zoo, broker.port, tmp_path))
            wait_until(lambda: len(frames_seen(recorder)) >= 5, 30, "first detections")
            for stop in (broker.kill, broker.stop, broker.kill):  # SIGKILL, SIGTERM, SIGKILL
                stop()
                time.sleep(0.5)
                before = newest_frame(recorder)
                broker.start()
                wait_for_frames_after(recorder, before)
                assert process.poll() is None, "the daemon survives its broker"
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
            wait_until(lambda: recorder.on(f"{BASE}/availability")[-1].payload == b"stopped", 10, "stopped")
        finally:
            recorder.close()
    assert_first_seen_in_order(frames_seen(recorder))
    assert outbox_frames(tmp_path / "outbox.sqlite3") == [], "a clean stop leaves nothing unacknowledged"
    messages = [line["msg"] for line in daemons.log() if line["logger"] == "edged.mqtt.link"]
    assert sum("retrying with backoff" in m for m in messages) == 3, "one warning per outage"
    assert sum("connected again" in m for m in messages) == 3


def test_kill_9_during_heavy_publishing_then_restart_delivers_every_stored_frame(
    profiled_zoo, broker, relay, daemons, tmp_path
):
    recorder = Recorder(broker, f"{BASE}/detections", client_id="fault-replay", persistent=True)
    try:
        governor = {"mode": "pinned", "pinned_variant": "fastestdet-352"}
        config = config_dict(profiled_zoo, relay.port, tmp_path, source=FLAT_OUT, governor=governor)
        process = daemons.spawn(config)
        wait_until(lambda: len(recorder.messages) >= 20, 30, "heavy publishing")
        relay.hold()  # acknowledgements stop: what is sent now is in flight when the daemon dies
        time.sleep(1.5)
        process.kill()
        process.wait(10)
        stored = outbox_frames(tmp_path / "outbox.sqlite3")
        waiting = outbox_depth(tmp_path / "outbox.sqlite3")
        assert len(stored) >= 20, f"only {len(stored)} frames were waiting in the outbox"
        assert stored == list(range(stored[0], stored[-1] + 1)), "the outbox holds an unbroken run of frames"
        second_base = stored[-1] + 1  # the restarted daemon numbers on from the last frame the outbox committed
        relay.refuse()
        relay.admit()
        process = daemons.spawn(config)
        wait_until(lambda: newest_frame(recorder) >= second_base, 60, "replayed and new detections")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        recorder.close()
    frames = [m.json()["frame"] for m in recorder.messages]
    assert_in_order_without_gaps(frames, max(frames) + 1)  # every stored frame, then the new run's: no gap
    said = [line["msg"] for line in daemons.log() if "waiting in the outbox" in line["msg"]]
    assert len(said) == 2 and f"; {waiting} message(s) waiting" in said[1], "the restart says what it replays"


# --- the frame source ---------------------------------------------------------------------------------------------


class TrickleCamera:
    """An MJPEG AVI served over HTTP at about a camera's pace, that can vanish (connections cut, port closed) and
    return on the same port, or hang: stop sending mid-stream with the connection open, as a wedged camera does."""

    def __init__(self, workdir: Path, frames: int = 500, chunk: int = 16384, pause_s: float = 0.05) -> None:
        self.clip = self._make_clip(workdir / "camera.avi", frames)
        self.chunk = chunk
        self.pause_s = pause_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/camera.avi"
        self.hang_at: int | None = None  # the byte offset where the next stream stops until thaw()
        self.hung = threading.Event()
        self._thawed = threading.Event()
        self._gone = threading.Event()
        self._server: http.server.ThreadingHTTPServer | None = None
        self.restore()

    @staticmethod
    def _make_clip(path: Path, frames: int) -> bytes:
        capture = cv2.VideoCapture(str(DEMO_CLIP))
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (320, 240))
        for _ in range(frames):
            ok, image = capture.read()
            if not ok:
                capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = capture.read()
            writer.write(cv2.resize(image, (320, 240)))
        writer.release()
        capture.release()
        return path.read_bytes()

    def restore(self) -> None:
        self._gone.clear()
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "video/x-msvideo")
                self.send_header("Content-Length", str(len(camera.clip)))
                self.end_headers()
                for start in range(0, len(camera.clip), camera.chunk):
                    if camera.hang_at is not None and start >= camera.hang_at:
                        camera.hung.set()
                        camera._thawed.wait()
                    if camera._gone.is_set():
                        return
                    self.wfile.write(camera.clip[start : start + camera.chunk])
                    time.sleep(camera.pause_s)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def hang_after(self, fraction: float) -> None:
        """The stream stops after `fraction` of the clip (the connection stays open) until thaw()."""
        self.hang_at = int(len(self.clip) * fraction)
        self.hung.clear()
        self._thawed.clear()

    def thaw(self) -> None:
        self.hang_at = None
        self._thawed.set()

    def vanish(self) -> None:
        self._gone.set()
        self._thawed.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def camera(tmp_path: Path) -> Iterator[TrickleCamera]:
    made = TrickleCamera(tmp_path)
    yield made
    made.vanish()


def stream_source(camera: TrickleCamera) -> dict[str, Any]:
    return {"type": "stream", "url": camera.url, "reconnect_initial_s": 0.2, "reconnect_max_s": 0.5}


def test_source_that_vanishes_is_reported_and_detections_resume_when_it_returns(
    profiled_zoo, broker, recorder, daemons, camera, tmp_path
):
    config = config_dict(profiled_zoo, broker.port, tmp_path)
    config["source"] = stream_source(camera)
    run = daemons.start(config)
    wait_until(lambda: len(frames_seen(recorder)) >= 5, 30, "detections from the camera")
    camera.vanish()
    wait_until(lambda: "retrying" in (state_now(recorder)["error"] or ""), 15, "the outage on state")
    state = recorder.on(f"{BASE}/state")[-1].json()
    assert state["source_status"] == "reconnecting" and "cannot open" in state["error"]
    before = newest_frame(recorder)
    camera.restore()
    wait_for_frames_after(recorder, before, timeout_s=30)
    wait_until(lambda: state_now(recorder)["source_status"] == "ok", 15, "the source back on state")
    assert recorder.on(f"{BASE}/state")[-1].json()["error"] is None
    assert run.thread.is_alive()
    assert_first_seen_in_order(frames_seen(recorder))


def test_a_vanished_source_is_published_on_state_without_being_asked(
    profiled_zoo, broker, recorder, daemons, camera, tmp_path
):
    config = config_dict(profiled_zoo, broker.port, tmp_path)
    config["source"] = stream_source(camera)
    daemons.start(config)
    wait_until(lambda: len(frames_seen(recorder)) >= 5, 30, "detections from the camera")
    published = len(recorder.on(f"{BASE}/state"))
    camera.vanish()
    wait_until(
        lambda: any(m.json()["source_status"] == "reconnecting" for m in recorder.on(f"{BASE}/state")[published:]),
        5,
        "the outage on state, unasked",
    )


def frames_settle(run: InProcess, notify: NotifySocket | None = None, quiet_s: float = 1.5) -> int:
    """Wait until no frame has been processed for `quiet_s` (reading sd_notify messages meanwhile); the count."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        before = run.daemon.frames.processed
        if notify is not None:
            notify.receive_for(quiet_s)
        else:
            time.sleep(quiet_s)
        if run.daemon.frames.processed == before:
            return before
    raise AssertionError("frames kept moving for 60 s: the camera never hung")


def test_the_watchdog_is_starved_while_frames_stall_and_fed_again_when_they_move(
    profiled_zoo, broker, recorder, daemons, tmp_path, monkeypatch
):
    """WATCHDOG=1 says frames are moving. A camera that hangs with its connection open (the source still says
    streaming, so no reconnect excuses the silence) must starve systemd's watchdog, so that systemd restarts the
    daemon; the pings come back with the frames."""
    notify = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # WatchdogSec=2: a ping every second while frames move
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    camera = TrickleCamera(tmp_path, frames=200)
    camera.hang_after(0.4)
    try:
        config = config_dict(profiled_zoo, broker.port, tmp_path)
        config["source"] = stream_source(camera)
        run = daemons.start(config)
        notify.wait_for(lambda m: m.get("READY") == "1", 60, "READY=1")
        notify.wait_for(lambda m: m.get("WATCHDOG") == "1", 30, "WATCHDOG=1 while frames move")
        assert camera.hung.wait(60), "the camera never reached its hang"
        stalled_at = frames_settle(run, notify)
        during_stall = notify.receive_for(4.0)
        assert run.daemon.frames.processed == stalled_at, "no frame moved during the stall"
        assert state_now(recorder)["source_status"] == "ok", "the source still says streaming"
        assert [m for m in during_stall if m.get("WATCHDOG") == "1"] == [], "pinged although no frame moved"
        camera.thaw()
        notify.wait_for(lambda m: m.get("WATCHDOG") == "1", 20, "WATCHDOG=1 once frames move again",
                        after=len(notify.messages) - 1)  # fmt: skip
        assert run.daemon.frames.processed > stalled_at
    finally:
        camera.vanish()
        notify.close()


def test_each_frame_the_full_queue_dropped_is_one_number_missing_downstream_and_counted_in_stats(
    profiled_zoo, broker, recorder, daemons, tmp_path
):
    """A camera bursting faster than inference: the queue drops its oldest frames. Numbers are given at enqueue,
    so a subscriber sees exactly the dropped frames missing, and `stats.frames_dropped` counts exactly those."""
    camera = TrickleCamera(tmp_path, frames=150, chunk=65536, pause_s=0.0)
    camera.hang_after(0.8)  # then the stream goes quiet (open): every queued frame is processed or dropped
    try:
        governor = {"mode": "pinned", "pinned_variant": "nanodet-m-320", "fps_target": 1000}
        config = config_dict(profiled_zoo, broker.port, tmp_path, governor=governor)
        config["source"] = stream_source(camera)
        run = daemons.start(config)
        assert camera.hung.wait(60), "the camera never reached its hang"
        processed = frames_settle(run)
        published = len(recorder.on(f"{BASE}/stats"))
        wait_until(lambda: len(recorder.on(f"{BASE}/stats")) > published, 15, "stats after the burst")
        stats = recorder.on(f"{BASE}/stats")[-1].json()
        assert run.daemon.frames.processed == processed, "no frame moved since"
        wait_until(lambda: len(set(frames_seen(recorder))) == processed, 15, "every processed frame")
    finally:
        camera.vanish()
    seen = set(frames_seen(recorder))
    base = run.daemon.frame_counter.base
    missing = sorted(set(range(base, max(seen) + 1)) - seen)
    assert stats["frames_processed"] == processed == len(seen)
    assert stats["frames_dropped"] > 0, "the burst outran inference: frames were dropped"
    assert len(missing) == stats["frames_dropped"], f"dropped {stats['frames_dropped']}, missing {missing}"


# --- model files --------------------------------------------------------------------------------------------------


def zoo_with_own_copy(profiled_zoo: Path, workdir: Path, variant: str) -> tuple[Path, Path]:
    """The profiled zoo with `variant`'s model file copied under `workdir`, to be damaged there."""
    manifest = yaml.safe_load((profiled_zoo / "zoo.yaml").read_text())
    entry = next(v for v in manifest["variants"] if v["id"] == variant)
    copy = workdir / "models" / Path(entry["file"]).name
    copy.parent.mkdir(parents=True)
    shutil.copy(entry["file"], copy)
    entry["file"] = str(copy)
    zoo = workdir / "zoo"
    zoo.mkdir()
    (zoo / "zoo.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return zoo, copy


def test_model_corrupted_on_disk_is_quarantined_and_frames_keep_flowing(
    profiled_zoo, broker, recorder, daemons, tmp_path
):
    zoo, model = zoo_with_own_copy(profiled_zoo, tmp_path, "nanodet-m-320")
    governor = {"mode": "pinned", "pinned_variant": "fastestdet-352"}
    run = daemons.start(config_dict(zoo, broker.port, tmp_path, governor=governor))
    wait_until(lambda: len(frames_seen(recorder)) >= 5, 30, "first detections")
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # truncated on disk, after the zoo loaded
    recorder.client.publish(f"{BASE}/set/variant", "nanodet-m-320", qos=1)
    (reply,) = recorder.wait_for(f"{BASE}/set/variant/result")
    assert reply.json()["ok"] is True, "accepted: the damage shows only when the file is loaded"
    wait_until(lambda: "nanodet-m-320" in state_now(recorder)["quarantined"], 20, "the quarantine on state")
    reason = recorder.on(f"{BASE}/state")[-1].json()["quarantined"]["nanodet-m-320"]
    assert "failed to load" in reason and "changed on disk" in reason and model.name in reason
    wait_for_frames_after(recorder, newest_frame(recorder))
    recorder.client.publish(f"{BASE}/set/variant", "nanodet-m-320", qos=1)
    recorder.wait_for(f"{BASE}/set/variant/result", count=2)
    again = recorder.on(f"{BASE}/set/variant/result")[-1].json()
    assert again["ok"] is False and "quarantined" in again["error"]
    run.stop()
    expected = run.daemon.frames.last_index + 1
    wait_until(lambda: newest_frame(recorder) >= expected - 1, 20, "every frame")
    assert_in_order_without_gaps(frames_seen(recorder), expected)
    assert variants_seen(recorder) == {"fastestdet-352"}


def test_a_model_whose_weights_changed_on_disk_is_refused_when_opened(profiled_zoo, tmp_path):
    zoo_dir, model = zoo_with_own_copy(profiled_zoo, tmp_path, "fastestdet-352")
    zoo = load_zoo(zoo_dir)
    damaged = bytearray(model.read_bytes())
    middle = int(len(damaged) * 0.6)  # inside the weights: the protobuf still parses
    damaged[middle : middle + 256] = bytes(b ^ 0x5A for b in damaged[middle : middle + 256])
    model.write_bytes(bytes(damaged))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    assert session.run(None, {session.get_inputs()[0].name: np.zeros((1, 3, 352, 352), np.float32)})
    with pytest.raises(ModelError, match="sha256"):
        zoo.open_detector("fastestdet-352")


# --- power --------------------------------------------------------------------------------------------------------

BATTERY = {
    "type": "Battery",
    "status": "Discharging",
    "present": 1,
    "voltage_now": 11923000,
    "power_now": 7231000,
    "energy_full": 21520000,
    "energy_now": 17880000,
    "capacity": 83,
}


@pytest.fixture
def fake_battery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSysfs:
    """A laptop battery in a fake sysfs tree that the daemon reads. The daemon has no setting for the sysfs root
    (`edged power probe --sysfs-root` has), so its SourceContext is pointed there."""
    fs = FakeSysfs(tmp_path / "sys")
    fs.device("LNXSYSTM:00/PNP0C0A:00/power_supply/BAT0", "power_supply", "BAT0", BATTERY)
    monkeypatch.setattr(edged.daemon, "SourceContext", lambda: SourceContext(sysfs_root=fs.root))
    return fs


def remove_battery(fs: FakeSysfs) -> None:
    shutil.rmtree(fs.path("power_supply", "BAT0").resolve())
    fs.path("power_supply", "BAT0").unlink()


def power_config() -> dict[str, Any]:
    return {"sources": [{"type": "power_supply", "name": "BAT0"}], "sample_hz": 10, "retry_s": 0.3}


def test_power_source_that_disappears_leaves_the_daemon_running_and_comes_back(
    profiled_zoo, broker, recorder, daemons, fake_battery, tmp_path
):
    run = daemons.start(config_dict(profiled_zoo, broker.port, tmp_path, power=power_config()))
    wait_until(lambda: state_now(recorder)["battery_pct"] == 83.0, 20, "the battery on state")
    assert recorder.on(f"{BASE}/state")[-1].json()["power_quality"] == "measured"
    remove_battery(fake_battery)
    wait_until(lambda: state_now(recorder)["battery_pct"] is None, 20, "the battery gone from state")
    wait_for_frames_after(recorder, newest_frame(recorder))
    fake_battery.device("LNXSYSTM:00/PNP0C0A:00/power_supply/BAT0", "power_supply", "BAT0", BATTERY)
    wait_until(lambda: state_now(recorder)["battery_pct"] == 83.0, 20, "the battery back on state")
    assert run.thread.is_alive()


def test_power_source_failure_is_explained_on_state(profiled_zoo, broker, recorder, daemons, fake_battery, tmp_path):
    daemons.start(config_dict(profiled_zoo, broker.port, tmp_path, power=power_config()))
    wait_until(lambda: state_now(recorder)["battery_pct"] == 83.0, 20, "the battery on state")
    remove_battery(fake_battery)
    wait_until(lambda: state_now(recorder)["battery_pct"] is None, 20, "the battery gone from state")
    assert "power_supply:BAT0" in (recorder.on(f"{BASE}/state")[-1].json()["error"] or "")


def test_a_gauge_reading_above_100_percent_does_not_stop_the_daemon(
    profiled_zoo, broker, recorder, daemons, fake_battery, tmp_path
):
    """An uncalibrated gauge's 101 % is clamped to 100 %: the reading is kept (power and energy with it), not lost."""
    fake_battery.write("power_supply", "BAT0", "capacity", 101)
    run = daemons.start(config_dict(profiled_zoo, broker.port, tmp_path, power=power_config()))
    wait_until(lambda: state_now(recorder)["battery_pct"] is not None, 20, "the battery on state")
    state = recorder.on(f"{BASE}/state")[-1].json()
    assert state["battery_pct"] == 100.0 and state["power_quality"] == "measured"
    wait_for_frames_after(recorder, newest_frame(recorder))
    assert run.thread.is_alive(), "the daemon survives a gauge that reads 101 %"


# --- a full disk under the outbox ---------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of its own (mounting needs root): skipped where mounting is not allowed, except under
    EDGED_REQUIRE_SHARED=1 (CI runs as root), where that fails."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        skip_or_fail(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_up(disk: Path, leave_bytes: int) -> Path:
    """A file that takes all but about `leave_bytes` of the disk."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        while (stats := os.statvfs(disk)).f_bavail * stats.f_frsize > leave_bytes:
            try:
                f.write(b"\0" * min(65536, max(4096, stats.f_bavail * stats.f_frsize - leave_bytes)))
            except OSError:
                break  # no space left
    return filler


def run_until_the_outbox_is_full(run: InProcess, timeout_s: float = 30.0) -> int:
    """Wait until the outbox stops growing (appends fail); return its depth."""
    assert run.daemon.link is not None
    deadline, depth, since = time.monotonic() + timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        if run.daemon.link.outbox_depth != depth:
            depth, since = run.daemon.link.outbox_depth, time.monotonic()
        elif time.monotonic() - since > 1.5 and depth > 0:
            return depth
        time.sleep(0.05)
    raise AssertionError(f"the outbox kept growing ({depth}) for {timeout_s} s: the disk never filled")


def full_disk_config(profiled_zoo: Path, relay: TcpRelay, disk: Path, tmp_path: Path) -> dict[str, Any]:
    governor = {"mode": "pinned", "pinned_variant": "fastestdet-352"}
    config = config_dict(profiled_zoo, relay.port, tmp_path, source=FLAT_OUT, governor=governor)
    config["mqtt"]["outbox_path"] = str(disk / "outbox.sqlite3")
    return config


def test_detections_stored_before_the_disk_filled_are_all_delivered(
    profiled_zoo, broker, recorder, relay, daemons, small_disk, tmp_path
):
    filler = fill_up(small_disk, leave_bytes=400_000)
    relay.refuse()  # the broker is away: detections pile up in the outbox until the disk is full
    run = daemons.start(full_disk_config(profiled_zoo, relay, small_disk, tmp_path))
    run_until_the_outbox_is_full(run)
    stored = outbox_frames(small_disk / "outbox.sqlite3")
    assert len(stored) >= 10
    filler.unlink()
    relay.admit()
    wait_until(lambda: newest_frame(recorder) >= stored[-1], 30, "the stored detections")
    assert run.thread.is_alive()
    assert_in_order_without_gaps([f for f in frames_seen(recorder) if f <= stored[-1]], stored[-1] + 1)


def test_a_full_disk_is_reported_on_state_and_inference_continues(
    profiled_zoo, broker, recorder, relay, daemons, small_disk, tmp_path
):
    fill_up(small_disk, leave_bytes=400_000)
    relay.refuse()
    run = daemons.start(full_disk_config(profiled_zoo, relay, small_disk, tmp_path))
    run_until_the_outbox_is_full(run)
    processed = run.daemon.frames.processed
    time.sleep(1.0)
    assert run.daemon.frames.processed > processed, "inference goes on while the outbox cannot store"
    relay.admit()
    wait_until(lambda: "disk" in (state_now(recorder)["error"] or ""), 20, "the full disk on state")


def test_the_link_keeps_sending_after_acknowledgements_met_a_full_disk(broker, small_disk, tmp_path):
    recorder = Recorder(broker, f"{BASE}/detections", client_id="fault-disk-link")
    config = MqttConfig(host=broker.host, port=broker.port, device_id=DEVICE, outbox_path=small_disk / "outbox.sqlite3")
    link = MqttLink(config, on_command=lambda _command: None)
    try:
        for frame in range(20):
            link.publish_detections(detection(frame))  # stored; the link is not started yet
        filler = fill_up(small_disk, leave_bytes=0)
        link.start()  # sends; deleting what the broker acknowledges meets the full disk
        time.sleep(2.0)
        filler.unlink()
        for frame in range(20, 30):
            link.publish_detections(detection(frame))
        wait_until(lambda: len({m.json()["frame"] for m in recorder.messages}) == 30, 10, "all 30 once space was back")
    finally:
        link.stop(timeout_s=1.0)
        recorder.close()


# --- a long run -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_soak_keeps_rss_flat_and_loses_no_frame(profiled_zoo, tmp_path):
    """The short version of `make bench`'s soak: 4 minutes (90 s of them warm-up) switching through the zoo flat out."""
    from bench.bench_memory import GROWTH_TARGET_PCT, run_soak

    result = run_soak(profiled_zoo, minutes=4.0, switch_every_s=3.0, workdir=tmp_path, progress=False)
    assert result.exit_code == 0
    assert result.commands_refused == 0
    assert result.frames_lost == 0, result.gaps[:5]
    assert result.growth_pct < GROWTH_TARGET_PCT, result.cycle_rss
