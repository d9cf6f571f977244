"""Tracking end to end: the shipped zoo on the demo clip through the daemon and a real mosquitto. People walking
through keep their ids, `new` and `end` events arrive, retained counts match the objects, ids survive a switch."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

import jsonschema

from tests import test_daemon
from tests.helpers import iou
from tests.mqtt.conftest import Recorder, wait_until
from tests.test_daemon import DEVICE, Running, config_dict, detections, schema

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_ZOO = ROOT / "model_zoo"
BASE = f"edged/{DEVICE}"

broker = test_daemon.broker
recorder = test_daemon.recorder


def run_clip(broker, tmp_path: Path, recorder: Recorder, **sections: Any) -> list[dict[str, Any]]:
    """The demo clip once through the shipped zoo's yolox-ft-416; every detection message, once all arrived."""
    config = config_dict(SHIPPED_ZOO, broker, tmp_path, **sections)
    config["zoo"]["device_class"] = "intel-xeon-2core"
    config["governor"] = {**config["governor"], "mode": "pinned", "pinned_variant": "yolox-ft-416"}
    run = Running(config)
    assert run.daemon._finished.wait(90), "the clip did not end"
    run.stop()
    stopped = lambda: [m.payload for m in recorder.on(f"{BASE}/availability")][-1:] == [b"stopped"]  # noqa: E731
    wait_until(stopped, 20, "`stopped`, published once the outbox is flushed")
    return detections(recorder)


def live_on_yolox_416(broker, tmp_path: Path, **sections: Any) -> dict[str, Any]:
    """The demo clip looping at its own 10 fps, as a camera delivers it, through the shipped zoo's yolox-ft-416."""
    config = config_dict(SHIPPED_ZOO, broker, tmp_path, source={"realtime": True, "loop": True}, **sections)
    config["zoo"]["device_class"] = "intel-xeon-2core"
    config["governor"] = {**config["governor"], "mode": "pinned", "pinned_variant": "yolox-ft-416"}
    return config


def events(recorder: Recorder) -> list[dict[str, Any]]:
    return [m.json() for m in recorder.on(f"{BASE}/events")]


def counts(recorder: Recorder) -> list[dict[str, Any]]:
    return [m.json() for m in recorder.messages if m.topic.startswith(f"{BASE}/objects/")]


WALKING = 0.05  # of the image a frame at 10 fps: people walk about 0.01, their boxes jitter up to 0.03
CLIP_FPS = 10


def center(obj: dict[str, Any]) -> tuple[float, float]:
    x1, y1, x2, y2 = obj["box"]
    return (x1 + x2) / 2, (y1 + y2) / 2


def tracks_of(frames: list[dict[str, Any]]) -> dict[int, list[tuple[int, dict[str, Any]]]]:
    """track id -> [(frame, object)] in frame order."""
    tracks: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for message in frames:
        for obj in message["objects"]:
            tracks[obj["track_id"]].append((message["frame"], obj))
    return tracks


def test_people_walking_through_the_demo_clip_keep_their_ids_with_new_and_end_events(broker, recorder, tmp_path):
    source = {"realtime": True}  # the clip's own 10 fps, as a camera delivers it
    frames = run_clip(broker, tmp_path, recorder, source=source, governor={"fps_target": 10})
    assert all(isinstance(o["track_id"], int) for m in frames for o in m["objects"]), "every object has an id"
    tracks = tracks_of(frames)
    people = {i: seen for i, seen in tracks.items() if seen[0][1]["label"] == "person"}
    walking = [seen for seen in people.values() if len(seen) >= 30]
    assert len(walking) >= 4, f"people followed for 3 s or more: {len(walking)} of {len(people)} person tracks"
    captured = {m["frame"]: m["captured_at"] for m in frames}
    for seen in walking:  # an id never jumps to another person, also across frames where it was not detected
        for (f1, a), (f2, b) in itertools.pairwise(seen):
            assert b["label"] == "person"
            # in clip frames, not message numbers: a loaded machine skips frames of a real-time source, unnumbered
            steps = max(f2 - f1, round((captured[f2] - captured[f1]) * CLIP_FPS))
            speed = max(abs(center(a)[k] - center(b)[k]) for k in (0, 1)) / steps
            assert speed < WALKING, f"track {a['track_id']} jumped between frames {f1} and {f2}"

    received = events(recorder)
    for event in received:
        jsonschema.validate(event, schema("event"))
    new = {e["after"]["track_id"]: e for e in received if e["type"] == "new"}
    end = {e["after"]["track_id"]: e for e in received if e["type"] == "end"}
    assert len(new) >= 4 and set(end) == set(new), "every counted track ends, at the latest when the daemon stops"
    assert any(e["frame"] < frames[-1]["frame"] for e in end.values()), "someone leaves (or is lost) mid-clip"
    for track_id, event in new.items():
        assert event["before"] is None and track_id in tracks
        assert event["frame"] == tracks[track_id][2][0], "new on its third frame (tracking.min_hits)"
        assert end[track_id]["after"]["end_time"] >= event["after"]["start_time"]
    for seen in walking:
        assert seen[0][1]["track_id"] in new, "a person followed for 3 s was announced"


def test_retained_counts_equal_the_objects_of_each_label_in_the_frame(broker, recorder, tmp_path):
    """Without confirmation delay or coasting (min_hits 1, max_age_s 0) a count is exactly the frame's objects."""
    tracking = {"min_hits": 1, "max_age_s": 0}
    frames = run_clip(broker, tmp_path, recorder, source={"realtime": False}, tracking=tracking)
    wait_until(lambda: any(c["frame"] is None and c["count"] == 0 for c in counts(recorder)[-3:]), 10, "the end")
    received = counts(recorder)
    for message in received:
        jsonschema.validate(message, schema("object-count"))
    labels = ["person", "car", "motorbike", "bus", "truck"]
    assert [(c["label"], c["count"]) for c in received[: len(labels)]] == [(label, 0) for label in labels]
    latest, peak = dict.fromkeys(labels, 0), 0
    by_frame: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for message in received:
        if message["frame"] is not None:
            by_frame[message["frame"]].append(message)
    for frame in frames:
        for message in by_frame[frame["frame"]]:
            latest[message["label"]] = message["count"]
        in_frame = {label: sum(o["label"] == label for o in frame["objects"]) for label in labels}
        assert latest == in_frame, f"frame {frame['frame']}"
        peak = max(peak, latest["person"])
    assert peak >= 5, "vtest has several people in view at once"

    retained = Recorder(broker, f"{BASE}/objects/#", client_id="late-subscriber")  # a subscriber that comes later
    try:
        wait_until(lambda: len(retained.messages) == len(labels), 10, "one retained count per label")
        assert all(m.retain and m.json()["count"] == 0 for m in retained.messages), "the daemon stopped: all 0"
    finally:
        retained.close()


def test_track_ids_survive_a_forced_variant_switch(broker, recorder, tmp_path):
    run = Running(live_on_yolox_416(broker, tmp_path, governor={"fps_target": 10}))
    try:
        wait_until(lambda: len(detections(recorder)) >= 40, 60, "4 s of frames from yolox-ft-416")
        recorder.client.publish(f"{BASE}/set/variant", "yolox-ft-256", qos=1)
        wait_until(lambda: detections(recorder)[-1]["variant"] == "yolox-ft-256", 30, "frames from yolox-ft-256")
        wait_until(lambda: sum(m["variant"] == "yolox-ft-256" for m in detections(recorder)) >= 10, 20, "10 more")
    finally:
        run.stop()
    frames = detections(recorder)
    switch = next(i for i, m in enumerate(frames) if m["variant"] == "yolox-ft-256")
    before, after = frames[switch - 1], frames[switch]
    assert after["frame"] == before["frame"] + 1, "the switch cost no frame"
    counted = {e["after"]["track_id"] for e in events(recorder) if e["type"] == "new" and e["frame"] <= before["frame"]}
    # within 3 frames: a variant may see a person as two boxes for a frame, and the extra box is not the person
    ids_after = {o["track_id"] for m in frames[switch : switch + 3] for o in m["objects"]}
    kept = 0
    for obj in before["objects"]:  # every counted object seen either side of the switch keeps its id
        if obj["track_id"] in counted and any(
            o["label"] == obj["label"] and iou(o["box"], obj["box"]) > 0.5 for o in after["objects"]
        ):
            assert obj["track_id"] in ids_after, f"{obj['label']} #{obj['track_id']} lost its id at the switch"
            kept += 1
    assert kept >= 4, f"only {kept} counted objects seen either side of the switch"


def test_track_ids_go_on_after_a_restart(broker, recorder, tmp_path):
    """Like frame numbers: the highest id is committed with its detections, so a restart never gives one twice."""
    first = run_clip(broker, tmp_path, recorder, source={"realtime": False})
    last_id = max(o["track_id"] for m in first for o in m["objects"])
    second = [
        m for m in run_clip(broker, tmp_path, recorder, source={"realtime": False}) if m["frame"] > first[-1]["frame"]
    ]
    assert second, "the second run published"
    assert min(o["track_id"] for m in second for o in m["objects"]) == last_id + 1


def test_counts_fall_to_zero_when_frames_stop_coming(broker, recorder, tmp_path):
    """Paused (or a camera gone): no frame updates the tracks, yet they age, so occupancy does not stick at on."""
    run = Running(live_on_yolox_416(broker, tmp_path, tracking={"max_age_s": 1.0}))
    person = f"{BASE}/objects/person"
    try:
        wait_until(lambda: any(m.json()["count"] > 0 for m in recorder.on(person)), 60, "people counted")
        recorder.client.publish(f"{BASE}/set/paused", "true", qos=1)
        wait_until(lambda: recorder.on(person)[-1].json()["count"] == 0, 10, "the person count back at 0")
        ended = lambda: [e for e in events(recorder) if e["type"] == "end"]  # noqa: E731
        wait_until(ended, 10, "the `end` events of the tracks that aged out (they come through the outbox)")
        assert all(e["after"]["end_time"] is not None for e in ended())
    finally:
        run.stop()
