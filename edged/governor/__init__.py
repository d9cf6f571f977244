"""The governor: which variant, at what fps, and why. Its decision is a pure function of its inputs.

The daemon needs only what is exported here (all light: pydantic and the standard library). The simulator,
the offline oracle and the plot live in `edged.governor.simulate`, `.oracle` and `.plot`, imported by the CLI.
"""

from edged.governor.config import BatteryBand, CorrectionConfig, GovernorConfig, mission_end_s
from edged.governor.decision import Decision, GovernorInputs, GovernorState, decide
from edged.governor.governor import Governor
from edged.governor.needs import AccuracyNeeds, FloorCommand
from edged.governor.profiles import VariantProfile, profiles_from_variants

__all__ = [
    "AccuracyNeeds",
    "BatteryBand",
    "CorrectionConfig",
    "Decision",
    "FloorCommand",
    "Governor",
    "GovernorConfig",
    "GovernorInputs",
    "GovernorState",
    "VariantProfile",
    "decide",
    "mission_end_s",
    "profiles_from_variants",
]
