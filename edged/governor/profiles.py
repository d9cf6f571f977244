"""What the governor knows about each variant: one device class's accuracy, latency and energy, as plain numbers.

The governor never reads the zoo itself; `profiles_from_variants` turns manifest entries into these, so the
decision core stays free of files and of the vision stack.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from edged.errors import EdgedError

if TYPE_CHECKING:
    from edged.zoo.manifest import Variant

FigureQuality = Literal["measured", "estimated", "simulated"]


class VariantProfile(BaseModel):
    """A variant as the governor sees it, on one device class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    accuracy: float = Field(ge=0, le=1, description="mAP50-95 on the profile's eval set")
    latency_p50_ms: float = Field(gt=0)
    latency_p95_ms: float = Field(gt=0)
    energy_mj: float = Field(ge=0, description="energy per inference, above idle")
    energy_quality: FigureQuality = "measured"

    @property
    def joules(self) -> float:
        return self.energy_mj / 1000.0


def profiles_from_variants(variants: Iterable[Variant], device_class: str) -> list[VariantProfile]:
    """Profiles for `device_class`; a variant lacking one of the three figures is an error naming it."""
    profiles, problems = [], []
    for variant in variants:
        profile = variant.profiles.get(device_class)
        if profile is None:
            known = ", ".join(sorted(variant.profiles)) or "none"
            problems.append(f"variant '{variant.id}' has no profile for '{device_class}' (it has: {known})")
            continue
        missing = [name for name in ("accuracy", "latency", "energy") if getattr(profile, name) is None]
        if missing:
            problems.append(f"variant '{variant.id}' profile '{device_class}' lacks {', '.join(missing)}")
            continue
        assert profile.accuracy is not None and profile.latency is not None and profile.energy is not None
        profiles.append(
            VariantProfile(
                id=variant.id,
                accuracy=profile.accuracy.map50_95,
                latency_p50_ms=profile.latency.p50_ms,
                latency_p95_ms=profile.latency.p95_ms,
                energy_mj=profile.energy.mj_per_inference,
                energy_quality=profile.energy.quality,
            )
        )
    if problems:
        raise EdgedError("the governor needs accuracy, latency and energy for every variant: " + "; ".join(problems))
    return profiles
