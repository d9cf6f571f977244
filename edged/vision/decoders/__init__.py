"""Decoders, chosen by the manifest's `decoder.type`.

Every module in this package that defines a DecoderSpec subclass with a `type: Literal[...]` joins the union
below, so adding a decoder is adding one file (as Frigate does with its detector plugins).
"""

from __future__ import annotations

import importlib
import pkgutil
import typing
from typing import Annotated, Any, Union

from pydantic import Field

from edged.vision.decoders.base import Candidates, Decoder, DecoderMismatch, DecoderSpec


def _discover() -> dict[str, type[DecoderSpec]]:
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    found = {}
    for spec in DecoderSpec.__subclasses__():
        (name,) = typing.get_args(spec.model_fields["type"].annotation)
        found[name] = spec
    return dict(sorted(found.items()))


DECODERS: dict[str, type[DecoderSpec]] = _discover()

# The manifest's `decoder` field: a discriminated union over every decoder found above.
AnyDecoderSpec: Any = Annotated[Union[tuple(DECODERS.values())], Field(discriminator="type")]  # noqa: UP007

__all__ = ["DECODERS", "AnyDecoderSpec", "Candidates", "Decoder", "DecoderMismatch", "DecoderSpec"]
