"""Power sources, chosen by `type` in the config's `power.sources` list, or auto-detected.

Every module in this package that defines a PowerSourceConfig subclass with a `type: Literal[...]` joins the
union below, so adding a source is adding one file (as Frigate does with its detector plugins).
"""

from __future__ import annotations

import importlib
import pkgutil
import typing
from typing import Annotated, Any, Union

from pydantic import Field

from edged.power.sources.base import (
    Detection,
    PowerSource,
    PowerSourceConfig,
    PowerSourceError,
    SourceContext,
)

_NOT_PLUGINS = {"base", "sysfs"}


def _discover() -> dict[str, type[PowerSourceConfig]]:
    for module in pkgutil.iter_modules(__path__):
        if module.name not in _NOT_PLUGINS:
            importlib.import_module(f"{__name__}.{module.name}")
    found = {}
    for config in PowerSourceConfig.__subclasses__():
        (name,) = typing.get_args(config.model_fields["type"].annotation)
        found[name] = config
    return dict(sorted(found.items(), key=lambda item: item[1].rank))


# type name -> config class, in auto-detection order
SOURCE_TYPES: dict[str, type[PowerSourceConfig]] = _discover()

# One `power.sources` entry: a discriminated union over every source type found above.
AnyPowerSourceConfig: Any = Annotated[Union[tuple(SOURCE_TYPES.values())], Field(discriminator="type")]  # noqa: UP007


def detect_all(ctx: SourceContext) -> dict[str, Detection]:
    """Every source type's detection result, in auto-detection order (those never auto-detected included)."""
    return {name: config.detect(ctx) for name, config in SOURCE_TYPES.items()}


def detected_configs(ctx: SourceContext) -> list[PowerSourceConfig]:
    """The configs auto-detection would use, best first."""
    return [config for detection in detect_all(ctx).values() for config in detection.found]


__all__ = [
    "SOURCE_TYPES",
    "AnyPowerSourceConfig",
    "Detection",
    "PowerSource",
    "PowerSourceConfig",
    "PowerSourceError",
    "SourceContext",
    "detect_all",
    "detected_configs",
]
