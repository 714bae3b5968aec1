"""What a planner knows about an env: its ``Task`` (questions, costs, probes, exploration branches).

:func:`task_from_env` reads the *public* declarations of a genex env
(``questions``, ``action_costs``, ``action_names``, ``probes``,
``exploration_actions``, ``priors``, ``initial_view_choice``), on the env or on a
wrapper such as :class:`genex.envs.foreign.DeclaredTask` (a foreign env's
declared task), or, for any other
Gymnasium env with image observations and a ``Discrete`` action space, builds a
generic task with no questions (planners then fall back to the policy's own
action choice). Nothing here reads hidden state.

Two action modes:

* ``direct`` (driving, generic envs): a decision is an env action;
* ``choice`` (GUI apps): a decision is one of ``action_names``, a macro the env
  expands into primitive actions with ``env.unwrapped.choice_action(k)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from gymnasium import spaces

from genex.envs.foreign import declared
from genex.envs.spec import Probe

__all__ = ["Task", "Branch", "task_from_env", "image_of", "prompt_of"]


@dataclass(frozen=True)
class Branch:
    """One imagined or physical exploration: ``actions`` taken from now (direct mode) or action choice
    ``choice`` (choice mode: its primitive actions are read from the env when imagined)."""

    name: str
    actions: tuple[Any, ...] = ()
    choice: int | None = None


@dataclass(frozen=True)
class Task:
    env_id: str
    action_names: tuple[str, ...]
    questions: tuple[Any, ...] = ()
    action_costs: Mapping[str, np.ndarray] = field(default_factory=dict)
    probes: tuple[Probe, ...] = ()
    priors: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    mode: str = "direct"  # "direct" | "choice"
    exploration: tuple[Branch, ...] = ()
    initial_view_choice: int | None = None
    generic: bool = False
    readings: tuple[Any, ...] = ()  # facts read as a comparison of two numbers (genex.envs.spec.NumberReading)

    @property
    def facts(self) -> tuple[str, ...]:
        """The visibility facts the probes ask about, in first-seen order."""
        return tuple(dict.fromkeys(p.fact for p in self.probes))

    def probes_for(self, choice: int | None) -> tuple[Probe, ...]:
        """Probes that apply to a frame reached by ``choice`` (``None``: only the unconditional ones)."""
        return tuple(p for p in self.probes if p.after_choice is None or (choice is not None and p.after_choice == choice))

    def branches_for_actions(self, horizon: int) -> tuple[Branch, ...]:
        """One branch per decision: "take action ``a`` ``horizon`` times" (direct) or "carry out choice ``a``"."""
        if self.mode == "choice":
            return tuple(Branch(n, (), i) for i, n in enumerate(self.action_names))
        return tuple(Branch(f"{n} x{horizon}", (i,) * horizon) for i, n in enumerate(self.action_names))


def image_of(obs: Any) -> np.ndarray:
    """The ``uint8[H, W, 3]`` frame of an observation (a dict with ``"image"``, or the array itself)."""
    img = obs["image"] if isinstance(obs, Mapping) else obs
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"planners need uint8[H, W, 3] image observations, got {img.dtype}{list(img.shape)}; "
                         "wrap the env (e.g. gymnasium.wrappers.AddRenderObservation) to give it one")
    return img


def prompt_of(obs: Any, default: str = "Drive safely to the goal.") -> str:
    if isinstance(obs, Mapping) and isinstance(obs.get("text"), str):
        return obs["text"]
    return default


def task_from_env(env: Any, horizon: int = 8) -> Task:
    """The public task of ``env``; ``horizon``: length of each imagined exploration (direct mode)."""
    u = getattr(env, "unwrapped", env)
    env_id = getattr(getattr(env, "spec", None), "id", None) or type(u).__name__
    if not isinstance(env.action_space, spaces.Discrete) and not hasattr(u, "choice_action"):
        raise ValueError(f"{env_id}: planners need a Discrete action space (or a genex GUI app), got "
                         f"{env.action_space}")
    questions = tuple(declared(env, "questions", ()) or ())
    if not questions:  # a generic Gymnasium env: no hidden-state questions, only returns and costs
        n = int(env.action_space.n)
        names = tuple(declared(env, "action_names", None) or (f"action {i}" for i in range(n)))
        return Task(env_id=env_id, action_names=names, generic=True)
    names = tuple(declared(env, "action_names"))
    probes = tuple(declared(env, "probes", ()) or ())
    mode = "choice" if hasattr(u, "choice_action") else "direct"
    if mode == "choice":
        choices = sorted({p.after_choice for p in probes if p.after_choice is not None})
        exploration = tuple(Branch(names[c], (), c) for c in choices)
    else:
        exploration = tuple(Branch(f"{a} x{horizon}", (names.index(a),) * horizon)
                            for a in declared(env, "exploration_actions", ()) or ())
    readings = tuple(declared(env, "readings", ()) or ())
    return Task(env_id=env_id, action_names=names, questions=questions,
                action_costs={k: np.asarray(v, np.float64) for k, v in declared(env, "action_costs").items()},
                probes=probes, priors=dict(declared(env, "priors", {}) or {}), mode=mode, exploration=exploration,
                initial_view_choice=declared(env, "initial_view_choice", None),
                readings=tuple(r for r in readings if {r.fact_le, r.fact_gt} & {p.fact for p in probes}))
