"""Looking up scripted drivers by env family, and mixing them for exploration data."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["MixedDriver", "drivers_for", "make_driver"]


class MixedDriver:
    """Picks one of several drivers per episode (seeded), for varied exploration videos."""

    def __init__(self, factories: Mapping[str, Callable[[], Any]], name: str = "mixed") -> None:
        if not factories:
            raise ValueError("MixedDriver needs at least one driver")
        self.name = name
        self.drivers = {k: f() for k, f in factories.items()}
        self.current: Any = None

    def reset(self, env: Any, seed: int | None = None) -> None:
        rng = np.random.default_rng(seed)
        key = list(self.drivers)[int(rng.integers(len(self.drivers)))]
        self.current = self.drivers[key]
        self.current.reset(env, seed=seed)

    def act(self, observation: Any, info: Mapping[str, Any]) -> Any:
        return self.current.act(observation, info)


def drivers_for(env_id: str) -> dict[str, Callable[[], Any]]:
    """Driver factories for an env id: ``{name: factory}``, including ``"mixed"``."""
    from .ids import DRIVING_ENV_IDS

    if env_id in DRIVING_ENV_IDS:
        from .driving.drivers import DRIVING_DRIVERS as table

        explore = ("random", "cautious", "aggressive")
    else:
        try:
            from .gui import GUI_ENV_IDS
            from .gui.users import GUI_DRIVERS as table
        except ImportError as e:  # pragma: no cover
            raise ValueError(f"no scripted drivers for {env_id!r}") from e
        if env_id not in GUI_ENV_IDS:
            raise ValueError(f"no scripted drivers for {env_id!r}; known envs: {DRIVING_ENV_IDS + GUI_ENV_IDS}")
        explore = tuple(k for k in table if k != "expert")
    out = dict(table)
    out["mixed"] = lambda: MixedDriver({k: table[k] for k in explore})
    return out


def make_driver(env_id: str, name: str) -> Any:
    """A fresh scripted driver ``name`` for ``env_id`` (``random``, ``expert``, ``mixed``, ...)."""
    table = drivers_for(env_id)
    if name not in table:
        raise ValueError(f"unknown driver {name!r} for {env_id}; choose one of {sorted(table)}")
    return table[name]()
