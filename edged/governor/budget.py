"""How much power the governor may spend: spread the battery over the rest of the mission, or follow the bands.

P_budget = (E_remaining − E_reserve) / T_remaining when the mission end is known; otherwise the battery band in
force (with hysteresis, so a battery hovering at a band edge does not toggle the limit); otherwise no limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edged.governor.config import GovernorConfig
from edged.governor.correction import finite

BudgetBasis = Literal["mission", "band", "external_power", "unlimited"]


@dataclass(frozen=True)
class Battery:
    """A battery reading made consistent: whatever is missing is derived, whatever is absurd is dropped."""

    energy_wh: float | None
    pct: float | None
    capacity_wh: float | None
    external_power: bool

    @classmethod
    def read(
        cls, energy_wh: float | None, pct: float | None, capacity_wh: float | None, external_power: bool
    ) -> Battery:
        capacity = finite(capacity_wh)
        capacity = capacity if capacity is not None and capacity > 0 else None
        energy = finite(energy_wh)
        energy = None if energy is None else max(0.0, energy if capacity is None else min(energy, capacity))
        level = finite(pct)
        level = None if level is None else min(100.0, max(0.0, level))
        if level is None and energy is not None and capacity is not None:
            level = 100.0 * energy / capacity
        if energy is None and level is not None and capacity is not None:
            energy = capacity * level / 100.0
        return cls(energy, level, capacity, bool(external_power))

    def with_energy(self, energy_wh: float | None) -> Battery:
        """The same battery with a better energy estimate (the level follows; the gauge's own level is kept
        when there is no capacity to convert with)."""
        if energy_wh is None:
            return self
        pct = 100.0 * energy_wh / self.capacity_wh if self.capacity_wh is not None else self.pct
        return Battery(energy_wh, pct, self.capacity_wh, self.external_power)

    def reserve_wh(self, policy: GovernorConfig) -> float:
        by_share = policy.reserve_pct / 100.0 * self.capacity_wh if self.capacity_wh is not None else 0.0
        return max(policy.reserve_wh, by_share)


@dataclass(frozen=True)
class Budget:
    watts: float | None  # None: no limit
    basis: BudgetBasis
    detail: str
    band: int | None = None  # index into policy.bands_by_depth(), remembered for hysteresis
    spendable_wh: float | None = None  # mission budgets: energy above the reserve ...
    remaining_s: float | None = None  # ... and the time it must last

    def describe(self) -> str:
        return "no power limit" if self.watts is None else f"budget {self.watts:.2f} W"


def power_budget(
    policy: GovernorConfig, battery: Battery, now_s: float, mission_end_s: float | None, previous_band: int | None
) -> Budget:
    if battery.external_power:
        return Budget(None, "external_power", "on external power")
    end = finite(mission_end_s)
    if end is not None and battery.energy_wh is not None:
        remaining_s = end - now_s
        if remaining_s > 0:
            above = battery.energy_wh - battery.reserve_wh(policy)
            watts = max(0.0, above) * 3600.0 / remaining_s
            detail = f"{above:.2f} Wh above the reserve over {remaining_s / 60:.1f} min left"
            return Budget(watts, "mission", detail, spendable_wh=max(0.0, above), remaining_s=remaining_s)
    return _band_budget(policy, battery, previous_band, mission_over=end is not None and now_s >= end)


def _band_budget(policy: GovernorConfig, battery: Battery, previous: int | None, mission_over: bool) -> Budget:
    prefix = "mission over; " if mission_over else ""
    bands = policy.bands_by_depth()
    if not bands or battery.pct is None:
        why = "no battery band" if not bands else "battery level unknown"
        return Budget(None, "unlimited", f"{prefix}no mission end known and {why}: power not limited")
    index = band_index(policy, battery.pct, previous)
    if index is None:
        return Budget(None, "unlimited", f"{prefix}battery {battery.pct:.0f}% above every band")
    band = bands[index]
    where = f"{prefix}battery {battery.pct:.0f}% in band ≤{band.below_pct:g}%"
    if band.budget_w is not None:
        return Budget(band.budget_w, "band", where, index)
    assert band.runtime_h is not None
    if battery.energy_wh is None:
        return Budget(None, "unlimited", f"{where}: battery energy unknown, cannot size a {band.runtime_h:g} h run")
    above = max(0.0, battery.energy_wh - battery.reserve_wh(policy))
    return Budget(above / band.runtime_h, "band", f"{where}: {above:.1f} Wh to last {band.runtime_h:g} h", index)


def band_index(policy: GovernorConfig, pct: float, previous: int | None) -> int | None:
    """The deepest band `pct` is in; a deeper band entered before is left only `band_hysteresis_pct` above it."""
    bands = policy.bands_by_depth()
    inside = [i for i, band in enumerate(bands) if pct <= band.below_pct]
    index = inside[-1] if inside else None
    if previous is not None and 0 <= previous < len(bands) and (index is None or previous > index):
        sticky = [i for i in range(previous + 1) if pct <= bands[i].below_pct + policy.band_hysteresis_pct]
        if sticky:
            index = sticky[-1]
    return index
