"""Multi-object tracking: a track id on every detection, `new` / `update` / `end` events, counts per class.

config.py   the `tracking` section of the config
tracker.py  the tracker (pure: detections and their time in, ids, events and counts out)
"""

from __future__ import annotations

from edged.tracking.config import TrackingConfig
from edged.tracking.tracker import FrameTracks, Tracker, TrackEvent, TrackState

__all__ = ["FrameTracks", "TrackEvent", "TrackState", "Tracker", "TrackingConfig"]
