"""Scripted GUI users (the :class:`~genex.envs.spec.ScriptedDriver` protocol) for data and baselines.

* :class:`RandomClicker`: mostly random clicks anywhere on the screen (or on
  random visible elements in element mode), sometimes keys, scrolls, short
  typed words or waiting. Sees only what an agent sees (plus
  ``info["n_elements"]``). The exploration policy for world-model data.
* :class:`GuiExpert`: privileged; reads the app's hidden state and widget tree
  through ``env.unwrapped`` and completes the task in the fewest steps.

``GUI_DRIVERS`` maps names to factories (called with no arguments, or with
the documented keyword arguments).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from .actions import ACTION_TYPES, KEYS, action

__all__ = ["RandomClicker", "GuiExpert", "GUI_DRIVERS"]

WORDS = ("hello", "Ana Silva", "555-0199", "Paris", "yes", "42", "report", "x")


class RandomClicker:
    """Random user: ``p`` gives the probabilities of click, type, key, scroll, wait (in that order)."""

    name = "random"

    def __init__(self, p: tuple[float, float, float, float, float] = (0.8, 0.04, 0.08, 0.05, 0.03),
                 words: tuple[str, ...] = WORDS) -> None:
        probs = np.asarray(p, np.float64)
        if probs.shape != (len(ACTION_TYPES),) or np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
            raise ValueError(f"p must be {len(ACTION_TYPES)} probabilities for {ACTION_TYPES} summing to 1, got {p}")
        self.p = probs
        self.words = words
        self._rng = np.random.default_rng()
        self._mode = "pixel"
        self._size = 128

    def reset(self, env: Any, seed: int | None = None) -> None:
        space = env.action_space
        self._mode = "element" if "element" in space.spaces else "pixel"
        self._size = space["x"].n if self._mode == "pixel" else space["element"].n
        self._rng = np.random.default_rng(seed)

    def act(self, observation: Any, info: Mapping[str, Any]) -> dict[str, Any]:
        rng = self._rng
        kind = ACTION_TYPES[int(rng.choice(len(ACTION_TYPES), p=self.p))]
        if self._mode == "pixel":
            where = {"x": int(rng.integers(self._size)), "y": int(rng.integers(self._size))}
        else:
            n = int(info.get("n_elements", self._size)) or 1
            where = {"element": int(rng.integers(min(n, self._size)))}
        return action(kind, mode=self._mode, text=self.words[int(rng.integers(len(self.words)))],
                      key=KEYS[int(rng.integers(len(KEYS)))], down=bool(rng.integers(2)), **where)


class GuiExpert:
    """Privileged expert: follows the app's own expert script (``app.expert_intent``); waits when done."""

    name = "expert"

    def __init__(self) -> None:
        self._env: Any = None

    def reset(self, env: Any, seed: int | None = None) -> None:
        self._env = env.unwrapped

    def act(self, observation: Any, info: Mapping[str, Any]) -> dict[str, Any]:
        if self._env is None:
            raise RuntimeError("call reset(env) before act()")
        env = self._env
        intent = env.app.expert_intent(env.screen)
        if intent is None:
            return action("wait", mode=env.config.action_mode)
        return env.intent_action(intent)


GUI_DRIVERS: dict[str, Callable[..., Any]] = {"random": RandomClicker, "expert": GuiExpert}
