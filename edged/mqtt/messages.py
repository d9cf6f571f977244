"""The JSON payloads of MQTT contract v1, as pydantic models.

Every message carries `schema` (which model, which version) and `device`, so a subscriber listening on
`edged/+/...` can tell what it holds without parsing the topic. The committed JSON Schemas in
`edged/mqtt/schemas/` are generated from these models (`python -m edged.mqtt.schemas`), never written by hand.
Timestamps are Unix seconds (float). `availability` is a plain string (`online` / `stopped` / `offline`), not JSON.

Delivery (see `edged.mqtt.link`): detections and decisions go through the durable outbox (at-least-once, in order);
state is retained and re-published on every reconnect; power and stats are periodic snapshots published while
connected (their counters — `energy_j`, the outbox and frame counts — are cumulative, so a gap loses no total).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from edged.governor.config import GovernorMode
from edged.vision.types import DetectedObject

if TYPE_CHECKING:
    from edged.governor.decision import Decision
    from edged.power.sample import PowerSample

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
