"""edged's MQTT side (contract v1): what a device publishes, the commands it takes, and how nothing gets lost.

The daemon uses one object, `MqttLink` (edged.mqtt.link): `start()`, `publish_detections()`,
`publish_decision()`, `publish_state()`, `publish_power()`, `publish_stats()`, `stop()`, and an `on_command`
handler that receives validated commands (edged.mqtt.commands) on the link's command thread.

    topics.py     the topic tree of one device
    messages.py   the JSON payloads as pydantic models (schemas/ holds the JSON Schemas generated from them)
    commands.py   set/<name> parsing and validation (pure)
    outbox.py     the durable queue (SQLite WAL) every detection and decision passes through
    sender.py     the outbox's sending rules: order, window, reconnects, refusals (pure)
    discovery.py  the Home Assistant device discovery payload (pure)
    link.py       MqttLink: paho-mqtt, threads, TLS, auth, last will, retained state, command answers
    broker.py     an in-process broker for the demo (amqtt, the [demo] extra)
    watch.py      what `edged watch` prints (pure)
"""

from __future__ import annotations

from edged.mqtt.commands import (
    Command,
    CommandError,
    CommandRejected,
    SetAccuracyFloor,
    SetFps,
    SetGovernorMode,
    SetPaused,
    SetVariant,
)
from edged.mqtt.link import MqttError, MqttLink
from edged.mqtt.messages import (
    DecisionInputs,
    DecisionMessage,
    DecisionSummary,
    DetectionsMessage,
    PipelineStats,
    PowerMessage,
    StateMessage,
)
from edged.mqtt.outbox import OutboxError

__all__ = [
    "Command",
    "CommandError",
    "CommandRejected",
    "DecisionInputs",
    "DecisionMessage",
    "DecisionSummary",
    "DetectionsMessage",
    "MqttError",
    "MqttLink",
    "OutboxError",
    "PipelineStats",
    "PowerMessage",
    "SetAccuracyFloor",
    "SetFps",
    "SetGovernorMode",
    "SetPaused",
    "SetVariant",
    "StateMessage",
]
