"""Every external input, fuzzed (hypothesis): MQTT commands, config, manifest and scenario files, sensor files.

The contract (DESIGN.md, "Quality bars"): bad input gets a clear error that names what is wrong — a CommandError, a
ConfigError whose every problem names the file and the line, a PowerSourceError — never another exception, never
a wrong number, and a rejected input changes nothing. Structured inputs are fuzzed by mutating a valid document
(delete, replace or add a key, a typo, an unset ${VAR}), which reaches far deeper than random text.
Example counts stay modest (EDGED_FUZZ_EXAMPLES raises them); CI replays the same examples (HYPOTHESIS_PROFILE=ci).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edged.config import EdgedConfig, load_config
from edged.daemon import Daemon
from edged.errors import ConfigError, EdgedError
from edged.governor import GovernorConfig
from edged.governor.scenario import load_scenario
from edged.mqtt.commands import COMMAND_MODELS, CommandError, CommandRejected, parse_command
from edged.mqtt.messages import PowerMessage
from edged.power.sources import PowerSourceError, SourceContext
from edged.power.sources.hwmon import ChannelValues, HwmonConfig, hwmon_sample
from edged.power.sources.power_supply import PowerSupplyConfig, SupplyValues, supply_sample
from edged.yamlfile import parse_yaml
from edged.zoo.manifest import load_zoo
from tests.power.sysfs import FakeSysfs, laptop_battery, pi_ups_ina219

ROOT = Path(__file__).resolve().parents[1]
DEMO_CLIP = ROOT / "edged" / "demo" / "vtest_10s.mp4"
SCENARIO = ROOT / "deploy" / "scenarios" / "drone-survey.yaml"

FUZZ = settings(
    max_examples=int(os.environ.get("EDGED_FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(10**20), max_value=10**20) | st.floats() | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


# --- MQTT commands ------------------------------------------------------------------------------------------------

command_names = st.sampled_from(sorted(COMMAND_MODELS)) | st.text(max_size=16)
tricky_payloads = st.sampled_from(
    [b"", b" ", b"eco", b"auto", b"pinned", b"true", b"null", b"NaN", b"-Infinity", b"1e400", b"-0", b"[]", b"{}",
     b'{"value": 1, "name": "fps"}', b'{"value": 0.5, "expires_s": 0}', b"\xff\xfe", b"0.3\x00", b'"eco"']
)  # fmt: skip


@st.composite
def command_payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "text", "json", "object", "tricky"]))
    if kind == "bytes":
        return draw(st.binary(max_size=120))
    if kind == "text":
        return draw(st.text(max_size=40)).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "object":
        fields = draw(st.fixed_dictionaries({"value": json_values}, optional={"expires_s": json_values}))
        return json.dumps(fields).encode()
    return draw(tricky_payloads)


@FUZZ
@given(name=command_names, payload=command_payloads())
def test_any_command_is_a_valid_command_or_a_command_error(name, payload):
    try:
        command = parse_command(name, payload)
    except CommandError as exc:
        assert str(exc).strip(), "the error says what is wrong"
        return
    assert isinstance(command, COMMAND_MODELS[name]) and command.name == name
    canonical = json.dumps(command.model_dump(exclude={"name"})).encode()
    assert parse_command(name, canonical) == command, "an accepted command survives its own JSON form"


@FUZZ
@given(name=st.sampled_from(sorted(COMMAND_MODELS)), payload=st.binary(min_size=65, max_size=300))
def test_a_command_over_the_size_limit_is_refused_whatever_it_holds(name, payload):
    with pytest.raises(CommandError, match="too large"):
        parse_command(name, payload, max_bytes=64)


@pytest.fixture(scope="module")
def idle_daemon(profiled_zoo, tmp_path_factory):
    """A Daemon built on the profiled zoo, its worker started, its control loop driven by the test instead."""
    state = tmp_path_factory.mktemp("fuzz-daemon")
    config = EdgedConfig.model_validate(
        {
            "source": {"type": "file", "path": str(DEMO_CLIP)},
            "zoo": {"path": str(profiled_zoo), "device_class": "ci-test"},
            "power": {"sources": [{"type": "simulated"}]},
            "mqtt": {"enabled": False, "outbox_path": str(state / "outbox.sqlite3")},
        }
    )
    daemon = Daemon(config)
    daemon.worker.start("fastestdet-352")
    yield daemon
    daemon.worker.stop()


@st.composite
def daemon_commands(draw: st.DrawFn) -> tuple[str, bytes]:
    """Mostly plausible values for each command (so that many are accepted), with the junk mixed in."""
    name = draw(st.sampled_from(sorted(COMMAND_MODELS)))
    plausible = {
        "governor_mode": st.sampled_from(["auto", "pinned", "eco", "performance", "turbo"]),
        "variant": st.sampled_from(["nanodet-m-320", "fastestdet-352", "fastestdet-352-tflite-int8", "yolo9000"])
        | st.none(),
        "accuracy_floor": st.floats(-0.5, 1.5) | st.none(),
        "fps": st.floats(-1.0, 2000.0) | st.sampled_from([1e-300, 5e-324, 1000.0]),
        "paused": st.booleans(),
    }[name]
    value = draw(plausible | json_values)
    document: dict[str, Any] = {"value": value}
    if name == "accuracy_floor" and draw(st.booleans()):
        document["expires_s"] = draw(st.floats(-10.0, 1e6) | json_values)
    return name, json.dumps(document).encode()


def controls_of(daemon: Daemon) -> tuple[Any, ...]:
    return copy.deepcopy(daemon.controls), daemon.producer.fps_limit, daemon.producer.paused, daemon.worker.paused


@FUZZ
@given(command=daemon_commands())
def test_the_daemon_refuses_a_command_without_changing_anything_and_applies_the_rest_cleanly(idle_daemon, command):
    name, payload = command
    try:
        parsed = parse_command(name, payload)
    except CommandError:
        return
    before = controls_of(idle_daemon)
    try:
        idle_daemon._on_command(parsed)  # the validation the MQTT command thread runs
    except CommandRejected as exc:
        assert str(exc)
        assert controls_of(idle_daemon) == before and idle_daemon._commands.empty()
        return
    idle_daemon._apply_commands()  # what the control loop does next: must never raise
    policy = idle_daemon.controls.policy
    GovernorConfig.model_validate(policy.model_dump())  # an accepted command leaves a valid policy
    if name == "fps":
        assert policy.fps_target == parsed.value and policy.fps_min <= policy.fps_target
    if name == "variant" and parsed.value is not None:
        assert policy.mode == "pinned" and policy.pinned_variant == parsed.value
    assert idle_daemon.governor is not None and idle_daemon.governor.last is not None


# --- structured documents: mutations of a valid one ---------------------------------------------------------------

UNSET_VARIABLE = "EDGED_FUZZ_NEVER_SET"


def paths_in(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a nested dict/list document."""
    found = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths_in(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths_in(value, (*prefix, index))
    return found


@st.composite
def mutated(
    draw: st.DrawFn, valid: dict[str, Any], free_form: frozenset[str] = frozenset()
) -> tuple[dict[str, Any], str | None]:
    """A valid document with one to three mutations. Returns it, and the unknown key (or typo) it holds when that was
    its only mutation: then the error must name it. `free_form`: maps whose keys are data, not fields."""
    document = copy.deepcopy(valid)
    added: str | None = None
    mutations = draw(st.integers(1, 3))
    for _ in range(mutations):
        path = draw(st.sampled_from(paths_in(document)))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = draw(st.sampled_from(["delete", "replace", "replace", "unknown", "typo", "env"]))
        if len(path) > 1 and path[-2] in free_form and action in ("unknown", "typo"):
            action = "delete"
        if action == "delete":
            del parent[key]
        elif action == "replace":
            parent[key] = draw(json_values)
        elif action == "env":
            parent[key] = f"${{{UNSET_VARIABLE}}}"
        elif isinstance(parent, dict) and action == "unknown":
            unknown = "x_" + draw(st.from_regex(r"[a-z_]{1,10}", fullmatch=True))
            parent[unknown] = draw(json_values)
            added = unknown
        elif isinstance(parent, dict) and action == "typo" and isinstance(key, str) and len(key) > 2:
            typo = key[:-1]
            assume(typo not in parent)
            parent[typo] = parent.pop(key)
            added = typo
    return document, added if mutations == 1 else None


def mentions(exc: ConfigError, unknown: str | None) -> bool:
    """An added unknown key is named among the problems. Exception: a typo in a union's `type` (pydantic cannot
    tell which fields belong without it, so it says the type is missing)."""
    if unknown is None or any("discriminator 'type'" in problem for problem in exc.problems):
        return True
    return any(unknown in problem for problem in exc.problems)


def assert_problems_located(exc: ConfigError, name: str, text: str) -> None:
    """Each problem names the file and, for a document that has a body, a line inside it."""
    assert exc.problems
    lines = text.count("\n") + 1
    for problem in exc.problems:
        assert problem.startswith(name), problem
        located = re.match(rf"^{re.escape(name)}:(\d+): ", problem)
        assert located, f"no line in: {problem}"
        assert 1 <= int(located.group(1)) <= lines, problem


def valid_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy" / "configs" / "laptop.yaml").read_text())


@pytest.fixture(scope="module", autouse=True)
def _environment():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MQTT_PASSWORD", "secret")  # the laptop example reads it from the environment
        patch.delenv(UNSET_VARIABLE, raising=False)
        yield


@FUZZ
@given(case=mutated(valid_config()))
def test_a_mutated_config_is_valid_or_every_problem_names_its_line(case):
    document, unknown = case
    text = yaml.safe_dump(document, sort_keys=False)
    try:
        parse_yaml(text, "edged.yaml").validate(EdgedConfig)
    except ConfigError as exc:
        assert_problems_located(exc, "edged.yaml", text)
        assert mentions(exc, unknown), exc.problems
        return
    assert unknown is None, f"the unknown key {unknown!r} was accepted silently"


yaml_fragments = st.sampled_from(
    ["source:", "  type: file", "  path: x.mp4", "mqtt:", "  port: 99999", "  port: [1", "- a", "a: b: c", "\t",
     "${EDGED_FUZZ_NEVER_SET}", "&a x", "*a", "!!python/object:os.system", "? x", "'", '"', "{", "---", "...", ":"]
)  # fmt: skip


@FUZZ
@given(lines=st.lists(yaml_fragments | st.text(max_size=20), max_size=8))
def test_any_config_text_is_a_config_or_a_config_error(lines):
    text = "\n".join(lines)
    assume(not yaml.reader.Reader.NON_PRINTABLE.search(text))  # see the test below
    try:
        parse_yaml(text, "edged.yaml").validate(EdgedConfig)
    except ConfigError as exc:
        assert exc.problems and all(problem.startswith("edged.yaml") for problem in exc.problems)


def test_a_config_with_a_control_character_is_a_config_error(tmp_path):
    path = tmp_path / "edged.yaml"
    path.write_text("source:\n  type: file\n  path: clip.mp4\x1f\n")
    with pytest.raises(ConfigError, match=r"edged\.yaml:3"):
        load_config(path)


MODEL_BYTES = b"not a model: load_zoo checks the file's presence and sha256, not its contents"


def valid_manifest() -> dict[str, Any]:
    variant = {
        "id": "tiny-352",
        "technique": "distilled+int8",
        "format": "onnx",
        "file": "tiny.onnx",
        "sha256": hashlib.sha256(MODEL_BYTES).hexdigest(),
        "input": {"size": [352, 352], "color": "BGR", "resize": "stretch", "scale": 0.00392156862745098},
        "decoder": "fastestdet",
        "provenance": {"parent": "big-640", "seed": 0, "data": ["coco128-train"]},
        "profiles": {
            "ci-test": {
                "accuracy": {"eval_set": "coco-val-dev", "map50_95": 0.2, "map50": 0.35},
                "latency": {"p50_ms": 7.5, "p95_ms": 9.0, "threads": 2},
                "energy": {"mj_per_inference": 37.5, "quality": "estimated", "method": "latency x 5 W"},
            }
        },
    }
    return {"schema": "edged.zoo/v1", "family": "fuzz", "labels": ["person", "car"], "variants": [variant]}


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz-zoo")
    (directory / "tiny.onnx").write_bytes(MODEL_BYTES)
    return directory


def test_the_manifest_being_mutated_is_valid(zoo_dir):
    (zoo_dir / "zoo.yaml").write_text(yaml.safe_dump(valid_manifest()))
    assert [v.id for v in load_zoo(zoo_dir).variants] == ["tiny-352"]


@FUZZ
@given(case=mutated(valid_manifest(), free_form=frozenset({"profiles", "per_class_ap"})))
def test_a_mutated_manifest_loads_or_every_problem_names_its_line(zoo_dir, case):
    document, unknown = case
    text = yaml.safe_dump(document, sort_keys=False)
    (zoo_dir / "zoo.yaml").write_text(text)
    name = str(zoo_dir / "zoo.yaml")
    try:
        load_zoo(zoo_dir)
    except ConfigError as exc:
        assert_problems_located(exc, name, text)
        assert mentions(exc, unknown), exc.problems
        return
    except EdgedError as exc:  # a problem found after validation (e.g. labels): still says what is wrong
        assert str(exc)
        return
    assert unknown is None, f"the unknown key {unknown!r} was accepted silently"


@pytest.fixture(scope="module")
def scenario_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-scenario")


@FUZZ
@given(case=mutated(yaml.safe_load(SCENARIO.read_text())))
def test_a_mutated_scenario_loads_or_every_problem_names_its_line(scenario_dir, case):
    document, unknown = case
    text = yaml.safe_dump(document, sort_keys=False)
    path = scenario_dir / "scenario.yaml"
    path.write_text(text)
    try:
        load_scenario(path)
    except ConfigError as exc:
        assert_problems_located(exc, str(path), text)
        assert mentions(exc, unknown), exc.problems
        return
    assert unknown is None, f"the unknown key {unknown!r} was accepted silently"


# --- sensor files -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sensors(tmp_path_factory) -> FakeSysfs:
    fs = FakeSysfs(tmp_path_factory.mktemp("fuzz-sysfs"))
    laptop_battery(fs)
    pi_ups_ina219(fs)
    return fs


# (config, class, device, attribute, how the sample shows the attribute's integer, or None where it is not shown)
SENSOR_FILES = [
    (PowerSupplyConfig(type="power_supply", name="BAT0"), "power_supply", "BAT0", "power_now", "power_w", 1e-6),
    (PowerSupplyConfig(type="power_supply", name="BAT0"), "power_supply", "BAT0", "voltage_now", "voltage_v", 1e-6),
    (PowerSupplyConfig(type="power_supply", name="BAT0"), "power_supply", "BAT0", "energy_now", "battery_wh", 1e-6),
    (PowerSupplyConfig(type="power_supply", name="BAT0"), "power_supply", "BAT0", "capacity", "battery_pct", 1.0),
    (PowerSupplyConfig(type="power_supply", name="BAT0"), "power_supply", "BAT0", "status", None, None),
    (HwmonConfig(type="hwmon", chip="ina219"), "hwmon", "hwmon2", "curr1_input", "current_a", 1e-3),
    (HwmonConfig(type="hwmon", chip="ina219"), "hwmon", "hwmon2", "in1_input", "voltage_v", 1e-3),
    (HwmonConfig(type="hwmon", chip="ina219"), "hwmon", "hwmon2", "power1_input", "power_w", 1e-6),
]

file_contents = st.one_of(
    st.binary(max_size=30),
    st.integers(min_value=-(10**12), max_value=10**12).map(lambda v: f"{v}\n".encode()),
    st.integers(min_value=10**12, max_value=10**250).map(lambda v: f"{v}\n".encode()),  # larger: see below
    st.sampled_from([b"", b"\n", b" 12 \n", b"12 34\n", b"0x10\n", b"1.5\n", b"nan\n", b"-\n", b"Charging\n", b"\xff"]),
)


def as_integer(content: bytes) -> int | None:
    """What the kernel's integer would be, read as sysfs files are read (ASCII)."""
    text = content.decode("ascii", errors="replace").strip()
    return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) and len(text) < 4000 else None


@FUZZ
@given(sensor=st.sampled_from(SENSOR_FILES), content=file_contents)
def test_a_sensor_file_with_any_content_reads_as_its_value_or_a_reported_error(sensors, sensor, content):
    config, cls, device, attribute, field, unit = sensor
    path = sensors.path(cls, device, attribute)
    original = path.read_bytes()
    path.write_bytes(content)
    try:
        sample = config.open(SourceContext(sysfs_root=sensors.root, listen_s=0)).read()
    except PowerSourceError as exc:
        assert attribute in str(exc) or "no " in str(exc), str(exc)
        return
    finally:
        path.write_bytes(original)
    value = as_integer(content)
    if field is not None:
        assert value is not None, f"{content!r} in {attribute} was read as a number"
        magnitude = field in ("power_w", "current_a")  # documented >= 0: the direction is in `charging`
        expected = (abs(value) if magnitude else value) * unit
        if field == "battery_wh" and expected < 0:  # a gauge below empty: dropped, and the note says so
            assert sample.battery_wh is None and "ignored" in (sample.note or "")
        elif field == "battery_pct" and not 0 <= expected <= 100:  # an uncalibrated gauge: clamped, noted
            assert sample.battery_pct == min(100.0, max(0.0, expected)) and "clamped" in (sample.note or "")
        else:
            assert getattr(sample, field) == pytest.approx(expected)


@pytest.mark.parametrize("sensor", [SENSOR_FILES[0], SENSOR_FILES[5]], ids=["power_supply", "hwmon"])
def test_an_absurdly_large_number_in_a_sensor_file_is_a_reported_error(sensors, sensor):
    config, cls, device, attribute, _field, _unit = sensor
    path = sensors.path(cls, device, attribute)
    original = path.read_bytes()
    path.write_text("1" + "0" * 400 + "\n")
    try:
        with pytest.raises(PowerSourceError, match=attribute):
            config.open(SourceContext(sysfs_root=sensors.root, listen_s=0)).read()
    finally:
        path.write_bytes(original)


supply_readings = st.builds(
    SupplyValues,
    kind=st.just("Battery"),
    status=st.sampled_from([None, "Charging", "Discharging", "Full", "Unknown"]),
    capacity=st.none() | st.integers(-5, 120),
    energy_now=st.none() | st.integers(-1000, 30_000_000),
    energy_full=st.none() | st.integers(-1000, 30_000_000),
    charge_now=st.none() | st.integers(-1000, 5_000_000),
    charge_full=st.none() | st.integers(-1000, 5_000_000),
    voltage_now=st.none() | st.integers(0, 20_000_000),
).map(lambda values: supply_sample("power_supply:BAT0", values, 0.0))
hwmon_readings = st.builds(
    ChannelValues,
    label=st.just("VIN"),
    bus_mv=st.integers(0, 30_000),
    current_ma=st.integers(-5_000, 5_000),
    power_uw=st.none() | st.integers(-1_000_000, 50_000_000),
).map(lambda channel: hwmon_sample("hwmon:ina219", [channel], 0.0))


@settings(FUZZ, report_multiple_bugs=False)
@given(sample=supply_readings | hwmon_readings)
def test_a_reading_is_never_outside_what_its_messages_accept(sample):
    PowerMessage.from_sample("cam1", sample)
