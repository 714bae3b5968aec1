"""Training data: recorded episodes (``genex record``) cut into next-frame windows.

A window at step ``t`` of an episode is ``(context, action, target)`` with
``context = frames[t-K+1 .. t]`` (frames before the start repeat the reset
frame), ``action = actions[t]`` and ``target = frames[t+1]``. All frames of a
dataset are held in memory as ``uint8``; batches are drawn by a NumPy
``Generator`` whose state is checkpointed, so a resumed run draws the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..recording import iter_episodes, read_manifest
from .actions import encode_actions
from .config import WorldModelConfig
from .denoiser import Batch

__all__ = ["EpisodeData", "WindowDataset", "load_recordings", "split_episodes", "changed_fraction", "MIN_CHANGED"]

#: share of changed pixels from which a step "opens something" (a tab, a dialog) rather than nudging a widget
MIN_CHANGED = 0.05


def changed_fraction(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``float[...]``: share of pixels that differ (in any channel) between ``uint8[..., H, W, 3]`` frames."""
    return (np.asarray(before) != np.asarray(after)).any(-1).mean((-2, -1))

log = logging.getLogger(__name__)


@dataclass
class EpisodeData:
    """One episode ready for the model: ``frames`` uint8[T+1,H,W,3], ``actions`` float32[T,A] (encoded)."""

    frames: np.ndarray
    actions: np.ndarray
    raw_actions: list
    env_id: str
    seed: int
    meta: dict


def require_action_labels(cfg: WorldModelConfig, episode: Any, folder: str | Path) -> None:
    """Raise if a ``click_text`` model is given an episode recorded without the labels of clicked widgets."""
    if cfg.click_text and len(episode) and not episode.action_labels:
        raise ValueError(f"{folder} was recorded without the labels of clicked widgets, which a click_text model "
                         "conditions on; record it again into a new folder with this version of genex record")


def load_recordings(dirs: Sequence[str | Path], cfg: WorldModelConfig, limit: int | None = None) -> list[EpisodeData]:
    """Episodes of every recording folder in ``dirs``, checked against ``cfg`` (frame size, actions)."""
    out: list[EpisodeData] = []
    for d in dirs:
        manifest = read_manifest(d)
        h, w = manifest.image_shape[:2]
        if (h, w) != (cfg.height, cfg.width):
            raise ValueError(f"{d} holds {h}x{w} frames but the world-model config expects {cfg.height}x{cfg.width}; "
                             f"record with matching --env-kwargs or pick another --config")
        if cfg.action_family == "discrete":
            missing = sorted(set(manifest.action_names) - set(cfg.action_vocab))
            if missing:
                raise ValueError(f"{d} ({manifest.env_id}) uses actions {missing} outside the model's vocabulary "
                                 f"{list(cfg.action_vocab)}")
        n = 0
        for ep in iter_episodes(d):
            if len(ep) == 0:
                continue
            require_action_labels(cfg, ep, d)
            out.append(EpisodeData(frames=ep.frames, actions=encode_actions(ep.actions, cfg, manifest.action_names),
                                   raw_actions=list(ep.actions), env_id=manifest.env_id,
                                   seed=int(ep.meta.get("seed", -1)), meta=ep.meta))
            n += 1
            if limit is not None and n >= limit:
                break
        log.info("loaded %d episodes from %s (%s)", n, d, manifest.env_id)
    if not out:
        raise ValueError(f"no episodes found in {list(map(str, dirs))}")
    return out


def split_episodes(episodes: list[EpisodeData], eval_fraction: float = 0.05,
                   max_eval: int = 16) -> tuple[list[EpisodeData], list[EpisodeData]]:
    """Deterministic train/validation split: every ``1/eval_fraction``-th episode goes to validation."""
    stride = max(2, int(round(1 / eval_fraction))) if eval_fraction > 0 else 0
    if not stride:
        return episodes, []
    val = [e for i, e in enumerate(episodes) if i % stride == stride - 1][:max_eval]
    ids = {id(e) for e in val}
    return [e for e in episodes if id(e) not in ids], val


class WindowDataset:
    """All windows of a list of episodes; ``sample(rng, n)`` draws a :class:`Batch`.

    A window at frame ``t`` has the context frames ``t - (K-1)s, ..., t - s, t`` (clamped to the episode's reset
    frame), the action and the target frame ``t + s``, for ``stride`` ``s``. ``s = 1`` (the default) is the
    next-frame model; ``s > 1`` predicts ``s`` steps at once from every ``s``-th frame, with the mean of the ``s``
    encoded actions as its action (``scripts/stride_experiment.py``).
    """

    def __init__(self, episodes: list[EpisodeData], context: int, stride: int = 1) -> None:
        if not episodes:
            raise ValueError("WindowDataset needs at least one episode")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.context, self.stride = context, stride
        self.frames = torch.from_numpy(np.concatenate([e.frames for e in episodes]))
        steps, first, acts, envs = [], [], [], []
        self.env_ids = list(dict.fromkeys(e.env_id for e in episodes))  # index of each window's env: balanced batches
        f0 = 0
        for e in episodes:
            n = max(0, len(e.actions) - stride + 1)  # windows whose target is in the episode
            steps.append(f0 + np.arange(n))
            first.append(np.full(n, f0))
            if stride == 1:
                acts.append(e.actions)
            elif n:
                acts.append(np.stack([e.actions[t:t + stride].mean(0) for t in range(n)]))
            else:  # an episode shorter than the stride has no window
                acts.append(np.zeros((0, e.actions.shape[1]), np.float32))
            envs.append(np.full(n, self.env_ids.index(e.env_id)))
            f0 += len(e.actions) + 1
        self.frame_index = np.concatenate(steps)  # frame index of frame t of each window
        self.first_index = np.concatenate(first)  # reset frame of its episode
        self.actions = torch.from_numpy(np.concatenate(acts).astype(np.float32))  # one row per window
        self.env_index = np.concatenate(envs)
        self._changed: np.ndarray | None = None  # changed_fraction() per window, computed on first use
        self._pools: dict[tuple[bool, float], list[np.ndarray]] = {}  # env_pools() cache

    def __len__(self) -> int:
        return len(self.frame_index)

    def get(self, idx: np.ndarray) -> Batch:
        k, s = self.context, self.stride
        t = self.frame_index[idx]
        offs = np.arange(-k + 1, 1) * s
        ctx = np.maximum(t[:, None] + offs[None, :], self.first_index[idx][:, None])
        return Batch(context=self.frames[torch.from_numpy(ctx)], action=self.actions[torch.from_numpy(np.asarray(idx))],
                     target=self.frames[torch.from_numpy(t + s)])

    def changed_fraction(self, chunk: int = 1024) -> np.ndarray:
        """``float[len(self)]``: share of pixels that differ between frame ``t`` and its target ``t + stride``."""
        if self._changed is None:
            t, s = self.frame_index, self.stride
            frames = self.frames.numpy()
            self._changed = np.concatenate([changed_fraction(frames[t[i:i + chunk]], frames[t[i:i + chunk] + s])
                                            for i in range(0, len(t), chunk)]).astype(np.float32)
        return self._changed

    def env_pools(self, changed_only: bool = False, min_changed: float = MIN_CHANGED) -> list[np.ndarray]:
        """Per env (in ``env_ids`` order), the indices of its windows (only those that change, with
        ``changed_only``); computed once per setting, since balanced batches ask for them every step."""
        key = (changed_only, float(min_changed))
        if key not in self._pools:
            mask = self.changed_fraction() >= min_changed if changed_only else np.ones(len(self), bool)
            self._pools[key] = [np.flatnonzero(mask & (self.env_index == e)) for e in range(len(self.env_ids))]
        return self._pools[key]

    def env_shares(self, source_balance: float, changed_only: bool = False,
                   min_changed: float = MIN_CHANGED) -> np.ndarray:
        """``float[len(env_ids)]``: each env's share of a batch, proportional to its number of windows (those that
        change, with ``changed_only``) to the power ``1 - source_balance``."""
        counts = np.array([len(p) for p in self.env_pools(changed_only, min_changed)], np.float64)
        weights = np.where(counts > 0, counts ** (1.0 - source_balance), 0.0)
        return weights / weights.sum() if weights.sum() > 0 else weights

    def sample(self, rng: np.random.Generator, n: int, changed_share: float = 0.0,
               min_changed: float = MIN_CHANGED, source_balance: float = 0.0) -> Batch:
        """``n`` random windows; ``changed_share`` of them (rounded) from windows where at least
        ``min_changed`` of the pixels change. GUI videos are mostly static (a click that opens a tab is a
        few percent of the steps), so uniform batches teach a model to copy the last frame.

        ``source_balance > 0`` first draws each window's env with :meth:`env_shares`: an app that is a small
        part of the recordings (SettingsTabs: 9% of the changing GUI windows) otherwise gets too few draws to
        learn its pages."""
        if source_balance > 0:
            return self.get(self._balanced_indices(rng, n, changed_share, min_changed, source_balance))
        idx = rng.integers(0, len(self), size=n)
        k = int(round(changed_share * n))
        if k:
            moving = np.flatnonzero(self.changed_fraction() >= min_changed)
            if len(moving):
                idx[:k] = moving[rng.integers(0, len(moving), size=k)]
        return self.get(idx)

    def _balanced_indices(self, rng: np.random.Generator, n: int, changed_share: float, min_changed: float,
                          source_balance: float) -> np.ndarray:
        k = int(round(changed_share * n))
        if not any(len(pool) for pool in self.env_pools(True, min_changed)):  # cached: this runs every step
            k = 0
        idx = np.empty(n, np.int64)
        for part, count, changed_only in ((slice(0, k), k, True), (slice(k, n), n - k, False)):
            if count == 0:
                continue
            shares = self.env_shares(source_balance, changed_only=changed_only, min_changed=min_changed)
            pools = self.env_pools(changed_only, min_changed)
            envs = rng.choice(len(shares), size=count, p=shares)
            chosen = np.empty(count, np.int64)
            for e in np.unique(envs):
                at = np.flatnonzero(envs == e)
                chosen[at] = pools[e][rng.integers(0, len(pools[e]), size=len(at))]
            idx[part] = chosen
        return idx
