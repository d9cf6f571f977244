"""JSON Schemas of the MQTT payloads, generated from the pydantic models in `edged.mqtt.messages`.

The `*.schema.json` files beside this module are committed so subscribers (dashboards, other robots) can validate
without Python. Regenerate after changing a model: `python -m edged.mqtt.schemas`; `--check` exits 1 when a
committed file is out of date (a test does the same).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from edged.mqtt.messages import (
    CommandResult,
    DecisionMessage,
    DetectionsMessage,
    EventMessage,
    ObjectCountMessage,
    PowerMessage,
    StateMessage,
    StatsMessage,
)

SCHEMA_DIR = Path(__file__).resolve().parent

MESSAGE_MODELS: dict[str, type[BaseModel]] = {
    "detections": DetectionsMessage,
    "state": StateMessage,
    "decision": DecisionMessage,
    "power": PowerMessage,
    "stats": StatsMessage,
    "command-result": CommandResult,
    "event": EventMessage,
    "object-count": ObjectCountMessage,
}


def schema_path(name: str, directory: Path = SCHEMA_DIR) -> Path:
    return directory / f"{name}.schema.json"


def render(name: str) -> str:
    """The JSON Schema document for one message, as committed (stable key order, trailing newline)."""
    schema = MESSAGE_MODELS[name].model_json_schema(by_alias=True, mode="serialization")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"edged/{name}/v1", **schema}
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def load(name: str, directory: Path = SCHEMA_DIR) -> dict:
    """A committed schema, parsed."""
    return json.loads(schema_path(name, directory).read_text())


def write_all(directory: Path = SCHEMA_DIR) -> list[Path]:
    paths = []
    for name in MESSAGE_MODELS:
        path = schema_path(name, directory)
        path.write_text(render(name))
        paths.append(path)
    return paths


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names whose committed schema is missing or differs from what the models generate."""
    out = []
    for name in MESSAGE_MODELS:
        path = schema_path(name, directory)
        if not path.is_file() or path.read_text() != render(name):
            out.append(name)
    return out
