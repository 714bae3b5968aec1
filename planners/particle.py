"""``particle``: belief-space planning over simulator hypotheses with the JAX dynamics (a non-pixel baseline).

It is ``react`` (prior + the policy on the current real frame through the env's
probes) deciding by the plan rule of :mod:`genex.planners.plans` whatever the
``decision`` setting: candidate plans rolled out over hypotheses of the hidden
agents redrawn from the prior (never the true ones), weighted by the belief.
It needs the env's JAX dynamics, so it runs on the driving scenes only. It is a
strong baseline because it plans with the true dynamics and the true prior; it
sees pixels only through the policy's answers.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from .base import BeliefPlanner
from .options import PlannerOptions, as_options
from .plans import plans_available

__all__ = ["ParticlePlanner"]


class ParticlePlanner(BeliefPlanner):
    """See the module docstring. Options ``particles``: per answer; ``plan_horizon``: steps per candidate plan;
    ``decision`` is always ``"plan"``."""

    name = "particle"

    def __init__(self, policy: Any, world_model: Any = None, options: PlannerOptions | Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(policy, world_model, replace(as_options(options), decision="plan"), **kwargs)

    def reset(self, env: Any, seed: int | None = None) -> None:
        if not plans_available(env):
            name = getattr(getattr(env, "spec", None), "id", None) or type(getattr(env, "unwrapped", env)).__name__
            raise ValueError(f"the particle planner needs an env with JAX dynamics and hypotheses() (the driving "
                             f"scenes); {name} has none")
        super().reset(env, seed)
