"""Reference world models: the floor (copy the last frame) and the ceiling (the simulator itself)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from .protocol import check_context

__all__ = ["CopyLastFrameWorldModel", "OracleWorldModel", "stack_trees"]


def stack_trees(trees: Sequence[Any]) -> Any:
    """Stack a list of equally shaped NamedTuple trees of arrays leaf by leaf (NumPy, new leading axis)."""
    first = trees[0]
    if hasattr(first, "_fields"):
        return type(first)(*(stack_trees([t[i] for t in trees]) for i in range(len(first))))
    return np.stack([np.asarray(t) for t in trees])


class CopyLastFrameWorldModel:
    """Predicts that nothing changes: every imagined frame is the last context frame."""

    context_is_state = True
    deterministic = True  # every sample is the same frame: evaluations draw one

    def imagine(self, context_frames: np.ndarray, actions: Sequence[Any], num_samples: int = 1,
                seed: int | None = None) -> np.ndarray:
        """``uint8[K,H,W,3]``, ``T`` actions -> ``uint8[S,T,H,W,3]``."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        last = check_context(context_frames)[-1]
        return np.broadcast_to(last, (num_samples, len(actions)) + last.shape).copy()

    def imagine_batch(self, contexts: np.ndarray, actions: Sequence[Sequence[Any]],
                      seed: int | None = None) -> np.ndarray:
        contexts = check_context(contexts, batched=True)
        t = len(actions[0]) if len(actions) else 0
        last = contexts[:, -1]
        return np.broadcast_to(last[:, None], (last.shape[0], t) + last.shape[1:]).copy()


class OracleWorldModel:
    """The upper bound: renders the *true* outcome with the simulator (snapshot/restore).

    Args:
        env: an env with ``snapshot()``/``restore(snapshot)`` (``genex`` envs), either
            the live env (its state is snapshotted before and restored after every
            rollout, so the live episode is untouched) or a private copy.
        snapshot: the state to imagine from; ``None`` = the env's state at each
            ``imagine`` call. Set it later with :meth:`sync`.

    The context frames are ignored (the snapshot is the state). The simulator
    is deterministic given the snapshot, so the ``S`` samples are identical.
    After an episode ends inside a rollout, the last frame repeats.
    """

    context_is_state = False
    deterministic = True  # the simulator from a snapshot: evaluations draw one sample

    def __init__(self, env: Any, snapshot: Any = None) -> None:
        base = getattr(env, "unwrapped", env)
        if not (hasattr(base, "snapshot") and hasattr(base, "restore")):
            raise TypeError(f"{type(base).__name__} has no snapshot()/restore(); the oracle needs a genex env")
        self.env = base
        self.snapshot = snapshot

    def sync(self, snapshot: Any) -> None:
        """Imagine from ``snapshot`` (e.g. ``live_env.unwrapped.snapshot()``) from now on."""
        self.snapshot = snapshot

    @contextmanager
    def _at(self, snapshot: Any) -> Iterator[Any]:
        """Restore ``snapshot`` into the env (yielding its observation), then put the env back as it was."""
        try:
            saved = self.env.snapshot()
        except RuntimeError:  # a private env that was never reset has no state to keep
            saved = None
        try:
            obs, _ = self.env.restore(snapshot)
            yield obs
        finally:
            if saved is not None:
                self.env.restore(saved)

    def rollout(self, snapshot: Any, actions: Sequence[Any]) -> np.ndarray:
        """``uint8[T,H,W,3]``: the true frames after each action from ``snapshot``; env state is restored after."""
        with self._at(snapshot) as obs:
            frames, done = [], False
            last = np.asarray(obs["image"])
            for a in actions:
                if not done:
                    obs, _, terminated, truncated, _ = self.env.step(a)
                    last = np.asarray(obs["image"])
                    done = bool(terminated or truncated)
                frames.append(last)
            shape = (0,) + last.shape
            return np.stack(frames).astype(np.uint8) if frames else np.zeros(shape, np.uint8)

    def rollout_choice(self, snapshot: Any, choice: int, max_steps: int = 8) -> np.ndarray:
        """``uint8[T,H,W,3]``: the true frames while the env carries out GUI action choice ``choice`` (a macro
        expanded by ``env.choice_action``) from ``snapshot``, at most ``max_steps``; env state is restored after."""
        with self._at(snapshot) as obs:
            frames = []
            for _ in range(max_steps):
                a = self.env.choice_action(choice)
                if a is None:
                    break
                obs, _, terminated, truncated, _ = self.env.step(a)
                frames.append(np.asarray(obs["image"]))
                if terminated or truncated:
                    break
            return np.stack(frames) if frames else np.zeros((0,) + np.asarray(obs["image"]).shape, np.uint8)

    def worlds(self, snapshot: Any = None) -> tuple[Any, Any, np.ndarray]:
        """The imagined world as plans see it: the simulator's dynamics parameters and state at ``snapshot``
        (default: the synced one, else the env's own), each with a leading axis of 1, and weight ``[1.0]``.
        Needs an env with ``dynamics_params``/``world_state`` (the driving scenes)."""
        snap = snapshot if snapshot is not None else self.snapshot
        if snap is None:
            snap = self.env.snapshot()
        with self._at(snap):
            params, state = self.env.dynamics_params, self.env.world_state
        return stack_trees([params]), stack_trees([state]), np.ones(1)

    def imagine(self, context_frames: np.ndarray, actions: Sequence[Any], num_samples: int = 1,
                seed: int | None = None, snapshot: Any = None) -> np.ndarray:
        """``uint8[S,T,H,W,3]`` true futures (identical samples); ``snapshot`` overrides the synced one."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        snap = snapshot if snapshot is not None else self.snapshot
        if snap is None:
            snap = self.env.snapshot()
        frames = self.rollout(snap, list(actions))
        return np.broadcast_to(frames[None], (num_samples,) + frames.shape).copy()

    def imagine_batch(self, contexts: np.ndarray, actions: Sequence[Sequence[Any]], seed: int | None = None,
                      snapshots: Sequence[Any] | None = None) -> np.ndarray:
        """One true future per action sequence, each from ``snapshots[b]`` (default: the synced snapshot)."""
        snaps = list(snapshots) if snapshots is not None else [self.snapshot] * len(actions)
        return np.stack([self.imagine(None, a, 1, snapshot=s)[0] for a, s in zip(actions, snaps)])
