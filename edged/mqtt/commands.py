"""Live commands (`<base>/set/<name>`): parsing and validation. Pure: bytes in, a typed command or an error out.

A payload is either a bare value (`0.3`, `true`, `eco`, `"eco"`) or a JSON object (`{"value": 0.3,
"expires_s": 60}`). Nothing here touches state: a command that fails validation never reaches the daemon's
handler, and the handler may still refuse a valid one by raising `CommandRejected` (e.g. an unknown variant).

| name             | value                                   | extra                                |
|------------------|-----------------------------------------|--------------------------------------|
| governor_mode    | auto / pinned / eco / performance       |                                      |
| variant          | a variant id (pins it), or null (unpin)  |                                      |
| accuracy_floor   | 0..1 (mAP50-95), or null (configured)    | expires_s: revert after this long    |
| fps              | > 0, <= 1000                             |                                      |
| paused           | true / false                             |                                      |
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from edged.errors import EdgedError
from edged.governor.config import GovernorMode

DEFAULT_MAX_COMMAND_BYTES = 4096
_BARE_WORD = re.compile(r"^[A-Za-z0-9_.:+-]+$")


class CommandError(EdgedError):
    """A command that cannot be accepted as sent: bad JSON, unknown name, wrong type, out of range, too big."""


class CommandRejected(EdgedError):
    """Raised by the daemon's handler to refuse a valid command; the message is published as the error."""


def _not_bool(value: Any) -> Any:
    """pydantic turns `true` into 1.0 for a float; a number field must not accept a boolean."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


Number = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SetGovernorMode(_Command):
    name: Literal["governor_mode"] = "governor_mode"
    value: GovernorMode


class SetVariant(_Command):
    name: Literal["variant"] = "variant"
    value: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.+-]{1,128}$")] | None = Field(
        description="variant id to pin; null releases the pin"
    )


class SetAccuracyFloor(_Command):
    name: Literal["accuracy_floor"] = "accuracy_floor"
    value: Annotated[Number, Field(ge=0.0, le=1.0)] | None = Field(
        description="minimum mAP50-95; null returns to the configured floor"
    )
    expires_s: Annotated[Number, Field(gt=0.0, le=7 * 24 * 3600)] | None = Field(
        None, description="revert to the configured floor after this many seconds"
    )


class SetFps(_Command):
    name: Literal["fps"] = "fps"
    value: Annotated[Number, Field(gt=0.0, le=1000.0)]


class SetPaused(_Command):
    name: Literal["paused"] = "paused"
    value: bool


Command = SetGovernorMode | SetVariant | SetAccuracyFloor | SetFps | SetPaused

COMMAND_MODELS: dict[str, type[_Command]] = {
    model.model_fields["name"].default: model
    for model in (SetGovernorMode, SetVariant, SetAccuracyFloor, SetFps, SetPaused)
}


def parse_command(name: str, payload: bytes, max_bytes: int = DEFAULT_MAX_COMMAND_BYTES) -> Command:
    """Validate one `set/<name>` message. Raises CommandError with a message fit to publish."""
    model = COMMAND_MODELS.get(name)
    if model is None:
        raise CommandError(f"unknown command '{name}'; known: {', '.join(sorted(COMMAND_MODELS))}")
    if len(payload) > max_bytes:
        raise CommandError(f"payload too large: {len(payload)} bytes (limit {max_bytes})")
    fields = _payload_fields(_decode(payload))
    try:
        command: Command = model.model_validate({**fields, "name": name})  # type: ignore[assignment]
    except ValidationError as exc:
        raise CommandError(_describe(exc)) from None
    return command


def _decode(payload: bytes) -> Any:
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError("payload is not UTF-8 text") from None
    if not text:
        raise CommandError('empty payload; send a value (e.g. 0.3, true, eco) or {"value": ...}')
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        if _BARE_WORD.match(text):
            return text  # a bare word such as `eco` or a variant id
        raise CommandError(f"invalid JSON: {_preview(text)}") from None
    except ValueError as exc:  # an integer past Python's conversion limit (4,300 digits)
        raise CommandError(f"invalid number: {exc}") from None


def _payload_fields(decoded: Any) -> dict[str, Any]:
    if isinstance(decoded, dict):
        if "name" in decoded:
            raise CommandError("the command name comes from the topic; remove 'name' from the payload")
        if "value" not in decoded:
            raise CommandError("a JSON object needs a 'value' field, e.g. {\"value\": 0.3}")
        return decoded
    if isinstance(decoded, list):
        raise CommandError("expected a value or a JSON object, got a list")
    return {"value": decoded}


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "value"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message} (got {_preview(repr(error.get('input')))})")
    return "; ".join(problems)


def _preview(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def command_value(command: Command) -> bool | float | str | None:
    """The value to echo in a CommandResult."""
    return command.value
