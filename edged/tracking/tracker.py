"""ByteTrack-style multi-object tracking: identities across frames, events per track, counts per class. Pure.

No clock, no MQTT, no threads: `update` takes one frame's detections and its capture time and returns the track id
of each detection, the events that frame caused and the counts when they changed. The owner (the daemon's inference
thread) turns them into messages. Variants are invisible here: a switch only changes the boxes a little, and the
tracks carry on.

Association, per frame (after ByteTrack, Zhang et al., ECCV 2022): every track's box is predicted at the frame's
time from its velocity; detections scoring `high_score` or more are matched to tracks of their class first, greedily
by IoU; the tracks left then take the lower-scoring detections. A detection that continues no track starts one, so
every published object has an id. A track counts (and gets its `new` event) once seen in `min_hits` frames; a
track not yet counted dies the first frame it is missed; a counted one coasts on its velocity for `max_age_s`, then
ends. Greedy matching instead of the Hungarian method: the same pairs whenever each object's best match is mutual,
which is what a camera's sparse scene gives, and no scipy on the device.

Why not a library. norfair (Frigate's tracker) pulls scipy, filterpy and rich, and filterpy pulls matplotlib: 270 MiB
installed beside numpy on x86-64 (`pip install norfair` into a venv holding numpy, then `du`) and 1.1 s to import
(`python -X importtime`), for a step of a few dozen lines. On the demo clip's detections (7.8 a frame) it took
1.10 ms a frame (p50) where this module takes 0.25 ms, in one run of `python -m bench.bench_tracking` on the 2-core
development VM, for the same kind of association (IoU, a delay before a track counts).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edged.tracking.config import TrackingConfig

EventKind = Literal["new", "update", "end"]
VELOCITY_SMOOTHING = 0.5  # weight of the newest displacement in a track's velocity (per second)


@dataclass(frozen=True)
class TrackState:
    """A track as its events show it. `box` is x1, y1, x2, y2 in the units the detections came in."""

    track_id: int
    class_id: int
    score: float
    top_score: float
    box: tuple[float, float, float, float]
    start_time: float
    last_seen: float
    frames: int
    end_time: float | None = None


@dataclass(frozen=True)
class TrackEvent:
    """Frigate's shape: the state last published for the track (`before`, none for `new`) and now (`after`)."""

    kind: EventKind
    before: TrackState | None
    after: TrackState


@dataclass(frozen=True)
class FrameTracks:
    """What one frame did: an id per detection (in their order), events, and the counts when they changed."""

    track_ids: list[int]
    events: list[TrackEvent]
    counts: dict[int, int]  # class id -> counted tracks alive, for the classes whose count changed


@dataclass
class _Track:
    id: int
    class_id: int
    box: np.ndarray  # float64 (4,)
    score: float
    start_time: float
    last_seen: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    top_score: float = 0.0
    hits: int = 1
    counted: bool = False
    published: TrackState | None = None  # `after` of its last event

    def state(self, end_time: float | None = None) -> TrackState:
        x1, y1, x2, y2 = (float(v) for v in self.box)
        return TrackState(
            self.id, self.class_id, self.score, self.top_score, (x1, y1, x2, y2), self.start_time, self.last_seen,
            self.hits, end_time,
        )  # fmt: skip

    def predicted(self, at: float) -> np.ndarray:
        return self.box + self.velocity * (at - self.last_seen)

    def see(self, box: np.ndarray, score: float, at: float) -> None:
        dt = at - self.last_seen
        if dt > 0:
            step = (box - self.box) / dt
            self.velocity = VELOCITY_SMOOTHING * step + (1 - VELOCITY_SMOOTHING) * self.velocity
        self.box, self.score, self.last_seen = box, score, at
        self.top_score = max(self.top_score, score)
        self.hits += 1


class Tracker:
    """One camera's tracks. Call `update` once per frame, in capture order; `finish` when the stream ends."""

    def __init__(self, config: TrackingConfig, first_id: int = 1) -> None:
        self.config = config
        self._next_id = first_id
        self._tracks: list[_Track] = []
        self._counts: dict[int, int] = {}  # class id -> counted tracks alive
        self._reported: dict[int, int] = {}  # the counts as last returned

    @property
    def last_id(self) -> int:
        """The highest id given so far (first_id - 1 before the first)."""
        return self._next_id - 1

    def update(self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, at: float) -> FrameTracks:
        """One frame: boxes (N, 4) x1y1x2y2, scores (N,), class ids (N,), captured at `at` (seconds)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        classes = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        continued = self._associate(boxes, scores, classes, at)
        events: list[TrackEvent] = []
        ids: list[int] = []
        seen: set[int] = set()
        for index, track_index in enumerate(continued):
            if track_index < 0:
                track = self._start(boxes[index], float(scores[index]), int(classes[index]), at)
            else:
                track = self._tracks[track_index]
                track.see(boxes[index], float(scores[index]), at)
            ids.append(track.id)
            seen.add(track.id)
            events.extend(self._progress(track, at))
        events.extend(self._expire(seen, at))
        return FrameTracks(ids, events, self._changed_counts())

    def age(self, at: float) -> FrameTracks:
        """No frame came (paused, camera gone): tracks unseen for over `max_age_s` end, as if missed that long.
        Not a missed frame: a young track between two frames of a slow stream must not die of it."""
        events, alive = [], []
        for track in self._tracks:
            if at - track.last_seen <= self.config.max_age_s:
                alive.append(track)
            elif track.counted:
                events.append(self._end(track))
        self._tracks = alive
        return FrameTracks([], events, self._changed_counts())

    def finish(self) -> FrameTracks:
        """The stream ends (the daemon stops): every counted track ends now and the counts go to zero."""
        events = [self._end(track) for track in self._tracks if track.counted]
        self._tracks = []
        return FrameTracks([], events, self._changed_counts())

    # --- association ---------------------------------------------------------------------------------------------

    def _associate(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, at: float) -> np.ndarray:
        """The index of the track each detection continues (-1: none); high-scoring detections choose first."""
        continued = np.full(len(boxes), -1, dtype=np.int64)
        if not self._tracks or not len(boxes):
            return continued
        predicted = np.array([track.predicted(at) for track in self._tracks])
        track_classes = np.array([track.class_id for track in self._tracks])
        overlap = _iou(predicted, boxes)
        overlap[track_classes[:, None] != classes[None, :]] = 0.0
        high = scores >= self.config.high_score
        for detections in (np.flatnonzero(high), np.flatnonzero(~high)):
            free = np.setdiff1d(np.arange(len(self._tracks)), continued[continued >= 0])
            for t, d in _greedy(overlap[np.ix_(free, detections)], self.config.iou_threshold):
                continued[detections[d]] = free[t]
        return continued

    def _start(self, box: np.ndarray, score: float, class_id: int, at: float) -> _Track:
        track = _Track(self._next_id, class_id, box, score, at, at, top_score=score)
        self._next_id += 1
        self._tracks.append(track)
        return track

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def _progress(self, track: _Track, at: float) -> Iterable[TrackEvent]:
        if not track.counted:
            if track.hits >= self.config.min_hits:
                track.counted = True
                self._counts[track.class_id] = self._counts.get(track.class_id, 0) + 1
                yield self._publish(track, "new")
            return
        published = track.published
        if published is not None and at - published.last_seen >= self.config.update_interval_s:
            yield self._publish(track, "update")

    def _expire(self, seen: set[int], at: float) -> list[TrackEvent]:
        """Tracks missed this frame: uncounted ones die quietly, counted ones end once older than max_age_s."""
        events, alive = [], []
        for track in self._tracks:
            missed = track.id not in seen
            if missed and not track.counted:
                continue
            if missed and at - track.last_seen > self.config.max_age_s:
                events.append(self._end(track))
                continue
            alive.append(track)
        self._tracks = alive
        return events

    def _publish(self, track: _Track, kind: EventKind) -> TrackEvent:
        event = TrackEvent(kind, track.published, track.state())
        track.published = event.after
        return event

    def _end(self, track: _Track) -> TrackEvent:
        self._counts[track.class_id] -= 1
        return TrackEvent("end", track.published, track.state(end_time=track.last_seen))

    def _changed_counts(self) -> dict[int, int]:
        changed = {c: n for c, n in self._counts.items() if self._reported.get(c) != n}
        self._reported.update(changed)
        return changed


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` (M, 4) with every box of `b` (N, 4): (M, N)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _greedy(overlap: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, column) taken in order of falling overlap, each row and column once, overlap >= threshold."""
    if overlap.size == 0:
        return []
    rows, cols = np.unravel_index(np.argsort(-overlap, axis=None, kind="stable"), overlap.shape)
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    pairs = []
    for r, c in zip(rows.tolist(), cols.tolist()):
        if overlap[r, c] < threshold:
            break
        if r in used_rows or c in used_cols:
            continue
        used_rows.add(r)
        used_cols.add(c)
        pairs.append((r, c))
    return pairs
