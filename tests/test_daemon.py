"""The daemon end to end: a real mosquitto, real models, the demo clip; commands, switches, signals, faults."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from edged.config import EdgedConfig
from edged.daemon import Daemon
from tests.helpers import scrape, scrape_families, scrape_value
from tests.mqtt.conftest import Recorder, assert_in_order_without_gaps, wait_until
from tests.mqtt_broker import Mosquitto, TcpRelay

ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = ROOT / "edged" / "demo" / "vtest_10s.mp4"
SCHEMAS = ROOT / "edged" / "mqtt" / "schemas"
DEVICE = "cam1"


def config_dict(zoo: Path, broker: Mosquitto, state: Path, **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "source": {"type": "file", "path": str(DEMO_CLIP), "realtime": False},
        "zoo": {"path": str(zoo), "device_class": "ci-test"},
        "governor": {"min_dwell_s": 0, "fps_target": 5, "fps_min": 1},
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker.port,
            "device_id": DEVICE,
            "outbox_path": str(state / "outbox.sqlite3"),
            "discovery_prefix": None,
        },
    }
    for name, value in sections.items():
        config[name] = {**config.get(name, {}), **value}
    return config


class Running:
    """A Daemon on a thread, stopped at the end of the test."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.daemon = Daemon(EdgedConfig.model_validate(config))
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.daemon.request_stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


@pytest.fixture
def broker(tmp_path: Path):
    with Mosquitto(tmp_path / "broker") as running:
        yield running


@pytest.fixture
def recorder(broker: Mosquitto):
    made = Recorder(broker, f"edged/{DEVICE}/#", client_id="test-recorder")
    yield made
    made.close()


def detections(recorder: Recorder) -> list[dict[str, Any]]:
    return [m.json() for m in recorder.on(f"edged/{DEVICE}/detections")]


def test_every_frame_of_the_video_arrives_in_the_contract(profiled_zoo, broker, recorder, tmp_path):
    run = Running(
        config_dict(profiled_zoo, broker, tmp_path, governor={"mode": "pinned", "pinned_variant": "fastestdet-352"})
    )
    run.daemon._finished.wait(60)
    run.stop()
    wait_until(lambda: len(detections(recorder)) >= 100, 20, "100 detections")
    messages = detections(recorder)
    assert [m["frame"] for m in messages] == list(range(100))
    for message in messages:
        jsonschema.validate(message, schema("detections"))
    assert {m["variant"] for m in messages} == {"fastestdet-352"}
    assert sum(len(m["objects"]) for m in messages) > 100, "vtest is full of pedestrians"
    states = [m.json() for m in recorder.on(f"edged/{DEVICE}/state")]
    for state in states:
        jsonschema.validate(state, schema("state"))
    assert [m.payload for m in recorder.on(f"edged/{DEVICE}/availability")] == [b"online", b"stopped"]


def test_variant_command_switches_without_dropping_a_frame(profiled_zoo, broker, recorder, tmp_path):
    source = {"realtime": True, "loop": True}
    run = Running(config_dict(profiled_zoo, broker, tmp_path, source=source, governor={"fps_target": 10}))
    wait_until(lambda: len(detections(recorder)) >= 10, 30, "the first detections")
    first = detections(recorder)[-1]["variant"]
    target = "fastestdet-352" if first != "fastestdet-352" else "nanodet-m-320"
    recorder.client.publish(f"edged/{DEVICE}/set/variant", target, qos=1)
    wait_until(lambda: detections(recorder)[-1]["variant"] == target, 20, f"frames from {target}")
    wait_until(lambda: sum(m["variant"] == target for m in detections(recorder)) >= 10, 20, "10 frames after it")
    run.stop()
    messages = detections(recorder)
    frames = [m["frame"] for m in messages]
    assert frames == list(range(frames[0], frames[0] + len(frames))), "no frame lost across the switch"
    (result,) = [m.json() for m in recorder.on(f"edged/{DEVICE}/set/variant/result")]
    assert result["ok"] is True and result["value"] == target
    state = recorder.on(f"edged/{DEVICE}/state")[-1].json()
    assert state["mode"] == "pinned" and state["variant"] == target


def test_simulated_battery_forces_a_switch_down_without_dropping_a_frame(profiled_zoo, broker, recorder, tmp_path):
    """Above 95 % there is no limit (nanodet, the most accurate); below, a 0.8 W band only fastestdet fits."""
    power = {"sources": [{"type": "simulated", "capacity_wh": 0.01, "idle_w": 0.5}], "sample_hz": 10}
    governor = {"battery_bands": [{"below_pct": 95, "budget_w": 0.8}], "fps_target": 5}
    run = Running(
        config_dict(
            profiled_zoo, broker, tmp_path, source={"realtime": True, "loop": True}, power=power, governor=governor
        )
    )
    wait_until(
        lambda: any(
            m.json()["to_variant"] == "fastestdet-352" for m in recorder.on(f"edged/{DEVICE}/governor/decision")
        ),
        30,
        "the switch down",
    )
    wait_until(lambda: detections(recorder)[-1]["variant"] == "fastestdet-352", 10, "frames after the switch")
    run.stop()
    variants = [m["variant"] for m in detections(recorder)]
    assert variants[0] == "nanodet-m-320" and variants[-1] == "fastestdet-352"
    frames = [m["frame"] for m in detections(recorder)]
    assert frames == list(range(frames[0], frames[0] + len(frames)))
    decision = next(
        m.json() for m in recorder.on(f"edged/{DEVICE}/governor/decision") if m.json()["to_variant"] == "fastestdet-352"
    )
    jsonschema.validate(decision, schema("decision"))
    assert (
        decision["inputs"]["budget_basis"] == "band"
        and "0.8" in decision["reason"] + decision["inputs"]["budget_detail"]
    )
    state = recorder.on(f"edged/{DEVICE}/state")[-1].json()
    assert state["power_quality"] == "simulated"


@pytest.mark.parametrize(
    ("name", "payload", "error"),
    [
        ("accuracy_floor", b"{not json", "invalid JSON"),
        ("accuracy_floor", b"1.7", "less than or equal to 1"),
        ("variant", b"yolo9000", "no variant 'yolo9000'"),
        ("fps", b"true", ""),
        ("teleport", b"1", "unknown command"),
        ("paused", b"x" * 100_000, "too large"),
    ],
)
def test_bad_commands_are_answered_and_change_nothing(profiled_zoo, broker, recorder, tmp_path, name, payload, error):
    run = Running(config_dict(profiled_zoo, broker, tmp_path, source={"realtime": True, "loop": True}))
    wait_until(lambda: len(recorder.on(f"edged/{DEVICE}/state")) >= 1, 20, "the first state")
    before = run.daemon.controls.policy, run.daemon.controls.needs, run.daemon.controls.paused
    recorder.client.publish(f"edged/{DEVICE}/set/{name}", payload, qos=1)
    (reply,) = recorder.wait_for(f"edged/{DEVICE}/set/{name}/result")
    result = reply.json()
    assert result["ok"] is False and error.lower() in result["error"].lower()
    time.sleep(0.3)
    assert (run.daemon.controls.policy, run.daemon.controls.needs, run.daemon.controls.paused) == before
    assert run.thread.is_alive()
    run.stop()


def test_a_frame_rate_slower_than_the_watchdog_allows_is_refused(profiled_zoo, broker, recorder, tmp_path, monkeypatch):
    """Under WatchdogSec=60 a frame every 100 s (set/fps 0.01) would starve the watchdog: systemd would restart it."""
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    run = Running(config_dict(profiled_zoo, broker, tmp_path, source={"realtime": True, "loop": True}))
    recorder.wait_for(f"edged/{DEVICE}/state")
    before = run.daemon.controls.policy
    recorder.client.publish(f"edged/{DEVICE}/set/fps", b"0.01", qos=1)
    recorder.client.publish(f"edged/{DEVICE}/set/fps", b"0.5", qos=1)
    first, second = (r.json() for r in recorder.wait_for(f"edged/{DEVICE}/set/fps/result", 2))
    assert first["ok"] is False and "WatchdogSec" in first["error"] and "0.0333 fps" in first["error"]
    assert second["ok"] is True and second["value"] == 0.5  # one frame per 30 s feeds it: accepted
    wait_until(lambda: run.daemon.controls.policy.fps_target == 0.5, 10, "fps 0.5 applied")
    assert before.fps_target != 0.5
    run.stop()


def test_a_floor_no_variant_reaches_is_applied_and_flagged_on_the_answer_and_the_state(
    profiled_zoo, broker, recorder, tmp_path
):
    """The README's own `accuracy_floor 0.3` was answered ok and nothing said the zoo could never meet it."""
    run = Running(config_dict(profiled_zoo, broker, tmp_path, source={"realtime": True, "loop": True}))
    recorder.wait_for(f"edged/{DEVICE}/state")
    recorder.client.publish(f"edged/{DEVICE}/set/accuracy_floor", b"0.25", qos=1)
    recorder.client.publish(f"edged/{DEVICE}/set/accuracy_floor", b"0.9", qos=1)
    reachable, unreachable = (r.json() for r in recorder.wait_for(f"edged/{DEVICE}/set/accuracy_floor/result", 2))
    assert reachable["ok"] is True and reachable["warning"] is None
    assert unreachable["ok"] is True and unreachable["value"] == 0.9
    assert "no variant reaches mAP50-95 0.9" in unreachable["warning"] and "nanodet-m-320" in unreachable["warning"]
    wait_until(lambda: recorder.on(f"edged/{DEVICE}/state")[-1].json()["accuracy_floor"] == 0.9, 10, "floor 0.9")
    assert recorder.on(f"edged/{DEVICE}/state")[-1].json()["accuracy_floor_unmet"] is True
    run.stop()


def test_floor_command_with_expiry_is_applied_and_reverts(profiled_zoo, broker, recorder, tmp_path):
    run = Running(config_dict(profiled_zoo, broker, tmp_path, source={"realtime": True, "loop": True}))
    recorder.wait_for(f"edged/{DEVICE}/state")
    recorder.client.publish(f"edged/{DEVICE}/set/accuracy_floor", json.dumps({"value": 0.25, "expires_s": 2}), qos=1)
    (reply,) = recorder.wait_for(f"edged/{DEVICE}/set/accuracy_floor/result")
    assert reply.json()["ok"] is True
    wait_until(lambda: recorder.on(f"edged/{DEVICE}/state")[-1].json()["accuracy_floor"] == 0.25, 10, "floor 0.25")
    assert recorder.on(f"edged/{DEVICE}/state")[-1].json()["accuracy_floor_expires_at"] is not None
    wait_until(lambda: run.daemon.controls.needs.floor_at(time.monotonic()) == 0.0, 10, "the floor to revert")
    run.stop()


# --- as a process: signals and kill -9 ------------------------------------------------------------------------


def start_process(config: dict[str, Any], path: Path) -> subprocess.Popen:
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "-c", str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_sigterm_publishes_stopped_and_kill_9_leaves_offline(profiled_zoo, broker, recorder, tmp_path):
    config = config_dict(profiled_zoo, broker, tmp_path, source={"realtime": True, "loop": True})
    process = start_process(config, tmp_path / "edged.yaml")
    try:
        wait_until(lambda: len(detections(recorder)) >= 5, 30, "detections from the process")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        wait_until(lambda: recorder.on(f"edged/{DEVICE}/availability")[-1].payload == b"stopped", 10, "stopped")
        process = start_process(config, tmp_path / "edged.yaml")
        wait_until(lambda: recorder.on(f"edged/{DEVICE}/availability")[-1].payload == b"online", 30, "online again")
        process.kill()
        process.wait(10)
        wait_until(lambda: recorder.on(f"edged/{DEVICE}/availability")[-1].payload == b"offline", 60, "last will")
    finally:
        process.kill()


def test_kill_9_and_restart_replays_the_outbox_and_numbers_on_without_a_gap(profiled_zoo, broker, tmp_path):
    """Frames stored while the broker was away survive a kill -9 and go out, in order, after a restart; the new run
    numbers on from the last frame the outbox committed, so the subscriber sees no gap across the crash."""
    recorder = Recorder(broker, f"edged/{DEVICE}/detections", client_id="late", persistent=True)
    config = config_dict(profiled_zoo, broker, tmp_path, source={"realtime": True, "loop": True})
    process = start_process(config, tmp_path / "edged.yaml")
    try:
        wait_until(lambda: len(recorder.messages) >= 5, 30, "first detections")
        broker.stop()
        seen_before_outage = max(m.json()["frame"] for m in recorder.messages)
        time.sleep(2.0)  # frames pile up in the outbox (5 fps)
        process.kill()
        process.wait(10)
        last_stored = last_committed_frame(Path(config["mqtt"]["outbox_path"]))
        assert last_stored >= seen_before_outage + 5, "frames were stored during the outage"
        broker.start()
        process = start_process(config, tmp_path / "edged.yaml")
        wait_until(lambda: max(m.json()["frame"] for m in recorder.messages) >= last_stored + 10, 60, "new run")
    finally:
        process.kill()
        recorder.close()
    frames = [m.json()["frame"] for m in recorder.messages]
    assert_in_order_without_gaps(frames, max(frames) + 1)  # the replayed frames, then the new run's from +1


def last_committed_frame(outbox: Path) -> int:
    import sqlite3

    with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT value FROM counters WHERE name = 'last_frame'").fetchone()[0])


def run_then_stop(config: dict[str, Any], path: Path, recorder: Recorder, frames: int) -> None:
    """Start the daemon as a process, let `frames` more detections arrive, SIGTERM it."""
    before = len(recorder.messages)
    process = start_process(config, path)
    try:
        wait_until(lambda: len(recorder.messages) >= before + frames, 30, f"{frames} detections")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()


@pytest.mark.parametrize("damage", [None, "\x00garbage\n", ""], ids=["intact", "garbage", "empty"])
def test_a_restart_numbers_on_exactly_even_when_the_counter_file_is_damaged(profiled_zoo, broker, tmp_path, damage):
    """No frame number repeats or is skipped across a clean stop and a restart: the outbox knows the last one."""
    recorder = Recorder(broker, f"edged/{DEVICE}/detections", client_id="restart", persistent=True)
    config = config_dict(profiled_zoo, broker, tmp_path, source={"realtime": True, "loop": True})
    try:
        run_then_stop(config, tmp_path / "edged.yaml", recorder, 8)
        if damage is not None:
            (tmp_path / "frame_counter").write_text(damage)
        run_then_stop(config, tmp_path / "edged.yaml", recorder, 8)
    finally:
        recorder.close()
    frames = [m.json()["frame"] for m in recorder.messages]
    assert len(set(frames)) >= 16
    assert_in_order_without_gaps(frames, max(frames) + 1)


def test_network_cut_mid_run_loses_no_frame(profiled_zoo, broker, recorder, tmp_path, caplog):
    """The daemon's connection is cut (broker alive) and restored: every frame arrives, in order."""
    caplog.set_level(logging.INFO, logger="edged.mqtt.link")
    relay = TcpRelay(broker.port)
    config = config_dict(profiled_zoo, broker, tmp_path, source={"realtime": True, "loop": True})
    config["mqtt"]["port"] = relay.port
    run = Running(config)
    link = run.daemon.link
    assert link is not None
    try:
        wait_until(lambda: len(detections(recorder)) >= 5, 30, "first detections")
        relay.hold()  # what the daemon sends now is never acknowledged
        time.sleep(0.5)
        relay.refuse()  # the connection drops; reconnects are turned away
        wait_until(lambda: not link.connected, 5, "the link to see its connection drop")
        time.sleep(1.5)
        assert not link.connected and link.outbox_depth > 0, "cut off: frames wait in the outbox"
        cut_at = run.daemon.frames.last_index
        relay.admit()
        wait_until(lambda: link.connected, 30, "the link to reconnect")
        count = run.daemon.frames.processed
        wait_until(lambda: run.daemon.frames.processed >= count + 10, 30, "more frames after the cut")
        run.stop()  # flushes the outbox
        expected = run.daemon.frames.last_index + 1
        wait_until(lambda: max(m["frame"] for m in detections(recorder)) >= expected - 1, 20, "every frame")
    finally:
        relay.close()
    frames = [m["frame"] for m in detections(recorder)]
    assert_in_order_without_gaps(frames, expected)
    assert cut_at in frames, "the frames made while cut off arrived"
    said = [r.getMessage() for r in caplog.records if r.name == "edged.mqtt.link"]
    assert sum("retrying with backoff" in m for m in said) == 1, said
    assert sum("connected again" in m for m in said) == 1, said


def test_sighup_with_an_invalid_config_keeps_the_running_one(profiled_zoo, broker, recorder, tmp_path):
    path = tmp_path / "edged.yaml"
    config = config_dict(
        profiled_zoo, broker, tmp_path, source={"realtime": True, "loop": True}, governor={"accuracy_floor": 0.0}
    )
    process = start_process(config, path)
    try:
        wait_until(lambda: len(detections(recorder)) >= 3, 30, "detections")
        path.write_text(path.read_text().replace("accuracy_floor: 0.0", "accuracy_floor: 7"))
        process.send_signal(signal.SIGHUP)
        wait_until(
            lambda: "reload rejected" in (recorder.on(f"edged/{DEVICE}/state")[-1].json()["error"] or ""),
            15,
            "the rejection on state",
        )
        count = len(detections(recorder))
        wait_until(lambda: len(detections(recorder)) > count + 5, 15, "frames still flowing")
        assert process.poll() is None
        path.write_text(yaml.safe_dump({**config, "governor": {**config["governor"], "accuracy_floor": 0.2}}))
        process.send_signal(signal.SIGHUP)
        wait_until(
            lambda: recorder.on(f"edged/{DEVICE}/state")[-1].json()["accuracy_floor"] == 0.2,
            15,
            "the valid reload applied",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()


def test_sighup_applies_the_live_sections_and_reports_the_ones_that_need_a_restart(
    profiled_zoo, broker, recorder, tmp_path
):
    """`source` and `mqtt` changed on disk are named on `state` as needing a restart (and keep running as they
    were); `governor` changed in the same file applies at once."""
    other_clip = tmp_path / "other-camera.mp4"
    other_clip.write_bytes(DEMO_CLIP.read_bytes())
    path = tmp_path / "edged.yaml"
    config = config_dict(
        profiled_zoo, broker, tmp_path, source={"realtime": True, "loop": True}, governor={"accuracy_floor": 0.0}
    )
    process = start_process(config, path)
    try:
        wait_until(lambda: len(detections(recorder)) >= 3, 30, "detections")
        changed = {
            **config,
            "source": {**config["source"], "path": str(other_clip)},
            "mqtt": {**config["mqtt"], "keepalive_s": 45},
            "governor": {**config["governor"], "accuracy_floor": 0.2},
        }
        path.write_text(yaml.safe_dump(changed))
        process.send_signal(signal.SIGHUP)
        wait_until(
            lambda: recorder.on(f"edged/{DEVICE}/state")[-1].json()["accuracy_floor"] == 0.2, 15, "the live change"
        )
        error = recorder.on(f"edged/{DEVICE}/state")[-1].json()["error"] or ""
        assert "changed sections need a restart to apply: source, mqtt" in error, error
        assert "governor" not in error
        count = len(detections(recorder))
        wait_until(lambda: len(detections(recorder)) > count + 3, 15, "frames after the reload")
        assert {m["source"] for m in detections(recorder)[count:]} == {DEMO_CLIP.name}, "the source needs a restart"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()


def test_embedded_demo_config_runs_the_shipped_zoo_with_a_labelled_simulated_battery(broker, recorder, tmp_path):
    from edged.demo import demo_config

    config = demo_config()
    assert config.zoo.path.resolve() == (ROOT / "model_zoo").resolve()
    mqtt = config.mqtt.model_copy(
        update={
            "port": broker.port,
            "device_id": DEVICE,
            "broker": "external",
            "outbox_path": tmp_path / "outbox.sqlite3",
        }
    )
    daemon = Daemon(config.model_copy(update={"mqtt": mqtt}))
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(detections(recorder)) >= 5, 30, "detections from the shipped zoo")
        wait_until(
            lambda: recorder.on(f"edged/{DEVICE}/state")[-1].json()["power_quality"] == "simulated",
            15,
            "the simulated battery on state",
        )
    finally:
        daemon.request_stop()
        thread.join(30)
    shipped = {v["id"] for v in yaml.safe_load((ROOT / "model_zoo" / "zoo.yaml").read_text())["variants"]}
    assert {m["variant"] for m in detections(recorder)} <= shipped


def test_the_metrics_endpoint_serves_the_running_pipeline(profiled_zoo, broker, recorder, tmp_path):
    relay = TcpRelay(broker.port)
    source = {"realtime": True, "loop": True}
    pinned = {"mode": "pinned", "pinned_variant": "fastestdet-352"}
    metrics = {"enabled": True, "port": 0}
    config = config_dict(profiled_zoo, broker, tmp_path, source=source, governor=pinned, metrics=metrics)
    config["mqtt"]["port"] = relay.port
    run = Running(config)
    try:
        wait_until(lambda: len(detections(recorder)) >= 10, 30, "detections")
        exporter, link = run.daemon.metrics, run.daemon.link
        assert exporter is not None and link is not None
        wait_until(lambda: scrape(exporter.port).get(("edged_frames_processed_total", ()), 0) >= 10, 10, "a scrape")
        # a known moment: the broker stops hearing the daemon (commands still reach it), frames pile up in the
        # outbox, then the pipeline is paused: the outbox depth and the frame count hold still
        relay.hold()
        wait_until(lambda: link.outbox_depth >= 5, 10, "frames waiting in the outbox")
        recorder.client.publish(f"edged/{DEVICE}/set/paused", "true", qos=1)
        wait_until(lambda: run.daemon.controls.paused, 10, "the pause")
        held = (-1, -1)  # frames, and the outbox (tracks still age while paused: their `end` events go in)
        while held != (run.daemon.frames.processed, link.outbox_depth):
            held = (run.daemon.frames.processed, link.outbox_depth)
            time.sleep(1.5)  # longer than a tick: the figures are at most a second old
        samples = scrape(exporter.port)
        processed, waiting = held
    finally:
        relay.close()
        run.stop()
    assert samples[("edged_variant_active", (("variant", "fastestdet-352"),))] == 1
    assert samples[("edged_variant_active", (("variant", "nanodet-m-320"),))] == 0
    assert samples[("edged_source_up", ())] == 1 and samples[("edged_fault", ())] == 0
    assert samples[("edged_frames_processed_total", ())] == processed
    assert waiting >= 5 and samples[("edged_outbox_depth", ())] == waiting
    assert samples[("edged_outbox_dropped_total", ())] == 0


def test_metrics_count_every_frame_in_a_latency_histogram_and_every_switch_and_the_inference_energy(
    profiled_zoo, broker, recorder, tmp_path
):
    source = {"realtime": True, "loop": True}
    pinned = {"mode": "pinned", "pinned_variant": "fastestdet-352"}
    power = {"sources": [{"type": "simulated", "capacity_wh": 5.0, "idle_w": 2.0}]}
    metrics = {"enabled": True, "port": 0}
    run = Running(
        config_dict(profiled_zoo, broker, tmp_path, source=source, governor=pinned, power=power, metrics=metrics)
    )
    try:
        wait_until(lambda: len(detections(recorder)) >= 10, 30, "detections")
        for target in ("nanodet-m-320", "fastestdet-352"):  # two switches, by command
            recorder.client.publish(f"edged/{DEVICE}/set/variant", target, qos=1)
            wait_until(lambda: detections(recorder)[-1]["variant"] == target, 20, f"frames from {target}")  # noqa: B023
        recorder.client.publish(f"edged/{DEVICE}/set/paused", "true", qos=1)
        wait_until(lambda: run.daemon.controls.paused, 10, "the pause")
        processed = -1
        while processed != run.daemon.frames.processed:
            processed = run.daemon.frames.processed
            time.sleep(1.5)  # longer than a tick: the snapshot has caught up with the last frame
        assert run.daemon.metrics is not None
        families = scrape_families(run.daemon.metrics.port)
    finally:
        run.stop()

    latency = families["edged_frame_latency_seconds"]
    assert latency.type == "histogram"
    buckets = [(s.labels["le"], s.value) for s in latency.samples if s.name.endswith("_bucket")]
    counts = [count for _, count in buckets]
    assert counts == sorted(counts) and buckets[-1][0] == "+Inf"
    totals = {s.name.removeprefix("edged_frame_latency_seconds"): s.value for s in latency.samples}
    assert totals["_count"] == counts[-1] == processed == scrape_value(families, "edged_frames_processed")
    assert 0 < totals["_sum"] / totals["_count"] < 0.5, "a mean detector time a 2-core machine can have"
    assert families["edged_variant_switches"].type == "counter"
    assert scrape_value(families, "edged_variant_switches") == 2
    energy = {s.labels["quality"]: s.value for s in families["edged_energy_joules"].samples}
    assert set(energy) == {"simulated"} and energy["simulated"] > 0
    assert scrape_value(families, "process_resident_memory_bytes") > 50e6


def test_a_metrics_port_in_use_is_a_fault_on_state_and_the_frames_keep_flowing(
    profiled_zoo, broker, recorder, tmp_path
):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics = {"enabled": True, "port": taken.getsockname()[1]}
        source = {"realtime": True, "loop": True}
        run = Running(config_dict(profiled_zoo, broker, tmp_path, source=source, metrics=metrics))
        try:
            wait_until(lambda: len(detections(recorder)) >= 10, 30, "detections despite the busy port")
        finally:
            run.stop()
    errors = [m.json()["error"] or "" for m in recorder.on(f"edged/{DEVICE}/state")]
    assert any(f"metrics: cannot listen on 127.0.0.1:{metrics['port']}" in e for e in errors)
    assert run.daemon.metrics is None
