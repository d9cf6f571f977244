"""Shared figures for the governor tests: four variants shaped like the drone scenario's (Pi 5, assumed)."""

from __future__ import annotations

import pytest

from edged.governor import GovernorConfig, GovernorInputs, VariantProfile

BEST = VariantProfile(id="best", accuracy=0.339, latency_p50_ms=66.0, latency_p95_ms=69.6, energy_mj=264.0)
GOOD = VariantProfile(id="good", accuracy=0.270, latency_p50_ms=40.8, latency_p95_ms=48.3, energy_mj=163.2)
FAIR = VariantProfile(id="fair", accuracy=0.229, latency_p50_ms=26.7, latency_p95_ms=30.6, energy_mj=106.8)
CHEAP = VariantProfile(id="cheap", accuracy=0.205, latency_p50_ms=21.3, latency_p95_ms=23.1, energy_mj=85.2)
VARIANTS = [BEST, GOOD, FAIR, CHEAP]

# At 10 fps with 3 W idle: best 5.64 W, good 4.63 W, fair 4.07 W, cheap 3.85 W.
IDLE_W = 3.0


def policy(**overrides: object) -> GovernorConfig:
    settings: dict[str, object] = {
        "fps_target": 10,
        "fps_min": 5,
        "latency_slo_ms": 100,
        "idle_power_w": IDLE_W,
        "min_dwell_s": 10,
        "switch_up_margin": 0.0,
    }
    settings.update(overrides)
    return GovernorConfig.model_validate(settings)


def budget_inputs(watts: float, now_s: float = 0.0, **extra: object) -> GovernorInputs:
    """Inputs whose mission budget is exactly `watts` (1 Wh above a zero reserve, spread over the time left)."""
    remaining_s = 3600.0 / watts
    values: dict[str, object] = {"now_s": now_s, "battery_wh": 1.0, "mission_end_s": now_s + remaining_s}
    values.update(extra)
    return GovernorInputs.model_validate(values)


@pytest.fixture
def variants() -> list[VariantProfile]:
    return list(VARIANTS)
