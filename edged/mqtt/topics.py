"""The topic tree of one device (MQTT contract v1). Pure: names only, no client."""

from __future__ import annotations

import re
from dataclasses import dataclass

COMMAND_SEGMENT = "set"
RESULT_SUFFIX = "result"


def label_segment(label: str) -> str:
    """A label as one topic level and entity id: what is not a letter, digit, `-` or `_` becomes `_`
    (`traffic light` -> `traffic_light`; `/`, `+` and `#` would break the topic tree)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", label) or "_"


def label_collisions(labels: list[str]) -> list[str]:
    """Labels that would share one topic level and entity id (`traffic light` and `traffic_light`): their counts
    would overwrite each other, so a zoo with them is refused rather than published wrong."""
    by_segment: dict[str, list[str]] = {}
    for label in labels:
        by_segment.setdefault(label_segment(label), []).append(label)
    return [
        f"{' and '.join(map(repr, same))} -> objects/{segment}" for segment, same in by_segment.items() if len(same) > 1
    ]


@dataclass(frozen=True)
class Topics:
    """Every topic a device publishes or listens on, derived from `<topic_prefix>/<device_id>`."""

    prefix: str
    device_id: str
    discovery_prefix: str | None = "homeassistant"

    @property
    def base(self) -> str:
        return f"{self.prefix.rstrip('/')}/{self.device_id}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def detections(self) -> str:
        return f"{self.base}/detections"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    def object_count(self, label: str) -> str:
        """`<base>/objects/<label>`: the retained count of one label (see `label_segment` for odd labels)."""
        return f"{self.base}/objects/{label_segment(label)}"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def decision(self) -> str:
        return f"{self.base}/governor/decision"

    @property
    def power(self) -> str:
        return f"{self.base}/power"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def commands(self) -> str:
        """Subscription filter for every command: one level only, so results (`set/<name>/result`) don't match."""
        return f"{self.base}/{COMMAND_SEGMENT}/+"

    def command(self, name: str) -> str:
        return f"{self.base}/{COMMAND_SEGMENT}/{name}"

    def command_result(self, name: str) -> str:
        return f"{self.command(name)}/{RESULT_SUFFIX}"

    def command_name(self, topic: str) -> str | None:
        """`<base>/set/<name>` -> name; anything else -> None."""
        head = f"{self.base}/{COMMAND_SEGMENT}/"
        if not topic.startswith(head):
            return None
        name = topic[len(head) :]
        return name if name and "/" not in name else None

    @property
    def discovery_object_id(self) -> str:
        return f"edged_{self.device_id}"

    @property
    def discovery(self) -> str | None:
        """Home Assistant device discovery config topic; None when discovery is disabled."""
        if self.discovery_prefix is None:
            return None
        return f"{self.discovery_prefix}/device/{self.discovery_object_id}/config"

    @property
    def home_assistant_status(self) -> str | None:
        """Home Assistant's birth/last-will topic: `online` there means discovery must be sent again."""
        return None if self.discovery_prefix is None else f"{self.discovery_prefix}/status"
