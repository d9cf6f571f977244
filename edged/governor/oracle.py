"""The offline oracle: dynamic programming over time × battery energy, knowing the whole mission in advance.

It knows every floor command, every slow-down and every watt of harvest before they happen, reads the true battery
energy and the true power (no meter bias, no noise), and picks (variant, fps) once per epoch to maximise the
same score the report prints: time-weighted accuracy. The objective is lexicographic in effect: losing the mission
costs far more than any accuracy, and a second below the floor or over the latency SLO costs more than any
variant's accuracy, so it completes whenever completing is possible and keeps the floor whenever it can.

It is an upper bound up to its discretisation (epochs, an energy grid, a few fps levels), which the report states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edged.governor.world import World

FLOOR_PENALTY = 1.0  # per second below the floor: more than the accuracy of any variant (mAP ≤ 1)
SLO_PENALTY = 1.0  # per second over the latency SLO
FAIL_PENALTY = 10.0  # per second of mission lost to a flat battery


@dataclass(frozen=True)
class OraclePlan:
    actions: list[tuple[int, float]]  # (variant index, fps)
    steps_per_epoch: int
    reward: np.ndarray  # (actions, epochs): score earned in the epoch
    cost_wh: np.ndarray  # (actions, epochs): energy drawn in the epoch
    harvest_wh: np.ndarray  # (epochs,)
    epoch_start_s: np.ndarray  # (epochs,)
    epoch_s: np.ndarray  # (epochs,)
    grid_wh: np.ndarray  # (levels,) energy grid, cutoff..capacity
    values: np.ndarray  # (epochs + 1, levels): best score from an epoch onwards, by energy
    mission_s: float

    def best_action(self, epoch: int, energy_wh: float) -> int:
        """The action to take at the start of `epoch` with `energy_wh` in the battery."""
        scores = self._scores(epoch, np.array([energy_wh]))[:, 0]
        return int(np.argmax(scores))

    def _scores(self, epoch: int, energy: np.ndarray) -> np.ndarray:
        cutoff, capacity = self.grid_wh[0], self.grid_wh[-1]
        net = self.cost_wh[:, epoch, None] - self.harvest_wh[epoch]
        after = np.minimum(energy[None, :] - net, capacity)
        later = np.interp(after, self.grid_wh, self.values[epoch + 1])
        share = np.clip((energy[None, :] - cutoff) / np.maximum(net, 1e-12), 0.0, 1.0)
        lost_s = self.mission_s - (self.epoch_start_s[epoch] + share * self.epoch_s[epoch])
        return self.reward[:, epoch, None] + np.where(after < cutoff, -FAIL_PENALTY * lost_s, later)


def plan(world: World) -> OraclePlan:
    """Solve the dynamic program backwards from the mission end."""
    sim = world.scenario.simulation
    policy = world.scenario.governor
    levels = np.unique(np.linspace(policy.fps_min, policy.fps_target, sim.oracle_fps_levels))[::-1]
    actions = [(v, float(f)) for v in range(len(world.variants)) for f in levels]
    per_epoch = max(1, round(sim.oracle_step_s / world.step_s))
    reward_steps, cost_steps = _step_tables(world, actions)
    epochs = -(-world.steps // per_epoch)
    pad = epochs * per_epoch - world.steps

    def by_epoch(table: np.ndarray) -> np.ndarray:
        padded = np.pad(table, [(0, 0)] * (table.ndim - 1) + [(0, pad)])
        return padded.reshape(*table.shape[:-1], epochs, per_epoch).sum(axis=-1)

    harvest = by_epoch(np.array(world.harvest_w) * world.step_s / 3600.0)
    epoch_s = by_epoch(np.full(world.steps, world.step_s))
    grid = np.linspace(world.cutoff_wh, world.capacity_wh, sim.energy_grid)
    result = OraclePlan(
        actions=actions,
        steps_per_epoch=per_epoch,
        reward=by_epoch(reward_steps),
        cost_wh=by_epoch(cost_steps),
        harvest_wh=harvest,
        epoch_start_s=np.arange(epochs) * per_epoch * world.step_s,
        epoch_s=epoch_s,
        grid_wh=grid,
        values=np.zeros((epochs + 1, len(grid))),
        mission_s=world.mission_s,
    )
    for epoch in range(epochs - 1, -1, -1):
        result.values[epoch] = result._scores(epoch, grid).max(axis=0)
    return result


def _step_tables(world: World, actions: list[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Score and energy of every action at every step: (actions, steps) each."""
    policy = world.scenario.governor
    variant = np.array([v for v, _ in actions])
    fps = np.array([f for _, f in actions])[:, None]
    accuracy = np.array([v.accuracy for v in world.variants])[variant][:, None]
    p50 = np.array([v.latency_p50_ms for v in world.variants])[variant][:, None]
    p95 = np.array([v.latency_p95_ms for v in world.variants])[variant][:, None]
    joules = np.array([v.joules for v in world.variants])[variant][:, None]
    slow = np.array(world.latency_factor)[None, :]
    delivered = np.minimum(fps, 1000.0 / (p50 * slow))
    per_frame = joules * np.array(world.energy_factor)[None, :] + world.overhead_j
    power = world.scenario.device.idle_w + np.array(world.load_w)[None, :] + delivered * per_frame
    below_floor = accuracy < np.array(world.floor)[None, :] - 1e-12
    over_slo = p95 * slow > policy.latency_slo_ms
    score = accuracy * np.minimum(delivered / policy.fps_target, 1.0)
    reward = (score - FLOOR_PENALTY * below_floor - SLO_PENALTY * over_slo) * world.step_s
    return reward, power * world.step_s / 3600.0
