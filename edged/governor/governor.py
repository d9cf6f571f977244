"""The governor as the daemon holds it: the pure decision plus the state it threads from one tick to the next."""

from __future__ import annotations

from collections.abc import Sequence

from edged.governor.config import GovernorConfig
from edged.governor.decision import Decision, GovernorInputs, GovernorState, decide
from edged.governor.profiles import VariantProfile


class Governor:
    """Owned by one thread (the daemon's control loop); each `tick` is one call to `decide`.

    Commands change the policy (`set_policy`: mode, pin) or the floor (passed in each tick's inputs from
    `AccuracyNeeds`); a changed command allows an immediate switch, whatever the dwell. A tick, in the daemon:

        needs = needs.apply(FloorCommand(floor=0.33, for_s=60), now)          # on set/accuracy_floor
        decision = governor.tick(GovernorInputs(
            now_s=now, battery_wh=sample.battery_wh, battery_pct=sample.battery_pct,
            battery_capacity_wh=capacity, charging=sample.charging, power_w=mean_power_since_last_tick,
            latency_ms=median_latency_since_last_tick, measured_variant=variant_that_ran,
            inference_fps=frames_since_last_tick / seconds, accuracy_floor=needs.floor_at(now),
            floor_expires_s=needs.expires_at(now), mission_end_s=mission_end,  # mission_end_s(policy, ...)
        ))
        # apply decision.variant / decision.fps at a frame boundary; publish decision when decision.switched
    """

    def __init__(
        self, policy: GovernorConfig, variants: Sequence[VariantProfile], state: GovernorState | None = None
    ) -> None:
        self.policy = policy
        self.variants = list(variants)
        self.state = state or GovernorState()
        self.last: Decision | None = None

    def tick(self, inputs: GovernorInputs) -> Decision:
        decision, self.state = decide(self.policy, self.variants, self.state, inputs)
        self.last = decision
        return decision

    def set_policy(self, policy: GovernorConfig) -> None:
        self.policy = policy

    def set_variants(self, variants: Sequence[VariantProfile]) -> None:
        """A reloaded zoo; a running variant that disappeared is replaced at the next tick."""
        self.variants = list(variants)
