"""``particle``: belief-space planning over simulator states with the JAX dynamics (a non-pixel baseline).

At reset the env draws hypotheses (``DrivingEnv.hypotheses``): ``n`` particles
per answer of the question, each the episode's start with the hidden agents
redrawn from the prior given that answer (never the true ones). After every
real step the particles are advanced with the action actually taken, all at
once (``vmap``). Each decision:

1. the belief comes from perception exactly as for ``react`` (prior + the
   policy on the current frame through the env's probes);
2. every particle gets weight ``P(its answer) / n``; particles in which the
   ego has already collided contradict what happened and get weight 0;
3. ``candidate_plans`` (about 300 "action a for k steps, then b") are rolled
   out from every particle in one jitted ``vmap``x``vmap`` call; the plan with
   the highest expected return is chosen and its first action taken (MPC).

It needs the env's JAX dynamics, so it runs on the driving scenes only. It is a
strong baseline because it plans with the true dynamics and the true prior;
it sees pixels only through the policy's answers.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from genex.belief import Belief
from genex.envs.driving import dynamics as dyn
from genex.envs.driving.drivers import candidate_plans

from .base import BeliefPlanner

__all__ = ["ParticlePlanner"]

_step_particles = jax.jit(jax.vmap(dyn.step, in_axes=(0, 0, None)))
#: returns float[P, N]: plans x particles, summed reward
_plan_returns = jax.jit(
    jax.vmap(lambda params, states, plan: jax.vmap(dyn.rollout, in_axes=(0, 0, None))(params, states, plan)[1]
             .reward.sum(-1), in_axes=(None, None, 0)))


class ParticlePlanner(BeliefPlanner):
    """See the module docstring. ``particles``: per answer; ``plan_horizon``: steps per candidate plan."""

    name = "particle"

    def __init__(self, policy: Any, world_model: Any = None, *, particles: int = 8, plan_horizon: int = 24,
                 **kwargs: Any) -> None:
        super().__init__(policy, world_model, **kwargs)
        if particles < 1 or plan_horizon < 1:
            raise ValueError(f"particles and plan_horizon must be >= 1, got {particles}, {plan_horizon}")
        self.particles, self.plan_horizon = particles, plan_horizon

    def reset(self, env: Any, seed: int | None = None) -> None:
        super().reset(env, seed)
        u = self.unwrapped
        if not hasattr(u, "hypotheses"):
            raise ValueError(f"the particle planner needs an env with JAX dynamics and hypotheses() (the driving "
                             f"scenes); {self.task.env_id} has none")
        params, states, answers = u.hypotheses(self.particles, seed=self.episode_seed)
        self.p_params, self.p_states = dyn.to_jax(params), dyn.to_jax(states)
        self.p_answers = answers
        self.plans = candidate_plans(len(self.task.action_names), self.plan_horizon)
        self.last_action: int | None = None

    def act(self, obs: Any, info: Any = None):
        if self.last_action is not None:  # bring the particles to the present with what was really done
            self.p_states, _ = _step_particles(self.p_params, self.p_states, np.int32(self.last_action))
        action, trace = super().act(obs, info)
        self.last_action = int(action)
        return action, trace

    def _choose(self, belief: Belief, branches: list[dict[str, Any]]) -> tuple[int, np.ndarray]:
        q = self.task.questions[0].id
        probs = belief.probs(q)
        counts = np.bincount(self.p_answers, minlength=len(probs)).astype(np.float64)
        w = probs[self.p_answers] / counts[self.p_answers]
        w = w * ~np.asarray(self.p_states.collided)
        if w.sum() <= 0:
            w = np.ones_like(w)
        w = w / w.sum()
        returns = np.asarray(_plan_returns(self.p_params, self.p_states, self.plans))  # [P, N]
        expected = returns @ w
        best = int(np.argmax(expected))
        # per first action: the best plan starting with it (as a cost: lower is better), for the trace
        costs = np.full(len(self.task.action_names), np.inf)
        for a in range(len(costs)):
            m = self.plans[:, 0] == a
            if m.any():
                costs[a] = -float(expected[m].max())
        branches.append({"name": "particles", "kind": "particles", "frames": 0, "particles": int(len(w)),
                         "effective_particles": float(1.0 / (w ** 2).sum()), "plans": int(len(self.plans))})
        return int(self.plans[best, 0]), costs
