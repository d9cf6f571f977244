"""The tracker's cost per frame on real detections, and norfair's (Frigate's tracker) on the same ones.

    .venv/bin/edged detect edged/demo/vtest_10s.mp4 --zoo model_zoo --json > out/vtest.jsonl
    .venv/bin/python -m bench.bench_tracking --detections out/vtest.jsonl

The detections of each frame are fed in order, at the clip's 10 fps, to a fresh tracker per pass; the figure is the
time of one `update` (edged.tracking) or `Tracker.update` (norfair, IoU distance, detections built per frame as a
caller must), p50 and p99 over every frame of every pass. norfair is timed when it is importable (it is not one of
edged's dependencies: `pip install norfair` into another venv with numpy and pydantic, and run this file there with
the checkout on PYTHONPATH). Also printed: how many ids each gave and how many tracks lasted 20 frames or more.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edged.tracking import Tracker, TrackingConfig

FPS = 10.0
Frame = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes, scores, class ids
Step = Callable[[Frame, float], list[int]]


def load(path: Path) -> list[Frame]:
    frames = []
    for line in path.read_text().splitlines():
        objects = json.loads(line)["objects"]
        boxes = np.array([o["box"] for o in objects], dtype=np.float64).reshape(-1, 4)
        scores = np.array([o["score"] for o in objects], dtype=np.float64)
        classes = np.array([o["class_id"] for o in objects], dtype=np.int64)
        frames.append((boxes, scores, classes))
    return frames


def edged_tracker() -> Step:
    tracker = Tracker(TrackingConfig())

    def step(frame: Frame, at: float) -> list[int]:
        return tracker.update(*frame, at).track_ids

    return step


def norfair_tracker() -> Step:
    import norfair

    tracker = norfair.Tracker(distance_function="iou", distance_threshold=0.7, initialization_delay=2)

    def step(frame: Frame, _at: float) -> list[int]:
        boxes, scores, classes = frame
        detections = [
            norfair.Detection(points=box.reshape(2, 2), scores=np.array([score, score]), label=int(label))
            for box, score, label in zip(boxes, scores, classes)
        ]
        return [obj.id for obj in tracker.update(detections=detections) if obj.id is not None]

    return step


def run(make: Callable[[], Step], frames: list[Frame], passes: int) -> dict[str, Any]:
    times: list[float] = []
    lengths: Counter[int] = Counter()
    for index in range(passes):
        step = make()
        for number, frame in enumerate(frames):
            start = time.perf_counter()
            ids = step(frame, number / FPS)
            times.append(time.perf_counter() - start)
            if index == 0:
                lengths.update(ids)
    times.sort()
    return {
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
        "ids": len(lengths),
        "tracks_20_frames": sum(1 for n in lengths.values() if n >= 20),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detections", type=Path, required=True, help="JSON lines of `edged detect --json`")
    parser.add_argument("--passes", type=int, default=20)
    args = parser.parse_args()
    frames = load(args.detections)
    objects = sum(len(f[0]) for f in frames)
    print(f"{len(frames)} frames, {objects / len(frames):.1f} detections per frame, {args.passes} passes")
    trackers: dict[str, Callable[[], Step]] = {"edged.tracking": edged_tracker}
    try:
        import norfair  # noqa: F401

        trackers["norfair"] = norfair_tracker
    except ImportError:
        print("norfair: not installed here (not timed)")
    for name, make in trackers.items():
        r = run(make, frames, args.passes)
        print(
            f"{name:15s} p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms per frame; "
            f"{r['ids']} ids, {r['tracks_20_frames']} tracked for 20+ frames"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
