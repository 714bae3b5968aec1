"""Scripted drivers for the driving scenes (data recording and baselines).

* ``random``: uniform random actions (seeded).
* ``cautious``: creeps, and waits whenever a road user is *visible* ahead
  (reads only the visibility labels and the ego's own state), never overtakes.
* ``aggressive``: accelerates; overtakes a stopped car ahead.
* ``expert``: privileged model-predictive control. It reads the true world
  state (hidden agents included) and rolls out a fixed set of candidate plans
  with the JAX dynamics, batched with ``vmap``, taking the first action of the
  best plan each step. It is the optimal-ish reference, not a fair baseline.

All follow :class:`genex.envs.spec.ScriptedDriver`.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

import numpy as np

from . import dynamics as dyn

__all__ = ["RandomDriver", "CautiousDriver", "AggressiveDriver", "ExpertDriver", "DRIVING_DRIVERS", "candidate_plans"]

HAZARDS = ("pedestrian", "ball", "oncoming_vehicle", "emergency_vehicle")


class _Base:
    name = "base"

    def __init__(self) -> None:
        self.env = None
        self.rng = np.random.default_rng(0)

    def reset(self, env: Any, seed: int | None = None) -> None:
        self.env = env.unwrapped
        self.rng = np.random.default_rng(seed)

    def _index(self, behaviour: str) -> int:
        names = self.env.action_names
        return names.index(behaviour) if behaviour in names else names.index("wait")


class RandomDriver(_Base):
    """Uniform random actions; ``sticky`` repeats the previous action with that probability (smoother videos)."""

    name = "random"

    def __init__(self, sticky: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= sticky < 1.0:
            raise ValueError(f"sticky must be in [0, 1), got {sticky}")
        self.sticky = sticky
        self._last: int | None = None

    def reset(self, env: Any, seed: int | None = None) -> None:
        super().reset(env, seed)
        self._last = None

    def act(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        if self._last is None or self.rng.random() >= self.sticky:
            self._last = int(self.rng.integers(len(self.env.action_names)))
        return self._last


class CautiousDriver(_Base):
    """Drives slowly, creeps near the hazard zone, waits while a road user is visible ahead.

    Reads only what a careful human would: visibility labels, its own speed,
    where the crosswalk/intersection is (``layout.landmarks``) and the gap to
    a visible car ahead. Never overtakes.
    """

    name = "cautious"

    def __init__(self, speed: float = 4.0, zone: float = 10.0) -> None:
        super().__init__()
        self.speed, self.zone = speed, zone

    def _hazard_in_path(self, visible: Mapping[str, bool], progress: float) -> bool:
        """Is a *visible* road user within 2.5 m of the next 20 m of the ego's path?"""
        env = self.env
        roles = [s.role for s in env.scenario.scene.slots]
        seen = [i for i, r in enumerate(roles) if r in HAZARDS and visible.get(r, False)]
        if not seen:
            return False
        s = progress + np.linspace(0.0, 20.0, 21, dtype=np.float32)
        z = np.zeros_like(s)
        px, py, _ = dyn.to_numpy(dyn.ego_pose_jit(env.dynamics_params, dyn.EgoState(s=s, d=z, v=z)))
        a = env.world_state.agents
        for i in seen:
            if np.min(np.hypot(px - float(a.x[i]), py - float(a.y[i]))) < 2.5 + float(env.dynamics_params.width[i]):
                return True
        return False

    def act(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        visible = info.get("visible", {})
        if self._hazard_in_path(visible, info["ego"]["progress"]):
            return self._index("wait")
        env = self.env
        if visible.get("lead_car", False):
            slot = env.scenario.slot("lead_car")
            a = env.world_state.agents
            gap = float(a.x[slot]) - info["ego"]["x"] - 4.9
            if gap < 3.0 + info["ego"]["speed"]:
                return self._index("wait" if not bool(a.moving[slot]) or gap < 2.0 else "cruise")
        to_zone = env._layout.landmarks.get("conflict_s", np.inf) - info["ego"]["progress"]
        if -3.0 < to_zone < self.zone:
            return self._index("creep")
        v = info["ego"]["speed"]
        if v < self.speed - 0.5:
            return self._index("accelerate")
        return self._index("wait" if v > self.speed + 1.0 else "cruise")


class AggressiveDriver(_Base):
    """Accelerates through everything; overtakes when there is an overtake action."""

    name = "aggressive"

    def act(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        if "overtake" in self.env.action_names:
            return self._index("overtake")
        return self._index("accelerate")


def candidate_plans(n_actions: int, horizon: int, switch_steps: tuple[int, ...] = (1, 2, 4, 8, 12)) -> np.ndarray:
    """``int32[P, horizon]``: plans "action a for k steps, then action b" for all a, b, k."""
    plans = {tuple([a] * horizon) for a in range(n_actions)}
    for a, b, k in itertools.product(range(n_actions), range(n_actions), switch_steps):
        if k < horizon:
            plans.add(tuple([a] * k + [b] * (horizon - k)))
    return np.array(sorted(plans), dtype=np.int32)


class ExpertDriver(_Base):
    """Privileged MPC: best of ``candidate_plans`` under the true state, replanned every step."""

    name = "expert"

    def __init__(self, horizon: int = 24) -> None:
        super().__init__()
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.horizon = horizon
        self._plans: np.ndarray | None = None

    def reset(self, env: Any, seed: int | None = None) -> None:
        super().reset(env, seed)
        self._plans = candidate_plans(len(self.env.action_names), self.horizon)

    def act(self, observation: Mapping[str, Any], info: Mapping[str, Any]) -> int:
        _, out = dyn.rollout_plans(self.env.dynamics_params, self.env.world_state, self._plans)
        returns = np.asarray(out.reward).sum(axis=1)
        return int(self._plans[int(np.argmax(returns)), 0])


DRIVING_DRIVERS = {
    "random": RandomDriver,
    "cautious": CautiousDriver,
    "aggressive": AggressiveDriver,
    "expert": ExpertDriver,
}
