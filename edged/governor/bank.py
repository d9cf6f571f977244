"""The energy bank: surplus set aside to be spent soon, so that a budget between two variants is met by running
the costlier one part of the time (as the oracle does) instead of the cheaper one until the last minutes.

With a mission budget, power under the budget fills the bank and power over it drains it. What is in the bank is
taken out of the energy the budget spreads over the time left, so nothing is counted twice: spending the bank on
a costlier variant brings the battery back onto the plan. The bank never holds more than a tenth of what is left
to spend, so it empties itself before the mission ends, and it is spent in phases of six dwells or a tenth of
the time left, whichever is longer: a budget between two variants alternates them a dozen or two times a mission at
most, never at the pace of a load that comes and goes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edged.governor.budget import Budget
from edged.governor.config import GovernorConfig

MAX_TICK_S = 60.0  # a longer gap between ticks (a pause, a stall) is not banked
SPENDABLE_SHARE = 0.1
PHASE_DWELLS = 6.0
PHASES_PER_MISSION = 10.0


@dataclass(frozen=True)
class EnergyBank:
    joules: float = 0.0

    def settled(self, budget_w: float | None, power_w: float | None, seconds: float, cap_j: float) -> EnergyBank:
        """Bank what the last period spent under `budget_w` (or draw what it spent over it)."""
        if budget_w is None or power_w is None or not seconds > 0:
            return EnergyBank(min(self.joules, cap_j))
        moved = (budget_w - power_w) * min(seconds, MAX_TICK_S)
        return EnergyBank(min(cap_j, max(0.0, self.joules + moved)))


def bank_cap_j(budget: Budget) -> float:
    if budget.basis != "mission" or budget.spendable_wh is None:
        return 0.0
    return SPENDABLE_SHARE * budget.spendable_wh * 3600.0


def spending_phase_s(policy: GovernorConfig, budget: Budget) -> float:
    """How long the bank must be able to run a costlier variant before it is spent on one."""
    left = budget.remaining_s if budget.remaining_s is not None else 0.0
    return max(PHASE_DWELLS * max(policy.min_dwell_s, 1.0), left / PHASES_PER_MISSION)


def set_aside(budget: Budget, bank: EnergyBank) -> Budget:
    """The budget without the banked energy (it is spent from the bank, not spread over the time left)."""
    if budget.spendable_wh is None or budget.remaining_s is None or budget.remaining_s <= 0 or bank.joules <= 0:
        return budget
    spendable = max(0.0, budget.spendable_wh - bank.joules / 3600.0)
    detail = f"{budget.detail}; {bank.joules:.0f} J banked"
    return replace(budget, watts=spendable * 3600.0 / budget.remaining_s, spendable_wh=spendable, detail=detail)
