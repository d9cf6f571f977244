"""Command parsing and validation: pure, no broker."""

from __future__ import annotations

from typing import get_args

import pytest

from edged.governor.config import GovernorConfig
from edged.mqtt.commands import (
    CommandError,
    SetAccuracyFloor,
    SetFps,
    SetGovernorMode,
    SetPaused,
    SetVariant,
    parse_command,
)


@pytest.mark.parametrize(
    ("name", "payload", "expected"),
    [
        ("accuracy_floor", b"0.3", SetAccuracyFloor(value=0.3)),
        ("accuracy_floor", b'{"value": 0.3, "expires_s": 60}', SetAccuracyFloor(value=0.3, expires_s=60)),
        ("accuracy_floor", b" 1 ", SetAccuracyFloor(value=1.0)),
        ("accuracy_floor", b"null", SetAccuracyFloor(value=None)),
        ("paused", b"true", SetPaused(value=True)),
        ("paused", b'{"value": false}', SetPaused(value=False)),
        ("governor_mode", b"eco", SetGovernorMode(value="eco")),
        ("governor_mode", b'"performance"', SetGovernorMode(value="performance")),
        ("fps", b"12.5", SetFps(value=12.5)),
        ("variant", b"yolox-nano-416", SetVariant(value="yolox-nano-416")),
        ("variant", b"null", SetVariant(value=None)),
    ],
)
def test_bare_values_and_json_objects_are_accepted(name: str, payload: bytes, expected: object) -> None:
    assert parse_command(name, payload) == expected


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("accuracy_floor", b'{"value": 0.3', "invalid JSON"),
        ("accuracy_floor", b"1.5", "less than or equal to 1"),
        ("accuracy_floor", b"-0.1", "greater than or equal to 0"),
        ("accuracy_floor", b"NaN", "finite number"),
        ("fps", b"Infinity", "finite number"),
        ("accuracy_floor", b'{"value": 0.3, "expires_s": 0}', "expires_s"),
        ("accuracy_floor", b'{"value": 0.3, "until": 5}', "until: Extra inputs are not permitted"),
        ("accuracy_floor", b'{"expires_s": 5}', "needs a 'value'"),
        ("fps", b"true", "expected a number, got a boolean"),
        ("fps", b"0", "greater than 0"),
        ("fps", b"fast", "valid number"),
        ("paused", b"maybe", "valid boolean"),
        ("governor_mode", b"turbo", "'auto', 'pinned', 'eco' or 'performance'"),
        ("variant", b'"../../etc/passwd"', "should match pattern"),
        ("variant", b"[1, 2]", "got a list"),
        ("paused", b"", "empty payload"),
        ("paused", b"\xff\xfe", "not UTF-8"),
        ("paused", b'{"name": "fps", "value": 1}', "comes from the topic"),
    ],
)
def test_bad_commands_are_refused_with_a_clear_error(name: str, payload: bytes, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(name, payload)
    assert message in str(caught.value)


@pytest.mark.parametrize("payload", [b"9" * 5000, b'{"value": ' + b"9" * 5000 + b"}", b"1e999999"])
def test_a_number_too_long_or_too_large_is_refused_not_raised(payload: bytes) -> None:
    """5,000 digits (a larger max_command_bytes allows them) once raised an unanswered ValueError."""
    with pytest.raises(CommandError) as caught:
        parse_command("fps", payload, max_bytes=10_000)
    assert "invalid number" in str(caught.value) or "fps" in str(caught.value) or "value" in str(caught.value)


def test_unknown_command_names_the_known_ones() -> None:
    with pytest.raises(CommandError, match="unknown command 'reboot'; known: accuracy_floor, fps, governor_mode"):
        parse_command("reboot", b"true")


def test_payload_over_the_cap_is_refused_before_parsing() -> None:
    huge = b'{"value": 0.3, "pad": "' + b"x" * 10_000 + b'"}'
    with pytest.raises(CommandError, match="payload too large: 10025 bytes \\(limit 4096\\)"):
        parse_command("accuracy_floor", huge)
    with pytest.raises(CommandError, match="limit 16"):
        parse_command("accuracy_floor", b"0.30000000000000001", max_bytes=16)


def test_deeply_nested_json_is_refused_not_crashing() -> None:
    with pytest.raises(CommandError):
        parse_command("paused", b"[" * 3000 + b"]" * 3000, max_bytes=10_000)


def test_governor_mode_takes_exactly_the_modes_of_the_governor_config() -> None:
    for mode in get_args(GovernorConfig.model_fields["mode"].annotation):
        assert parse_command("governor_mode", mode.encode()) == SetGovernorMode(value=mode)
