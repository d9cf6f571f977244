"""The tracker core (pure): identities, ByteTrack's two passes, events, counts; and its config section."""

from __future__ import annotations

import numpy as np
import pytest

from edged.tracking import FrameTracks, Tracker, TrackingConfig

PERSON, CAR = 0, 1


def box(x: float, y: float = 0.4, w: float = 0.05, h: float = 0.15) -> list[float]:
    return [x, y, x + w, y + h]


def frame(tracker: Tracker, at: float, *objects: tuple[list[float], float, int]) -> FrameTracks:
    boxes = np.array([o[0] for o in objects], dtype=np.float64).reshape(-1, 4)
    scores = np.array([o[1] for o in objects], dtype=np.float64)
    classes = np.array([o[2] for o in objects], dtype=np.int64)
    return tracker.update(boxes, scores, classes, at)


def kinds(result: FrameTracks) -> list[tuple[str, int]]:
    return [(event.kind, event.after.track_id) for event in result.events]


def test_two_people_walking_past_each_other_keep_their_ids() -> None:
    tracker = Tracker(TrackingConfig())
    ids = []
    for step in range(20):  # one walks right, the other left; they cross at step 10 on different rows
        left, right = 0.1 + 0.03 * step, 0.7 - 0.03 * step
        result = frame(tracker, step * 0.1, (box(left, 0.3), 0.8, PERSON), (box(right, 0.5), 0.7, PERSON))
        ids.append(tuple(result.track_ids))
    assert set(ids) == {(1, 2)}


def test_a_track_counts_and_gets_its_new_event_only_after_min_hits_frames() -> None:
    tracker = Tracker(TrackingConfig(min_hits=3))
    first = frame(tracker, 0.0, (box(0.1), 0.9, PERSON))
    second = frame(tracker, 0.1, (box(0.11), 0.9, PERSON))
    third = frame(tracker, 0.2, (box(0.12), 0.9, PERSON))
    assert (first.events, second.events, first.counts, second.counts) == ([], [], {}, {})
    assert kinds(third) == [("new", 1)] and third.counts == {PERSON: 1}
    new = third.events[0]
    assert new.before is None and new.after.frames == 3 and new.after.start_time == 0.0


def test_a_flicker_never_counted_dies_quietly_and_its_id_is_not_given_again() -> None:
    tracker = Tracker(TrackingConfig(min_hits=3))
    frame(tracker, 0.0, (box(0.1), 0.9, PERSON))
    gone = frame(tracker, 0.1)
    again = frame(tracker, 0.2, (box(0.1), 0.9, PERSON))
    assert gone.events == [] and gone.counts == {}
    assert again.track_ids == [2], "a missed frame ends a track that never counted; a new one gets a new id"


def test_a_counted_track_coasts_on_its_velocity_through_missed_frames() -> None:
    tracker = Tracker(TrackingConfig(min_hits=1, max_age_s=1.0))
    for step in range(5):
        assert frame(tracker, step * 0.1, (box(0.1 + 0.02 * step), 0.9, PERSON)).track_ids == [1]
    for step in range(5, 8):  # occluded for 0.3 s, still walking: 0.08 further than last seen, wider than it
        assert frame(tracker, step * 0.1).events == []
    back = frame(tracker, 0.8, (box(0.1 + 0.02 * 8), 0.9, PERSON))
    assert back.track_ids == [1], "predicted where it went, not where it was last seen (IoU 0 there)"


def test_a_counted_track_ends_after_max_age_and_the_count_goes_down() -> None:
    tracker = Tracker(TrackingConfig(min_hits=1, max_age_s=0.5))
    frame(tracker, 0.0, (box(0.1), 0.9, PERSON), (box(0.5), 0.8, CAR))
    frame(tracker, 0.1, (box(0.1), 0.9, PERSON), (box(0.5), 0.8, CAR))
    assert frame(tracker, 0.5, (box(0.5), 0.8, CAR)).events == [], "0.4 s unseen: within max_age_s"
    ended = frame(tracker, 0.7, (box(0.5), 0.8, CAR))
    assert kinds(ended) == [("end", 1)] and ended.counts == {PERSON: 0}
    end = ended.events[0]
    assert end.after.end_time == 0.1 and end.before is not None and end.before.frames == 1


def test_updates_are_throttled_to_one_per_interval() -> None:
    tracker = Tracker(TrackingConfig(min_hits=1, update_interval_s=1.0))
    events = []
    for step in range(31):  # 3 s at 10 fps
        events += kinds(frame(tracker, step * 0.1, (box(0.1 + 0.001 * step), 0.9, PERSON)))
    assert events == [("new", 1), ("update", 1), ("update", 1), ("update", 1)]


def test_a_low_score_detection_continues_a_track_but_never_takes_it_from_a_high_score_one() -> None:
    tracker = Tracker(TrackingConfig(min_hits=1, high_score=0.5))
    frame(tracker, 0.0, (box(0.1), 0.9, PERSON))
    dipped = frame(tracker, 0.1, (box(0.1), 0.3, PERSON))
    assert dipped.track_ids == [1], "ByteTrack's second pass: a score dip keeps the identity"
    # the low-score box overlaps the track more, but the high-score one is matched first
    contested = frame(tracker, 0.2, (box(0.1), 0.3, PERSON), (box(0.115), 0.9, PERSON))
    assert contested.track_ids == [2, 1]


def test_objects_of_another_class_never_continue_a_track() -> None:
    tracker = Tracker(TrackingConfig(min_hits=1))
    frame(tracker, 0.0, (box(0.1), 0.9, PERSON))
    assert frame(tracker, 0.1, (box(0.1), 0.9, CAR)).track_ids == [2]


def test_counts_report_only_the_classes_that_changed_and_finish_ends_every_counted_track() -> None:
    tracker = Tracker(TrackingConfig(min_hits=1))
    assert frame(tracker, 0.0, (box(0.1), 0.9, PERSON), (box(0.5), 0.9, CAR)).counts == {PERSON: 1, CAR: 1}
    assert frame(tracker, 0.1, (box(0.1), 0.9, PERSON), (box(0.5), 0.9, CAR), (box(0.3), 0.9, PERSON)).counts == {
        PERSON: 2
    }
    finished = tracker.finish()
    assert sorted(kinds(finished)) == [("end", 1), ("end", 2), ("end", 3)]
    assert finished.counts == {PERSON: 0, CAR: 0}


def test_ids_go_on_from_first_id() -> None:
    tracker = Tracker(TrackingConfig(), first_id=41)
    assert frame(tracker, 0.0, (box(0.1), 0.9, PERSON), (box(0.5), 0.9, CAR)).track_ids == [41, 42]
    assert tracker.last_id == 42


def test_an_empty_frame_and_no_tracks_are_fine() -> None:
    tracker = Tracker(TrackingConfig())
    assert frame(tracker, 0.0) == FrameTracks([], [], {})
    assert tracker.finish() == FrameTracks([], [], {})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("iou_threshold", 0, "Input should be greater than 0"),
        ("high_score", 1.5, "Input should be less than or equal to 1"),
        ("min_hits", 0, "Input should be greater than or equal to 1"),
        ("max_age_s", -1, "Input should be greater than or equal to 0"),
        ("update_interval_s", 0, "Input should be greater than 0"),
        ("enabled", "sometimes", "Input should be a valid boolean, unable to interpret input"),
    ],
)
def test_bad_tracking_values_name_the_field_and_the_line(tmp_path, key, value, message) -> None:
    from tests.test_config import problems_of, write

    path = write(tmp_path, f"source:\n  type: file\n  path: clip.mp4\ntracking:\n  {key}: {value}\n")
    shown = repr(value) if isinstance(value, str) else value
    assert problems_of(path) == [f"{path}:5: tracking.{key}: {message} (got {shown})"]


def test_an_unknown_tracking_key_suggests_the_right_one(tmp_path) -> None:
    from tests.test_config import problems_of, write

    path = write(tmp_path, "source:\n  type: file\n  path: clip.mp4\ntracking:\n  max_age: 3\n")
    assert problems_of(path) == [f"{path}:5: tracking.max_age: unknown key (did you mean 'max_age_s'?)"]


def test_aging_while_idle_ends_stale_counted_tracks_but_spares_a_young_one_between_slow_frames() -> None:
    tracker = Tracker(TrackingConfig(min_hits=2, max_age_s=2.0))
    frame(tracker, 0.0, (box(0.1), 0.9, PERSON))
    frame(tracker, 1.0, (box(0.1), 0.9, PERSON))  # counted (id 1)
    frame(tracker, 2.0, (box(0.6), 0.9, CAR))  # one sighting of a car (id 2), a frame every second
    assert tracker.age(2.5).events == [], "1.5 s unseen and 0.5 s unseen: both within max_age_s"
    assert kinds(frame(tracker, 3.0, (box(0.6), 0.9, CAR))) == [("new", 2)], "the idle spell did not kill the car"
    aged = tracker.age(5.5)  # the camera is gone
    assert kinds(aged) == [("end", 1), ("end", 2)] and aged.counts == {PERSON: 0, CAR: 0}
