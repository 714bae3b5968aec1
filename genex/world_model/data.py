"""Training data: recorded episodes (``genex record``) cut into next-frame windows.

A window at step ``t`` of an episode is ``(context, action, target)`` with
``context = frames[t-K+1 .. t]`` (frames before the start repeat the reset
frame), ``action = actions[t]`` and ``target = frames[t+1]``.

Two ways to hold the frames, with the same windows in the same order (so the same seed draws the same batches):

* :class:`WindowDataset` (in memory): every frame of every episode as one ``uint8`` array. Fastest for small
  data; its memory is ``frames x H x W x 3`` bytes per training process, e.g. the shipped driving recordings
  (3 scenes x 300 episodes of 64x64, at most 81-101 frames each) are at most 0.97 GB (about 0.35 GB at the
  ~31 frames a crosswalk episode averages), the GUI ones (2200 episodes of 128x128, at most 21-41 frames)
  at most 3.3 GB; N processes on one machine hold N copies. Built by :meth:`WindowDataset.from_refs` it holds
  them once; :func:`load_recordings` + ``WindowDataset(episodes)`` (how training loaded data before) hold
  them twice while the episode list lives (peak RSS 227 MB for 109 MB of 64x64 frames, against 119 MB).
* :class:`StreamingWindowDataset`: an index of the windows (actions and lengths; frames never) from
  :func:`scan_recordings`, and episode frames decoded from their ``.npz`` files on demand into a small LRU
  cache: ``cache_episodes x (frames of an episode) x H x W x 3`` bytes per loading process (64 driving episodes:
  at most 80 MB; 64 GUI episodes: at most 130 MB), whatever the size of the data (peak RSS 34 MB on the data
  above). A random batch touches ~one episode per window, so each step decodes about ``batch`` episodes
  (~40 batches of 32 a second on one core): use ``--workers`` to overlap that with training.

Batches are drawn per optimizer step by :class:`StepBatchSampler`: from ``numpy.random.default_rng([seed,
step])`` when a step is split into several shards (processes x micro-batches), a function of the step alone, so
any number of processes draws the same global batches and nothing needs checkpointing; from one checkpointed
generator, as before, when one process takes the whole batch.

For a model conditioned on a layout (``cfg.layout_channels > 0``, driving model v2) each window's :class:`Batch` also
holds the *target* frame's occupancy (``Episode.occupancy > 0``: which cells each fact shows in), kept in memory
as ``bool[frames, F, gh, gw]`` by both datasets (a few hundred bytes per frame: no decoding on demand); recordings
made without occupancy maps are refused. Without ``layout_channels`` the occupancy is never read into the index.
"""

from __future__ import annotations

import itertools
import logging
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from ..recording import (_UNREADABLE, RecordingError, _episode_from_arrays, _unreadable, episode_paths, iter_episodes,
                         read_manifest)
from .actions import encode_actions
from .config import WorldModelConfig
from .denoiser import Batch
from .network import with_colours

__all__ = ["EpisodeData", "EpisodeRef", "WindowDataset", "StreamingWindowDataset", "StepBatchSampler", "load_recordings",
           "scan_recordings", "split_episodes", "changed_fraction", "collate_batch", "layout_of", "MIN_CHANGED"]

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
    occupancy: np.ndarray | None = None  # bool[T+1, F, gh, gw] for a layout model (cells a fact shows in), else None


@dataclass
class EpisodeRef:
    """One episode on disk, without its frames: what :class:`StreamingWindowDataset` indexes (a few hundred bytes
    per episode, the encoded actions included)."""

    path: Path
    frame_shape: tuple[int, ...]  # (T+1, H, W, 3), from the .npy header: nothing decoded
    actions: np.ndarray  # float32[T, A] (encoded)
    env_id: str
    seed: int
    occupancy: np.ndarray | None = None  # bool[T+1, F, gh, gw] for a layout model, else None (not kept)

    @property
    def nbytes(self) -> int:
        """Bytes of the episode's frames once decoded."""
        return int(np.prod(self.frame_shape))

    def load_frames(self) -> np.ndarray:
        """Decode this episode's frames (the ``frames`` member of the ``.npz`` only)."""
        try:
            with np.load(self.path, allow_pickle=False) as z:
                frames = z["frames"]
        except _UNREADABLE as e:
            raise _unreadable(self.path, e) from e
        if frames.shape != self.frame_shape:
            raise RecordingError(f"{self.path} changed while training: frames {frames.shape}, indexed as "
                                 f"{self.frame_shape}")
        return frames


def require_action_labels(cfg: WorldModelConfig, episode: Any, folder: str | Path) -> None:
    """Raise if a ``click_text`` model is given an episode recorded without the labels of clicked widgets."""
    if cfg.click_text and len(episode) and not episode.action_labels:
        raise ValueError(f"{folder} was recorded without the labels of clicked widgets, which a click_text model "
                         "conditions on; record it again into a new folder with this version of genex record")


def layout_of(cfg: WorldModelConfig, episode: Any, folder: str | Path) -> np.ndarray | None:
    """``bool[T+1, F, gh, gw]``: the cells each fact occupies in each frame of ``episode``, for a model with
    ``layout_channels`` (None for one without: nothing is kept); with ``appearance_facts``,
    ``uint8[T+1, layout_maps, gh, gw]``, the facts' colours after the occupancy (``network.with_colours``). Raises ``ValueError`` naming ``folder`` when the
    episode was recorded without occupancy maps or with another number of facts."""
    if not cfg.layout_channels:
        return None
    occ = episode.occupancy
    if occ is None:
        raise ValueError(f"{folder} has no occupancy maps (recorded before genex record saved info['occupancy'], or "
                         f"from an env without them), which a layout model (layout_channels={cfg.layout_channels}) "
                         "is trained on; re-record it with `genex record` into a new folder")
    if occ.ndim != 4 or occ.shape[1] != cfg.layout_channels or cfg.height % occ.shape[2] or cfg.width % occ.shape[3]:
        raise ValueError(f"{folder} has occupancy maps of shape {list(occ.shape[1:])}; the model expects "
                         f"[{cfg.layout_channels}, gh, gw] with a grid dividing {cfg.height}x{cfg.width}")
    if not cfg.appearance_facts:
        return np.asarray(occ) > 0
    colours = getattr(episode, "appearance", None)
    if colours is None or colours.shape != (len(occ), cfg.layout_channels, 3):
        raise ValueError(f"{folder} has no colours of its facts (info['appearance'], recorded by genex record since "
                         f"2026-12-08), which a model with appearance_facts={list(cfg.appearance_facts)} is told; "
                         "re-record it with `genex record` into a new folder")
    return with_colours(cfg, torch.from_numpy(np.asarray(occ) > 0), torch.from_numpy(np.asarray(colours))).numpy()


def _check_manifest(d: str | Path, cfg: WorldModelConfig) -> Any:
    manifest = read_manifest(d)
    if cfg.layout_channels and len(manifest.facts) != cfg.layout_channels:
        raise ValueError(f"{d} ({manifest.env_id}) records {len(manifest.facts)} facts {manifest.facts}, but the "
                         f"model is conditioned on layout_channels={cfg.layout_channels}; pick a --config whose "
                         "layout_channels is the scene's number of facts")
    h, w = manifest.image_shape[:2]
    if (h, w) != (cfg.height, cfg.width):
        raise ValueError(f"{d} holds {h}x{w} frames but the world-model config expects {cfg.height}x{cfg.width}; "
                         f"record with matching --env-kwargs or pick another --config")
    if cfg.action_family == "discrete":
        missing = sorted(set(manifest.action_names) - set(cfg.action_vocab))
        if missing:
            raise ValueError(f"{d} ({manifest.env_id}) uses actions {missing} outside the model's vocabulary "
                             f"{list(cfg.action_vocab)}")
    return manifest


_E = TypeVar("_E")


def load_recordings(dirs: Sequence[str | Path], cfg: WorldModelConfig, limit: int | None = None) -> list[EpisodeData]:
    """Episodes of every recording folder in ``dirs``, checked against ``cfg`` (frame size, actions)."""
    def read(d: str | Path, manifest: Any) -> Iterator[EpisodeData]:
        for ep in iter_episodes(d):
            if len(ep) == 0:
                continue
            require_action_labels(cfg, ep, d)
            yield EpisodeData(frames=ep.frames, actions=encode_actions(ep.actions, cfg, manifest.action_names),
                              raw_actions=list(ep.actions), env_id=manifest.env_id,
                              seed=int(ep.meta.get("seed", -1)), meta=ep.meta, occupancy=layout_of(cfg, ep, d))

    return _per_folder(dirs, cfg, limit, read, "loaded", logging.INFO)


def _frames_shape(path: Path) -> tuple[int, ...]:
    """Shape of the ``frames`` array of an episode file, from its ``.npy`` header (no frame is decoded)."""
    with zipfile.ZipFile(path) as zf, zf.open("frames.npy") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = read(f)
    return tuple(int(x) for x in shape)


def scan_recordings(dirs: Sequence[str | Path], cfg: WorldModelConfig, limit: int | None = None) -> list[EpisodeRef]:
    """The episodes of ``dirs`` as :class:`EpisodeRef` (same checks and order as :func:`load_recordings`).

    Reads every member of each ``.npz`` except the frames (members are decompressed one by one), so it costs a
    small part of loading the data and holds none of its frames.
    """
    def read(d: str | Path, manifest: Any) -> Iterator[EpisodeRef]:
        for path in episode_paths(d):
            try:
                with np.load(path, allow_pickle=False) as z:
                    arrays: dict[str, Any] = {k: z[k] for k in z.files if k != "frames"}
                arrays["frames"] = None
                ep = _episode_from_arrays(arrays)
                shape = _frames_shape(path)
            except _UNREADABLE as e:
                raise _unreadable(path, e) from e
            if len(ep) == 0:
                continue
            if shape[0] != len(ep) + 1:
                raise _unreadable(path, ValueError(f"{shape[0]} frames for {len(ep)} steps"))
            require_action_labels(cfg, ep, d)
            yield EpisodeRef(path=path, frame_shape=shape, env_id=manifest.env_id,
                             actions=encode_actions(ep.actions, cfg, manifest.action_names),
                             seed=int(ep.meta.get("seed", -1)), occupancy=layout_of(cfg, ep, d))

    return _per_folder(dirs, cfg, limit, read, "indexed", logging.DEBUG)


def _per_folder(dirs: Sequence[str | Path], cfg: WorldModelConfig, limit: int | None,
                read: Callable[[str | Path, Any], Iterator[_E]], verb: str, level: int) -> list[_E]:
    """The non-empty episodes ``read`` yields from each folder (its manifest checked against ``cfg``), at most
    ``limit`` per folder, in order; ``ValueError`` when there are none at all."""
    out: list[_E] = []
    facts: list[str] | None = None
    for d in dirs:
        manifest = _check_manifest(d, cfg)
        if cfg.layout_channels:  # a layout channel means one fact in every folder
            facts = manifest.facts if facts is None else facts
            if manifest.facts != facts:
                raise ValueError(f"{d} records the facts {manifest.facts}, another folder {facts}: a layout model's "
                                 "channels are one scene's facts, in one order")
        before = len(out)
        out.extend(itertools.islice(read(d, manifest), limit))
        log.log(level, "%s %d episodes in %s (%s)", verb, len(out) - before, d, manifest.env_id)
    if not out:
        raise ValueError(f"no episodes found in {list(map(str, dirs))}")
    return out


def split_episodes(episodes: list[_E], eval_fraction: float = 0.05, max_eval: int = 16) -> tuple[list[_E], list[_E]]:
    """Deterministic train/validation split: every ``1/eval_fraction``-th episode goes to validation."""
    stride = max(2, int(round(1 / eval_fraction))) if eval_fraction > 0 else 0
    if not stride:
        return episodes, []
    val = [e for i, e in enumerate(episodes) if i % stride == stride - 1][:max_eval]
    ids = {id(e) for e in val}
    return [e for e in episodes if id(e) not in ids], val


class WindowDataset:
    """All windows of a list of episodes, frames in memory; ``sample(rng, n)`` draws a :class:`Batch`.

    A window at frame ``t`` has the context frames ``t - (K-1)s, ..., t - s, t`` (clamped to the episode's reset
    frame), the action and the target frame ``t + s``, for ``stride`` ``s``. ``s = 1`` (the default) is the
    next-frame model; ``s > 1`` predicts ``s`` steps at once from every ``s``-th frame, with the mean of the ``s``
    encoded actions as its action (``experiments/stride_experiment/run.py``).

    It is also a map-style dataset for a ``torch.utils.data.DataLoader`` whose batch sampler yields lists of window
    indices (:class:`StepBatchSampler`): ``__getitems__`` returns the whole :class:`Batch` at once.
    """

    def __init__(self, episodes: list[EpisodeData], context: int, stride: int = 1, *, layout: bool = False) -> None:
        if not episodes:
            raise ValueError("WindowDataset needs at least one episode")
        self._index([e.actions for e in episodes], [e.env_id for e in episodes], context, stride)
        self._index_layout([e.occupancy for e in episodes], layout)
        self.frames: torch.Tensor | None = torch.from_numpy(np.concatenate([e.frames for e in episodes]))

    @classmethod
    def from_refs(cls, refs: list[EpisodeRef], context: int, stride: int = 1, *,
                  layout: bool = False) -> "WindowDataset":
        """The in-memory dataset of episodes on disk, decoded straight into one array (no second copy while
        loading, unlike concatenating :func:`load_recordings`' episodes). ``layout``: batches hold the target
        frames' occupancy (the refs must carry it: :func:`scan_recordings` with a ``layout_channels`` config)."""
        if not refs:
            raise ValueError("WindowDataset needs at least one episode")
        self = cls.__new__(cls)
        self._index([r.actions for r in refs], [r.env_id for r in refs], context, stride)
        self._index_layout([r.occupancy for r in refs], layout)
        frames = np.empty((sum(r.frame_shape[0] for r in refs), *refs[0].frame_shape[1:]), np.uint8)
        f0 = 0
        for r in refs:
            frames[f0:f0 + r.frame_shape[0]] = r.load_frames()
            f0 += r.frame_shape[0]
        self.frames = torch.from_numpy(frames)
        return self

    def _index(self, actions: list[np.ndarray], env_ids: list[str], context: int, stride: int) -> None:
        """The windows of episodes with these encoded actions (``T`` rows each; ``T + 1`` frames), in order."""
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.context, self.stride = context, stride
        steps, first, acts, envs, starts = [], [], [], [], []
        self.env_ids = list(dict.fromkeys(env_ids))  # index of each window's env: balanced batches
        f0 = 0
        for a, env in zip(actions, env_ids):
            n = max(0, len(a) - stride + 1)  # windows whose target is in the episode
            starts.append(f0)
            steps.append(f0 + np.arange(n))
            first.append(np.full(n, f0))
            if stride == 1:
                acts.append(a)
            elif n:
                acts.append(np.stack([a[t:t + stride].mean(0) for t in range(n)]))
            else:  # an episode shorter than the stride has no window
                acts.append(np.zeros((0, a.shape[1]), np.float32))
            envs.append(np.full(n, self.env_ids.index(env)))
            f0 += len(a) + 1
        self.episode_start = np.asarray(starts, np.int64)  # frame index of each episode's reset frame
        self.num_frames = f0
        self.frame_index = np.concatenate(steps)  # frame index of frame t of each window
        self.first_index = np.concatenate(first)  # reset frame of its episode
        self.actions = torch.from_numpy(np.concatenate(acts).astype(np.float32))  # one row per window
        self.env_index = np.concatenate(envs)
        self._changed: np.ndarray | None = None  # changed_fraction() per window, computed on first use
        self._pools: dict[tuple[bool, float], list[np.ndarray]] = {}  # env_pools() cache

    def _index_layout(self, occupancy: list[np.ndarray | None], layout: bool) -> None:
        """Keep every frame's occupancy (``bool[num_frames, F, gh, gw]``, in frame order) when ``layout``."""
        self.occupancy: torch.Tensor | None = None
        if not layout:
            return
        if any(o is None for o in occupancy):
            raise ValueError("a layout model's windows need each episode's occupancy: load the episodes with a config "
                             "that has layout_channels > 0 (scan_recordings / load_recordings keep it then)")
        grids = sorted({tuple(o.shape[1:]) for o in occupancy})
        if len(grids) > 1:
            raise ValueError(f"the episodes have occupancy maps of shapes {grids}: record every folder at one frame "
                             "size and occupancy cell")
        kept = np.concatenate(occupancy)
        self.occupancy = torch.from_numpy(kept if kept.dtype == np.uint8 else kept > 0)  # uint8: with colours
        if len(self.occupancy) != self.num_frames:
            raise ValueError(f"{len(self.occupancy)} occupancy maps for {self.num_frames} frames")

    def __len__(self) -> int:
        return len(self.frame_index)

    def _frames_at(self, index: np.ndarray) -> torch.Tensor:
        """``uint8[*index.shape, H, W, 3]``: the frames at these (dataset-wide) frame indices."""
        return self.frames[torch.from_numpy(index)]

    def get(self, idx: np.ndarray) -> Batch:
        k, s = self.context, self.stride
        idx = np.asarray(idx, np.int64)
        t = self.frame_index[idx]
        offs = np.arange(-k + 1, 1) * s
        ctx = np.maximum(t[:, None] + offs[None, :], self.first_index[idx][:, None])
        frames = self._frames_at(np.concatenate([ctx, (t + s)[:, None]], axis=1))  # one lookup: one cache pass
        layout = None if self.occupancy is None else self.occupancy[torch.from_numpy(t + s)]
        return Batch(context=frames[:, :k].contiguous(), action=self.actions[torch.from_numpy(idx)],
                     target=frames[:, k].contiguous(), layout=layout)

    def __getitem__(self, i: int) -> Batch:
        return self.get(np.array([i]))

    def __getitems__(self, idx: list[int]) -> Batch:
        """A whole batch (``DataLoader`` calls this with a batch sampler's list of indices)."""
        return self.get(np.asarray(idx, np.int64))

    def _episode_frames(self, e: int) -> np.ndarray:
        """``uint8[T+1, H, W, 3]`` of episode ``e``."""
        assert self.frames is not None
        end = self.episode_start[e + 1] if e + 1 < len(self.episode_start) else self.num_frames
        return self.frames[int(self.episode_start[e]):int(end)].numpy()

    def _read_episode(self, e: int) -> np.ndarray:
        """Episode ``e``'s frames for a single pass over the data (streaming: decoded, not cached)."""
        return self._episode_frames(e)

    def changed_fraction(self, chunk: int = 1024) -> np.ndarray:
        """``float[len(self)]``: share of pixels that differ between frame ``t`` and its target ``t + stride``."""
        if self._changed is None:
            t, s = self.frame_index, self.stride
            if self.frames is not None:
                frames = self.frames.numpy()
                parts = [changed_fraction(frames[t[i:i + chunk]], frames[t[i:i + chunk] + s])
                         for i in range(0, len(t), chunk)]
            else:  # one pass over the episodes, each decoded once (windows are in episode order)
                ep = np.searchsorted(self.episode_start, t, side="right") - 1
                parts = []
                for e in np.unique(ep):
                    local = t[ep == e] - self.episode_start[e]
                    frames = self._read_episode(int(e))
                    parts.append(changed_fraction(frames[local], frames[local + s]))
            self._changed = (np.concatenate(parts) if parts else np.zeros(0)).astype(np.float32)
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
        return self.get(self.draw_indices(rng, n, changed_share, min_changed, source_balance))

    def draw_indices(self, rng: np.random.Generator, n: int, changed_share: float = 0.0,
                     min_changed: float = MIN_CHANGED, source_balance: float = 0.0) -> np.ndarray:
        """The window indices :meth:`sample` draws (the changing ones first)."""
        if source_balance > 0:
            return self._balanced_indices(rng, n, changed_share, min_changed, source_balance)
        idx = rng.integers(0, len(self), size=n)
        k = int(round(changed_share * n))
        if k:
            moving = np.flatnonzero(self.changed_fraction() >= min_changed)
            if len(moving):
                idx[:k] = moving[rng.integers(0, len(moving), size=k)]
        return idx

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


class StreamingWindowDataset(WindowDataset):
    """The windows of episodes on disk, their frames decoded on demand: for data that does not fit in memory.

    Holds the window index (:meth:`WindowDataset._index`: encoded actions, a few integers per window) and an LRU
    cache of the last ``cache_episodes`` decoded episodes; a batch decodes each episode it touches that is not
    cached (the whole ``frames`` member: episode files are compressed, so no part of one can be read alone).
    Each ``DataLoader`` worker has its own cache. Windows, their order and therefore the batches a seed draws
    are those of :meth:`WindowDataset.from_refs` on the same episodes.
    """

    def __init__(self, refs: list[EpisodeRef], context: int, stride: int = 1, cache_episodes: int = 64, *,
                 layout: bool = False) -> None:
        if not refs:
            raise ValueError("StreamingWindowDataset needs at least one episode")
        if cache_episodes < 1:
            raise ValueError(f"cache_episodes must be >= 1, got {cache_episodes}")
        self._index([r.actions for r in refs], [r.env_id for r in refs], context, stride)
        self._index_layout([r.occupancy for r in refs], layout)
        self.frames = None
        self.refs = refs
        self.frame_shape = tuple(refs[0].frame_shape[1:])
        self.cache_episodes = cache_episodes
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.decoded = 0  # episodes decoded so far (cache misses), for tests and logs

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": OrderedDict()}  # a worker starts with an empty cache

    def _episode_frames(self, e: int) -> np.ndarray:
        frames = self._cache.get(e)
        if frames is not None:
            self._cache.move_to_end(e)
            return frames
        frames = self.refs[e].load_frames()
        self.decoded += 1
        self._cache[e] = frames
        while len(self._cache) > self.cache_episodes:
            self._cache.popitem(last=False)
        return frames

    def _read_episode(self, e: int) -> np.ndarray:
        return self.refs[e].load_frames()

    def _frames_at(self, index: np.ndarray) -> torch.Tensor:
        flat = index.reshape(-1)
        ep = np.searchsorted(self.episode_start, flat, side="right") - 1
        out = np.empty((len(flat), *self.frame_shape), np.uint8)
        for e in np.unique(ep):
            at = ep == e
            out[at] = self._episode_frames(int(e))[flat[at] - self.episode_start[e]]
        return torch.from_numpy(out.reshape(*index.shape, *self.frame_shape))


def collate_batch(batch: Batch) -> Batch:
    """The ``DataLoader``'s ``collate_fn``: :meth:`WindowDataset.__getitems__` already returns a :class:`Batch`."""
    return batch


class StepBatchSampler:
    """A ``DataLoader`` batch sampler: for each optimizer step ``s`` in ``[start, stop)``, a global batch of
    ``batch_size`` window indices (``draw(data, rng, batch_size)``; by default :meth:`WindowDataset.draw_indices`
    with ``changed_share`` and ``source_balance``), yielded as ``accum`` micro-batches of
    ``batch_size // accum`` indices.

    Per-step draws (the default): step ``s``'s batch comes from ``numpy.random.default_rng([seed, s])``, shuffled
    so every shard gets its share of changing windows. Under Accelerate with ``split_batches=True`` each process
    takes its slice of every micro-batch, so shard ``micro * processes + rank`` of step ``s`` is the same windows
    whatever the number of processes, and a resume needs no sampler state.

    With ``rng`` (one process, one micro-batch: the single-process stream genex always used) the batches are
    drawn one after the other from that generator, as :meth:`WindowDataset.sample` draws them;
    :meth:`rng_state_after` gives its state once a step's batch is drawn (the DataLoader draws a few steps
    ahead), for the checkpoint.
    """

    def __init__(self, data: WindowDataset, batch_size: int, *, start: int, stop: int, seed: int, accum: int = 1,
                 changed_share: float = 0.0, source_balance: float = 0.0,
                 rng: np.random.Generator | None = None,
                 draw: Callable[[WindowDataset, np.random.Generator, int], np.ndarray] | None = None) -> None:
        if batch_size % accum:
            raise ValueError(f"batch size {batch_size} is not divisible by {accum} accumulation steps")
        if rng is not None and accum != 1:
            raise ValueError("one random stream (rng) serves one process with one micro-batch per step")
        self.data, self.global_batch, self.accum = data, batch_size, accum
        self.batch_size = batch_size // accum  # what accelerate's BatchSamplerShard splits across processes
        self.drop_last = False
        self.start, self.stop, self.seed = start, stop, seed
        self.changed_share, self.source_balance = changed_share, source_balance
        self.rng = rng
        self.draw = draw if draw is not None else self._draw
        self._states: dict[int, dict[str, Any]] = {}

    def _draw(self, data: WindowDataset, rng: np.random.Generator, n: int) -> np.ndarray:
        return data.draw_indices(rng, n, changed_share=self.changed_share, source_balance=self.source_balance)

    def step_indices(self, step: int) -> np.ndarray:
        """``int64[batch_size]``: the global batch of optimizer step ``step`` (per-step draws)."""
        rng = np.random.default_rng([self.seed % 2**32, step])
        idx = self.draw(self.data, rng, self.global_batch)
        return idx[rng.permutation(len(idx))]

    def rng_state_after(self, step: int) -> dict[str, Any]:
        """The state of ``rng`` once step ``step - 1``'s batch is drawn (for a checkpoint after ``step`` steps)."""
        if self.rng is None:
            raise ValueError("per-step draws keep no random state")
        for s in [s for s in self._states if s < step - 1]:
            del self._states[s]
        return self._states[step - 1]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            if self.rng is not None:
                idx = self.draw(self.data, self.rng, self.global_batch)
                self._states[step] = self.rng.bit_generator.state
            else:
                idx = self.step_indices(step)
            for m in range(self.accum):
                yield idx[m * self.batch_size:(m + 1) * self.batch_size].tolist()

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.accum
