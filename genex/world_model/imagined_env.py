"""``ImaginedEnv``: any world model as a batched Gymnasium-style env with the real env's spaces.

::

    ienv = ImaginedEnv(world_model, real_env.observation_space, real_env.action_space, num_envs=8, seed=0)
    obs, info = ienv.reset(context_frames)          # uint8[K,H,W,3] or uint8[B,K,H,W,3]
    obs, reward, terminated, truncated, info = ienv.step(actions)   # B actions

Observations are the real env's observation dict, batched: ``obs["image"]`` is
``uint8[B, H, W, 3]`` (imagined); other keys (``text``, ``speed``) repeat the
values given at reset (``observation=``), since the world model imagines pixels
only. Rewards are zeros and ``terminated`` is False (imagination has no reward
model); ``truncated`` becomes True after ``max_steps``. ``info["imagined"]`` is True.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .protocol import WorldModel, check_context

__all__ = ["ImaginedEnv"]


class ImaginedEnv:
    """A batched env whose next observations come from ``world_model`` (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "imagined": True}

    def __init__(self, world_model: WorldModel, observation_space: Any, action_space: Any, num_envs: int = 1,
                 max_steps: int | None = None, seed: int | None = None) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.world_model = world_model
        self.single_observation_space = observation_space
        self.single_action_space = action_space
        self.observation_space = observation_space
        self.action_space = action_space
        self.num_envs = num_envs
        self.max_steps = max_steps
        self._seed = seed
        self._calls = 0
        self._frames: np.ndarray | None = None  # uint8[B, K, H, W, 3]
        self._start: np.ndarray | None = None
        self._history: list[list[Any]] = []
        self._extra: dict[str, Any] = {}
        self._t = 0

    @classmethod
    def like(cls, env: Any, world_model: WorldModel, **kwargs: Any) -> "ImaginedEnv":
        """An imagined twin of the real ``env`` (same spaces)."""
        return cls(world_model, env.observation_space, env.action_space, **kwargs)

    def reset(self, context_frames: np.ndarray, *, observation: Mapping[str, Any] | None = None,
              seed: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start from ``context_frames`` (``uint8[K,H,W,3]`` shared by all envs, or ``uint8[B,K,H,W,3]``)."""
        x = np.asarray(context_frames)
        ctx = check_context(x, batched=x.ndim == 5)
        if ctx.ndim == 4:
            ctx = np.repeat(ctx[None], self.num_envs, axis=0)
        if ctx.shape[0] != self.num_envs:
            raise ValueError(f"got {ctx.shape[0]} contexts for {self.num_envs} envs")
        shape = getattr(self._image_space(), "shape", None)
        if shape is not None and tuple(ctx.shape[2:]) != tuple(shape):
            raise ValueError(f"context frames are {ctx.shape[2:]}, the env's images are {tuple(shape)}")
        if seed is not None:
            self._seed = seed
        self._frames = ctx.copy()
        self._start = ctx.copy()
        self._history = [[] for _ in range(self.num_envs)]
        self._extra = {k: v for k, v in (observation or {}).items() if k != "image"}
        self._t = 0
        return self._obs(), {"imagined": True, "t": 0}

    def step(self, actions: Sequence[Any]) -> tuple[dict[str, Any], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Imagine one step for each env; ``actions`` has ``num_envs`` entries."""
        if self._frames is None:
            raise RuntimeError("call reset(context_frames) before step()")
        actions = list(actions) if not isinstance(actions, Mapping) else self._split_dict(actions)
        if len(actions) != self.num_envs:
            raise ValueError(f"step() needs {self.num_envs} actions, got {len(actions)}")
        seed = None if self._seed is None else self._seed + self._calls
        self._calls += 1
        for h, a in zip(self._history, actions):
            h.append(a)
        if getattr(self.world_model, "context_is_state", True):
            nxt = self.world_model.imagine_batch(self._frames, [[a] for a in actions], seed=seed)[:, 0]
        else:  # the oracle: replay the whole imagined action history from its snapshot
            nxt = self.world_model.imagine_batch(self._start, self._history, seed=seed)[:, -1]
        self._frames = np.concatenate([self._frames[:, 1:], nxt[:, None]], axis=1)
        self._t += 1
        b = self.num_envs
        truncated = np.full(b, self.max_steps is not None and self._t >= self.max_steps)
        return self._obs(), np.zeros(b, np.float32), np.zeros(b, bool), truncated, {"imagined": True, "t": self._t}

    def render(self) -> np.ndarray | None:
        return None if self._frames is None else self._frames[:, -1].copy()

    def close(self) -> None:
        self._frames = None

    def _image_space(self) -> Any:
        space = self.single_observation_space
        try:
            return space["image"]
        except (TypeError, KeyError):
            return space

    def _obs(self) -> dict[str, Any]:
        obs = {"image": self._frames[:, -1].copy()}
        for k, v in self._extra.items():
            obs[k] = [v] * self.num_envs if isinstance(v, str) else np.repeat(np.asarray(v)[None], self.num_envs, 0)
        return obs

    def _split_dict(self, actions: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A dict of batched fields (``{"type": [..B..], "x": [..B..]}``) -> B action dicts."""
        return [{k: (v[i] if not isinstance(v, str) else v) for k, v in actions.items()} for i in range(self.num_envs)]
