"""The tracker's settings, as they appear in the `tracking` section of the config. Defaults live here only."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TrackingConfig(BaseModel):
    """How detections become tracks, and how often a track's events go out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="false: objects carry track_id null; no events, no counts")
    iou_threshold: float = Field(
        0.2, gt=0, le=1, description="least overlap between a track's predicted box and a detection to match them"
    )
    high_score: float = Field(
        0.5,
        ge=0,
        le=1,
        description="detections at or above are matched first; the others only continue tracks left unmatched "
        "(ByteTrack's second pass, which keeps a person whose score dips for a few frames)",
    )
    min_hits: int = Field(
        3, ge=1, le=100, description="frames a track must be seen in before it counts and gets its `new` event"
    )
    max_age_s: float = Field(
        2.0, ge=0, le=3600, description="a counted track not seen for longer ends (`end` event, count down)"
    )
    update_interval_s: float = Field(
        5.0, gt=0, le=86400, description="at most one `update` event per track in this many seconds"
    )
