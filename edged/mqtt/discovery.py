"""Home Assistant MQTT *device* discovery (one retained config message describing every entity). Pure.

Published retained at `<discovery_prefix>/device/edged_<id>/config` on every connect and again whenever Home
Assistant announces `online` on `<discovery_prefix>/status` (it forgets non-retained configs when it restarts).
Uses HA's abbreviated keys (`dev`, `o`, `cmps`, `stat_t`, ...). `stopped` and `offline` both mean unavailable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, get_args

from edged import __version__
from edged.governor.config import GovernorMode
from edged.mqtt.topics import Topics, label_segment

_AVAILABILITY_TEMPLATE = "{{ 'online' if value == 'online' else 'offline' }}"


def discovery_config(
    topics: Topics, device_name: str | None = None, labels: Sequence[str] = (), variants: Sequence[str] = ()
) -> dict[str, Any]:
    """The device discovery payload for one edged device: with the zoo's `labels`, a count sensor and an occupancy
    binary sensor per label; with its `variants`, the variant is a select that pins the chosen one."""
    uid = topics.discovery_object_id
    return {
        "dev": {
            "ids": [uid],
            "name": device_name or f"edged {topics.device_id}",
            "mf": "edged",
            "mdl": "edged inference daemon",
            "sw": __version__,
        },
        "o": {"name": "edged", "sw": __version__},
        "avty_t": topics.availability,
        "avty_tpl": _AVAILABILITY_TEMPLATE,
        "qos": 1,
        "cmps": {**_components(topics, uid, variants), **_object_components(topics, uid, labels)},
    }


def _components(topics: Topics, uid: str, variants: Sequence[str]) -> dict[str, dict[str, Any]]:
    state, stats = topics.state, topics.stats
    return {
        f"{uid}_variant": _variant(topics, uid, variants),
        f"{uid}_fps": _sensor(
            uid, "fps", "Frame rate", stats, "{{ value_json.fps | round(2) }}", unit="fps", state_class="measurement"
        ),
        f"{uid}_latency": _sensor(
            uid,
            "latency",
            "Latency p50",
            stats,
            "{{ value_json.latency_p50_ms }}",
            unit="ms",
            device_class="duration",
            state_class="measurement",
        ),
        f"{uid}_battery": _sensor(
            uid,
            "battery",
            "Battery",
            state,
            "{{ value_json.battery_pct }}",
            unit="%",
            device_class="battery",
            state_class="measurement",
        ),
        f"{uid}_power": _sensor(
            uid,
            "power",
            "Power",
            state,
            "{{ value_json.power_w }}",
            unit="W",
            device_class="power",
            state_class="measurement",
        ),
        f"{uid}_detections": _sensor(
            uid,
            "detections",
            "Objects in frame",
            topics.detections,
            "{{ value_json.objects | length }}",
            state_class="measurement",
            icon="mdi:cctv",
        ),
        f"{uid}_governor_mode": {
            "p": "select",
            "name": "Governor mode",
            "uniq_id": f"{uid}_governor_mode",
            "stat_t": state,
            "val_tpl": "{{ value_json.mode }}",
            "cmd_t": topics.command("governor_mode"),
            "ops": list(get_args(GovernorMode)),
            "icon": "mdi:tune",
        },
        f"{uid}_accuracy_floor": {
            "p": "number",
            "name": "Accuracy floor",
            "uniq_id": f"{uid}_accuracy_floor",
            "stat_t": state,
            "val_tpl": "{{ value_json.accuracy_floor }}",
            "cmd_t": topics.command("accuracy_floor"),
            "min": 0.0,
            "max": 1.0,
            "step": 0.01,
            "mode": "box",
        },
        f"{uid}_paused": {
            "p": "switch",
            "name": "Paused",
            "uniq_id": f"{uid}_paused",
            "stat_t": state,
            "val_tpl": "{{ 'ON' if value_json.paused else 'OFF' }}",
            "cmd_t": topics.command("paused"),
            "pl_on": "true",
            "pl_off": "false",
            "stat_on": "ON",
            "stat_off": "OFF",
            "icon": "mdi:pause",
        },
    }


def _variant(topics: Topics, uid: str, variants: Sequence[str]) -> dict[str, Any]:
    """The active variant; a select when the variants are known: choosing one pins it (set/variant)."""
    sensor = _sensor(uid, "variant", "Variant", topics.state, "{{ value_json.variant }}", icon="mdi:brain")
    if not variants:
        return sensor
    return {**sensor, "p": "select", "cmd_t": topics.command("variant"), "ops": list(variants)}


def _object_components(topics: Topics, uid: str, labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per label: how many are tracked now (objects/<label>), and whether any is (occupancy)."""
    components: dict[str, dict[str, Any]] = {}
    for label in labels:
        key, topic = label_segment(label), topics.object_count(label)
        components[f"{uid}_{key}_count"] = _sensor(
            uid, f"{key}_count", f"{label} count", topic, "{{ value_json.count }}", state_class="measurement"
        )
        components[f"{uid}_{key}_occupancy"] = {
            "p": "binary_sensor",
            "name": f"{label} occupancy",
            "uniq_id": f"{uid}_{key}_occupancy",
            "stat_t": topic,
            "val_tpl": "{{ 'ON' if value_json.count > 0 else 'OFF' }}",
            "pl_on": "ON",
            "pl_off": "OFF",
            "dev_cla": "occupancy",
        }
    return components


def _sensor(
    uid: str,
    key: str,
    name: str,
    topic: str,
    template: str,
    *,
    unit: str | None = None,
    device_class: str | None = None,
    state_class: str | None = None,
    icon: str | None = None,
) -> dict[str, Any]:
    sensor: dict[str, Any] = {
        "p": "sensor",
        "name": name,
        "uniq_id": f"{uid}_{key}",
        "stat_t": topic,
        "val_tpl": template,
    }
    optional = {"unit_of_meas": unit, "dev_cla": device_class, "stat_cla": state_class, "icon": icon}
    sensor.update({k: v for k, v in optional.items() if v is not None})
    return sensor
