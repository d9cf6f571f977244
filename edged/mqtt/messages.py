"""The JSON payloads of MQTT contract v1, as pydantic models.

Every message carries `schema` (which model, which version) and `device`, so a subscriber listening on
`edged/+/...` can tell what it holds without parsing the topic. The committed JSON Schemas in
`edged/mqtt/schemas/` are generated from these models (`python -m edged.mqtt.schemas`), never written by hand.
Timestamps are Unix seconds (float). `availability` is a plain string (`online` / `stopped` / `offline`), not JSON.

Delivery (see `edged.mqtt.link`): detections, track events and decisions go through the durable outbox (at-least-once,
in order); state and the object counts are retained and re-published on every reconnect; power and stats are periodic
snapshots published while connected (their counters — `energy_j`, the outbox and frame counts — are cumulative, so a
gap loses no total).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from edged.governor.config import GovernorMode
from edged.vision.types import DetectedObject, Unit

if TYPE_CHECKING:
    from edged.governor.decision import Decision
    from edged.power.sample import PowerSample
    from edged.tracking import TrackEvent, TrackState

PowerQuality = Literal["measured", "estimated", "simulated"]
Availability = Literal["online", "stopped", "offline"]

AVAILABILITY_ONLINE: Availability = "online"
AVAILABILITY_STOPPED: Availability = "stopped"
AVAILABILITY_OFFLINE: Availability = "offline"


class Message(BaseModel):
    """Base of every JSON payload: strict about unknown fields, serialised with its `schema` key."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    device: str = Field(description="device_id of the publishing edged")

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class DetectionsMessage(Message):
    """`<base>/detections`: one message per processed frame. Frame numbers let subscribers drop duplicates."""

    schema_id: Literal["edged/detections/v1"] = Field("edged/detections/v1", alias="schema")
    source: str = Field(description="where the frame came from (camera, file name, stream URL without credentials)")
    frame: int = Field(
        ge=0,
        description="monotonic for the device, across daemon restarts too (a restart, clean or kill -9, numbers "
        "on from the last frame committed to the outbox, so a gap is a dropped frame, never a restart): "
        "subscribers drop duplicates by keeping only frames above the last one seen",
    )
    captured_at: float = Field(description="capture time, Unix seconds")
    variant: str = Field(description="id of the detector variant that processed the frame")
    latency_ms: float = Field(ge=0, description="pre-processing + inference + decoding + NMS")
    energy_mj: float | None = Field(None, ge=0, description="energy of this inference; null when not measured")
    width: int = Field(gt=0, description="image width in pixels")
    height: int = Field(gt=0, description="image height in pixels")
    objects: list[DetectedObject]


class TrackedObject(BaseModel):
    """One tracked object as an event shows it (Frigate's `before` / `after`)."""

    model_config = ConfigDict(extra="forbid")

    track_id: int = Field(ge=1, description="as on the object in `detections`")
    label: str
    class_id: int = Field(
        ge=0, description="the label's index among the zoo's labels (the same for every variant, unlike detections')"
    )
    score: float = Field(ge=0, le=1, description="of its latest detection")
    top_score: float = Field(ge=0, le=1, description="the best score it has had")
    box: tuple[Unit, Unit, Unit, Unit] = Field(description="its latest box: x1, y1, x2, y2, 0..1 of the image")
    start_time: float = Field(description="first seen, Unix seconds (capture time)")
    last_seen: float = Field(description="latest frame it was detected in, Unix seconds (capture time)")
    frames: int = Field(ge=1, description="frames it was detected in")
    end_time: float | None = Field(None, description="when it was last seen, once it has ended; null while it lasts")

    @classmethod
    def from_state(cls, state: TrackState, labels: list[str]) -> TrackedObject:
        """From the tracker's state (whose box is already normalised)."""
        x1, y1, x2, y2 = (round(v, 5) for v in state.box)
        return cls(
            track_id=state.track_id,
            label=labels[state.class_id],
            class_id=state.class_id,
            score=round(state.score, 4),
            top_score=round(state.top_score, 4),
            box=(x1, y1, x2, y2),
            start_time=state.start_time,
            last_seen=state.last_seen,
            frames=state.frames,
            end_time=state.end_time,
        )


class EventMessage(Message):
    """`<base>/events`: a tracked object appeared (`new`, once it has been seen in `tracking.min_hits` frames), is
    still there (`update`, at most every `tracking.update_interval_s`) or is gone (`end`, after
    `tracking.max_age_s` unseen, or when the daemon stops)."""

    schema_id: Literal["edged/event/v1"] = Field("edged/event/v1", alias="schema")
    type: Literal["new", "update", "end"]
    source: str = Field(description="as in `detections`")
    frame: int = Field(ge=0, description="the frame that caused the event (for `end`: the frame it was given up at)")
    at: float = Field(description="capture time of that frame, Unix seconds")
    before: TrackedObject | None = Field(description="the object as its previous event showed it; null for `new`")
    after: TrackedObject

    @classmethod
    def from_event(
        cls, device: str, source: str, frame: int, at: float, event: TrackEvent, labels: list[str]
    ) -> EventMessage:
        before = TrackedObject.from_state(event.before, labels) if event.before is not None else None
        return cls(
            device=device,
            type=event.kind,
            source=source,
            frame=frame,
            at=at,
            before=before,
            after=TrackedObject.from_state(event.after, labels),
        )


class ObjectCountMessage(Message):
    """`<base>/objects/<label>` (retained): how many objects of the label are being tracked now, published when it
    changes. An object counts from its `new` event to its `end` event."""

    schema_id: Literal["edged/object-count/v1"] = Field("edged/object-count/v1", alias="schema")
    label: str
    count: int = Field(ge=0)
    frame: int | None = Field(
        description="the frame after which the count holds; null for the zeros published when the daemon starts "
        "and stops"
    )
    at: float = Field(description="Unix seconds")


class DecisionSummary(BaseModel):
    """The governor's most recent switch, as shown on `state`."""

    model_config = ConfigDict(extra="forbid")

    from_variant: str | None
    to_variant: str | None
    reason: str
    at: float = Field(description="Unix seconds")


class StateMessage(Message):
    """`<base>/state` (retained): what the device is doing now. Re-published on every reconnect; latest wins."""

    schema_id: Literal["edged/state/v1"] = Field("edged/state/v1", alias="schema")
    at: float = Field(description="when this state was taken, Unix seconds")
    variant: str | None = Field(description="active variant; null before the first model is loaded")
    mode: GovernorMode
    accuracy_floor: float = Field(ge=0, le=1)
    accuracy_floor_expires_at: float | None = Field(None, description="when a temporary floor reverts (Unix s)")
    accuracy_floor_unmet: bool = Field(
        False, description="no variant of the zoo reaches the floor: the most accurate one runs, below it"
    )
    fps: float = Field(ge=0, description="target frames per second")
    paused: bool
    battery_pct: float | None = Field(None, ge=0, le=100)
    power_w: float | None = Field(None, ge=0)
    power_quality: PowerQuality | None = None
    last_decision: DecisionSummary | None = None
    quarantined: dict[str, str] = Field(default_factory=dict, description="variant id -> why it is not used")
    source_status: str = Field("ok", description="`ok`, or what is wrong with the frame source")
    error: str | None = Field(None, description="the current fault, if any (logged once, shown here)")


class DecisionInputs(BaseModel):
    """What the governor saw and predicted when it decided."""

    model_config = ConfigDict(extra="forbid")

    mode: GovernorMode
    accuracy_floor: float = Field(ge=0, le=1)
    battery_pct: float | None = None
    budget_w: float | None = Field(None, description="power budget; null: no power limit")
    budget_basis: str | None = Field(None, description="mission | band | external_power | unlimited")
    budget_detail: str | None = None
    predicted_power_w: float | None = None
    predicted_p95_ms: float | None = None
    latency_ratio: float | None = Field(None, description="measured / profile latency in effect")
    power_ratio: float | None = Field(None, description="measured / profile energy per inference in effect")
    meter_scale: float | None = Field(None, description="fuel-gauge / power-meter energy, learnt")


class DecisionMessage(Message):
    """`<base>/governor/decision`: one message per switch, with its inputs and its reason."""

    schema_id: Literal["edged/decision/v1"] = Field("edged/decision/v1", alias="schema")
    at: float = Field(description="Unix seconds")
    from_variant: str | None
    to_variant: str | None = Field(description="null: no variant can run")
    fps: float = Field(ge=0, description="frame rate chosen with the variant")
    accuracy: float | None = Field(None, description="the chosen variant's profile mAP50-95")
    reason: str = Field(min_length=1)
    flags: list[str] = Field(default_factory=list, description="e.g. floor_unmet, over_budget, fps_reduced")
    inputs: DecisionInputs

    @classmethod
    def from_decision(cls, device: str, decision: Decision, at: float) -> DecisionMessage:
        """From the governor's Decision (whose `at_s` is monotonic; `at` is the wall clock, Unix seconds)."""
        inputs = DecisionInputs(
            mode=decision.mode,
            accuracy_floor=decision.accuracy_floor,
            battery_pct=decision.battery_pct,
            budget_w=decision.budget_w,
            budget_basis=decision.budget_basis,
            budget_detail=decision.budget_detail,
            predicted_power_w=decision.predicted_power_w,
            predicted_p95_ms=decision.predicted_p95_ms,
            latency_ratio=decision.latency_ratio,
            power_ratio=decision.power_ratio,
            meter_scale=decision.meter_scale,
        )
        return cls(
            device=device,
            at=at,
            from_variant=decision.previous_variant,
            to_variant=decision.variant,
            fps=decision.fps,
            accuracy=decision.accuracy,
            reason=decision.reason,
            flags=list(decision.flags),
            inputs=inputs,
        )


class PowerMessage(Message):
    """`<base>/power`: one power/battery sample. Fields a source cannot read are null."""

    schema_id: Literal["edged/power/v1"] = Field("edged/power/v1", alias="schema")
    ts: float = Field(description="sample time, Unix seconds")
    source: str = Field(description="which power source produced the sample (e.g. power_supply:BAT0, rapl)")
    quality: PowerQuality
    power_w: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    energy_j: float | None = Field(None, description="energy counter that only grows; compare samples of one source")
    battery_pct: float | None = Field(None, ge=0, le=100)
    battery_wh: float | None = Field(None, ge=0)
    charging: bool | None = None
    time_remaining_s: float | None = Field(None, description="the source's own estimate of time left")
    rails: dict[str, float] = Field(default_factory=dict, description="power per rail or sub-domain, W")
    note: str | None = Field(None, description="what this reading covers and what it cannot see")

    @classmethod
    def from_sample(cls, device: str, sample: PowerSample) -> PowerMessage:
        return cls(device=device, **sample.model_dump())


class PipelineStats(BaseModel):
    """The pipeline's own figures, supplied by the daemon; the link adds the outbox figures."""

    model_config = ConfigDict(extra="forbid")

    fps: float = Field(ge=0, description="frames processed per second over the last period")
    latency_p50_ms: float | None = Field(None, ge=0)
    latency_p95_ms: float | None = Field(None, ge=0)
    frames_processed: int = Field(0, ge=0, description="since start")
    frames_dropped: int = Field(0, ge=0, description="since start: the source queue dropped the oldest frame")


class StatsMessage(Message, PipelineStats):
    """`<base>/stats`: periodic pipeline and delivery figures."""

    schema_id: Literal["edged/stats/v1"] = Field("edged/stats/v1", alias="schema")
    at: float = Field(description="Unix seconds")
    outbox_depth: int = Field(ge=0, description="messages waiting for the broker's acknowledgement")
    outbox_dropped: int = Field(ge=0, description="oldest messages dropped because the outbox was full (ever)")


class CommandResult(Message):
    """`<base>/set/<name>/result` (and the MQTT 5 response topic): how a command was answered."""

    schema_id: Literal["edged/command-result/v1"] = Field("edged/command-result/v1", alias="schema")
    command: str = Field(description="the <name> of set/<name>, as received")
    ok: bool
    error: str | None = Field(None, description="why the command was refused; null when ok")
    value: bool | float | str | None = Field(None, description="the value applied (when ok)")
    warning: str | None = Field(None, description="applied, with a caveat (e.g. a floor no variant reaches)")
    at: float = Field(description="Unix seconds")
