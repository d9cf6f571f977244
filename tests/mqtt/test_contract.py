"""The contract without a broker: topics, committed JSON Schemas, Home Assistant discovery."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import get_args

import jsonschema
import pytest

from edged.mqtt import schemas
from edged.mqtt.discovery import discovery_config
from edged.mqtt.messages import DecisionInputs, DecisionMessage, PowerMessage, PowerQuality
from edged.mqtt.topics import Topics
from tests.mqtt.conftest import detection, state

ROOT = Path(__file__).resolve().parents[2]


def test_topics_follow_the_contract() -> None:
    topics = Topics("edged", "cam1")
    assert topics.availability == "edged/cam1/availability"
    assert topics.detections == "edged/cam1/detections"
    assert topics.decision == "edged/cam1/governor/decision"
    assert topics.commands == "edged/cam1/set/+"
    assert topics.command_result("fps") == "edged/cam1/set/fps/result"
    assert topics.command_name("edged/cam1/set/fps") == "fps"
    assert topics.command_name("edged/cam1/set/fps/result") is None
    assert topics.command_name("edged/cam2/set/fps") is None
    assert topics.discovery == "homeassistant/device/edged_cam1/config"
    assert Topics("edged", "cam1", discovery_prefix=None).discovery is None


def test_committed_schemas_are_up_to_date() -> None:
    assert schemas.stale() == [], "run: python -m edged.mqtt.schemas"


def test_stale_finds_a_changed_or_missing_schema(tmp_path) -> None:
    written = schemas.write_all(tmp_path)
    assert schemas.stale(tmp_path) == []
    written[0].write_text("{}")
    written[1].unlink()
    assert schemas.stale(tmp_path) == [path.name.removesuffix(".schema.json") for path in written[:2]]


def run_schema_check(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """`python -m edged.mqtt.schemas --check` run on the `edged` package under `package_parent`."""
    command = [sys.executable, "-m", "edged.mqtt.schemas", "--check"]
    return subprocess.run(command, cwd=package_parent, capture_output=True, text=True, timeout=60)


def test_schema_check_command_passes_the_committed_schemas_and_fails_a_stale_one(tmp_path) -> None:
    """The check reads the schemas beside the package it runs from, so it runs on a copy where one is stale."""
    assert run_schema_check(ROOT).returncode == 0
    copy = tmp_path / "edged"
    shutil.copytree(ROOT / "edged", copy, ignore=shutil.ignore_patterns("__pycache__", "demo", "*.onnx"))
    stale_file = copy / "mqtt" / "schemas" / "state.schema.json"
    document = json.loads(stale_file.read_text())
    del document["properties"]["battery_pct"]  # a field the model has and the committed schema lost
    stale_file.write_text(json.dumps(document, indent=2) + "\n")
    result = run_schema_check(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{stale_file} is out of date" in result.stderr
    assert "detections.schema.json" not in result.stderr, "only the stale one is named"


def test_payloads_serialise_with_their_schema_id_and_validate() -> None:
    document = json.loads(detection(7).to_json())
    assert document["schema"] == "edged/detections/v1"
    jsonschema.validate(document, schemas.load("detections"))
    jsonschema.validate(json.loads(state().to_json()), schemas.load("state"))
    decision = DecisionMessage(
        device="cam1",
        at=1.0,
        from_variant="a",
        to_variant="b",
        fps=5,
        reason="battery below 30 %",
        inputs=DecisionInputs(mode="auto", accuracy_floor=0.2, battery_pct=29.0),
    )
    jsonschema.validate(json.loads(decision.to_json()), schemas.load("decision"))
    sample = PowerMessage(device="cam1", ts=1.0, power_w=4.0, source="simulated", quality="simulated")
    jsonschema.validate(json.loads(sample.to_json()), schemas.load("power"))


def test_schemas_refuse_what_subscribers_must_not_see() -> None:
    document = json.loads(detection(7).to_json())
    document["frame"] = -1
    with pytest.raises(jsonschema.ValidationError, match="minimum"):
        jsonschema.validate(document, schemas.load("detections"))
    document["frame"], document["extra"] = 1, True
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        jsonschema.validate(document, schemas.load("detections"))


def test_discovery_describes_every_entity_with_the_device_topics() -> None:
    config = discovery_config(Topics("edged", "cam1"))
    assert config["dev"]["ids"] == ["edged_cam1"]
    assert config["avty_t"] == "edged/cam1/availability"
    platforms = {key.removeprefix("edged_cam1_"): c["p"] for key, c in config["cmps"].items()}
    assert platforms == {
        "variant": "sensor",
        "fps": "sensor",
        "latency": "sensor",
        "battery": "sensor",
        "power": "sensor",
        "detections": "sensor",
        "governor_mode": "select",
        "accuracy_floor": "number",
        "paused": "switch",
    }
    cmps = config["cmps"]
    assert cmps["edged_cam1_governor_mode"]["cmd_t"] == "edged/cam1/set/governor_mode"
    assert cmps["edged_cam1_governor_mode"]["ops"] == ["auto", "pinned", "eco", "performance"]
    assert cmps["edged_cam1_paused"]["pl_on"] == "true"
    assert all(c["uniq_id"].startswith("edged_cam1_") for c in cmps.values())


def test_power_messages_carry_every_field_of_a_power_sample() -> None:
    from edged.power.sample import PowerSample, Quality

    assert get_args(PowerQuality) == get_args(Quality)
    sample = PowerSample(ts=1.0, source="simulated", quality="simulated", power_w=4.0, rails={"cpu": 2.5}, note="sim")
    message = PowerMessage.from_sample("cam1", sample)
    assert message.model_dump(exclude={"device", "schema_id"}) == sample.model_dump()
    jsonschema.validate(json.loads(message.to_json()), schemas.load("power"))


def test_decision_messages_are_built_from_the_governors_decision() -> None:
    from edged.governor.decision import Decision

    decision = Decision(
        at_s=12.0,
        variant="yolox-nano-416",
        fps=5.0,
        previous_variant="yolox-s",
        switched=True,
        reason="battery band 2: cheaper variant",
        flags=["fps_reduced"],
        mode="auto",
        accuracy=0.25,
        accuracy_floor=0.2,
        budget_w=3.5,
        budget_basis="band",
        budget_detail="30 % < battery < 50 %",
        predicted_power_w=3.1,
        predicted_p95_ms=40.0,
        latency_ratio=1.1,
        power_ratio=0.9,
        meter_scale=1.0,
        battery_pct=42.0,
    )
    message = DecisionMessage.from_decision("cam1", decision, at=1_700_000_000.0)
    document = json.loads(message.to_json())
    assert (document["from_variant"], document["to_variant"], document["flags"]) == (
        "yolox-s",
        "yolox-nano-416",
        ["fps_reduced"],
    )
    assert document["inputs"]["budget_basis"] == "band" and document["at"] == 1_700_000_000.0
    jsonschema.validate(document, schemas.load("decision"))


def test_discovery_has_a_count_and_an_occupancy_per_label_and_a_variant_select() -> None:
    config = discovery_config(Topics("edged", "cam1"), labels=["person", "traffic light"], variants=["a", "b"])
    cmps = config["cmps"]
    count, occupancy = cmps["edged_cam1_traffic_light_count"], cmps["edged_cam1_traffic_light_occupancy"]
    assert (count["p"], count["stat_t"], count["val_tpl"]) == (
        "sensor",
        "edged/cam1/objects/traffic_light",
        "{{ value_json.count }}",
    )
    assert (occupancy["p"], occupancy["dev_cla"], occupancy["stat_t"]) == (
        "binary_sensor",
        "occupancy",
        "edged/cam1/objects/traffic_light",
    )
    assert cmps["edged_cam1_person_count"]["name"] == "person count"
    variant = cmps["edged_cam1_variant"]
    assert (variant["p"], variant["cmd_t"], variant["ops"]) == ("select", "edged/cam1/set/variant", ["a", "b"])
    assert len({c["uniq_id"] for c in cmps.values()}) == len(cmps) == 9 + 2 * 2


def test_labels_that_would_share_a_count_topic_are_named():
    from edged.mqtt.topics import label_collisions

    assert label_collisions(["person", "traffic light", "car"]) == []
    clashes = label_collisions(["traffic light", "traffic_light", "car", "bus/van", "bus+van"])
    assert clashes == [
        "'traffic light' and 'traffic_light' -> objects/traffic_light",
        "'bus/van' and 'bus+van' -> objects/bus_van",
    ]
