"""What `edged watch` prints: one readable line per message (or one JSON line). Pure: no client here.

Readable output shows every detection (frame, variant, latency, objects with their track ids), every track event,
object count, decision and command result, availability, and `state` only when something in it changed (its `at`
aside).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from edged.errors import EdgedError

MAX_OBJECTS_SHOWN = 5


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def parse_broker_url(url: str) -> BrokerAddress:
    """`mqtt://[user:pass@]host[:port]` or `mqtts://...` (TLS; default port 8883). A bare `host[:port]` is mqtt."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise EdgedError(f"--broker {url}: use mqtt://host[:port] or mqtts://host[:port]")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise EdgedError(f"--broker {url}: the port must be a number between 1 and 65535") from None
    if not parts.hostname:
        raise EdgedError(f"--broker {url}: no host")
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


@dataclass(frozen=True)
class Received:
    """A message split into the parts of the topic tree: `<prefix>/<device>/<kind>`."""

    device: str
    kind: str
    payload: bytes

    def document(self) -> Any:
        """The JSON payload, or the text when it is not JSON (availability, raw commands)."""
        text = self.payload.decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text


def split_topic(topic: str, prefix: str, payload: bytes) -> Received | None:
    head = prefix.rstrip("/") + "/"
    if not topic.startswith(head):
        return None
    device, _, kind = topic[len(head) :].partition("/")
    return Received(device, kind, payload) if kind else None


def json_line(message: Received, received_at: float | None = None) -> str:
    """One line of `edged watch --json`: {received_at, device, kind, payload}."""
    stamp = time.time() if received_at is None else received_at
    return json.dumps(
        {"received_at": round(stamp, 3), "device": message.device, "kind": message.kind, "payload": message.document()}
    )


class Describer:
    """Readable lines; remembers each device's last state so only changes are shown."""

    def __init__(self) -> None:
        self._last_state: dict[str, dict[str, Any]] = {}

    def line(self, message: Received) -> str | None:
        document = message.document()
        kind = message.kind
        if kind == "availability":
            return f"{message.device} is {document}"
        if not isinstance(document, dict):
            return f"{message.device} {kind}: {document}"
        try:
            if kind == "detections":
                return f"{message.device} {_detections(document)}"
            if kind == "state":
                return self._state(message.device, document)
            if kind == "events":
                return f"{message.device} event: {_event(document)}"
            if kind.startswith("objects/"):
                return f"{message.device} {document['label']} count {document['count']}"
            if kind == "governor/decision":
                return f"{message.device} decision: {_decision(document)}"
            if kind == "power":
                return f"{message.device} power: {_power(document)}"
            if kind == "stats":
                return f"{message.device} stats: {_stats(document)}"
            if kind.startswith("set/") and kind.endswith("/result"):
                return f"{message.device} {kind.removesuffix('/result')} -> {_result(document)}"
        except (KeyError, TypeError, ValueError):
            pass  # not what edged publishes: show it raw
        return f"{message.device} {kind}: {json.dumps(document)}"

    def _state(self, device: str, document: dict[str, Any]) -> str | None:
        current = {k: v for k, v in document.items() if k != "at"}
        if self._last_state.get(device) == current:
            return None
        self._last_state[device] = current
        return f"{device} state: {_state(document)}"


def _detections(d: dict[str, Any]) -> str:
    objects = sorted(d["objects"], key=lambda o: -o["score"])
    shown = ", ".join(f"{o['label']}{_track(o)} {o['score']:.2f}" for o in objects[:MAX_OBJECTS_SHOWN])
    more = f" +{len(objects) - MAX_OBJECTS_SHOWN} more" if len(objects) > MAX_OBJECTS_SHOWN else ""
    energy = f" {d['energy_mj']:.1f} mJ" if d.get("energy_mj") is not None else ""
    found = f"{len(objects)} object{'s' if len(objects) != 1 else ''}"
    return (
        f"#{d['frame']} {d['variant']} {d['latency_ms']:.1f} ms{energy}  {found}{': ' if objects else ''}{shown}{more}"
    )


def _track(o: dict[str, Any]) -> str:
    return f" #{o['track_id']}" if o.get("track_id") is not None else ""


def _event(d: dict[str, Any]) -> str:
    after = d["after"]
    seen = f"top {after['top_score']:.2f}, {after['frames']} frames"
    if d["type"] == "end":
        seen += f", {after['end_time'] - after['start_time']:.1f} s"
    return f"{d['type']} {after['label']} #{after['track_id']} at frame {d['frame']} ({seen})"


def _state(d: dict[str, Any]) -> str:
    parts = [
        f"variant={d['variant']}",
        f"mode={d['mode']}",
        f"floor={d['accuracy_floor']:.2f}",
        f"fps={d['fps']:g}",
    ]
    if d.get("paused"):
        parts.append("PAUSED")
    if d.get("battery_pct") is not None:
        parts.append(f"battery={d['battery_pct']:.0f}%")
    if d.get("power_w") is not None:
        parts.append(f"power={d['power_w']:.2f} W ({d.get('power_quality') or 'unknown'})")
    if d.get("source_status", "ok") != "ok":
        parts.append(f"source: {d['source_status']}")
    if d.get("quarantined"):
        parts.append("quarantined: " + ", ".join(f"{k} ({v})" for k, v in d["quarantined"].items()))
    if d.get("error"):
        parts.append(f"error: {d['error']}")
    return " ".join(parts)


def _decision(d: dict[str, Any]) -> str:
    flags = f" [{', '.join(d['flags'])}]" if d.get("flags") else ""
    return f"{d['from_variant'] or '-'} -> {d['to_variant'] or '-'} at {d['fps']:g} fps: {d['reason']}{flags}"


def _power(d: dict[str, Any]) -> str:
    parts = []
    if d.get("power_w") is not None:
        parts.append(f"{d['power_w']:.2f} W")
    if d.get("voltage_v") is not None:
        parts.append(f"{d['voltage_v']:.2f} V")
    if d.get("battery_pct") is not None:
        parts.append(f"battery {d['battery_pct']:.0f}%{' charging' if d.get('charging') else ''}")
    parts.append(f"({d['source']}, {d['quality']})")
    return " ".join(parts)


def _stats(d: dict[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    return (
        f"{d['fps']:.1f} fps, p50 {ms(d.get('latency_p50_ms'))}, p95 {ms(d.get('latency_p95_ms'))}, "
        f"dropped frames {d['frames_dropped']}, outbox {d['outbox_depth']} (dropped {d['outbox_dropped']})"
    )


def _result(d: dict[str, Any]) -> str:
    if d["ok"]:
        return "ok" if d.get("value") is None else f"ok ({json.dumps(d['value'])})"
    return f"error: {d['error']}"
