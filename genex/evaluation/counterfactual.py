"""Counterfactual replays of crosswalk episodes: do a world model's imagined futures split where the outcome is
uncertain and agree where it is visible? (issue 4's stochasticity clause, measured with no detector in the loop)

Each recorded ``OccludedCrosswalk`` episode is replayed twice with its recorded actions (:func:`replay_pair`): as
recorded, and with the pedestrian's presence flipped in a restored snapshot (removed where there was one, added
where there was none; the truck, the ball and the timing stay). Every window (``K`` context frames, ``T`` future
steps) then falls in one group (:func:`group_of`):

* ``"uncertain"``: the two replays' context frames are identical (no camera can tell the hypotheses apart) but
  their futures differ within the horizon;
* ``"visible"``: the context frames already differ (the pedestrian or its feet are in view), and so do the futures;
* ``"settled"``: the futures are the same under both hypotheses (:func:`settled`): nothing hidden can show up
  within the horizon, so there is no alternative to choose between.

Each imagined sample is assigned to the hypothesis whose real future it is nearer to (:func:`classify`), and
:func:`summarize` turns the per-window results into the table of ``docs/world_model.md``, "Stochasticity against
counterfactual replays". :func:`select_windows` and :func:`compose` pick and draw windows of one group for
pictures; :func:`parse_model` reads the ``LABEL=DIR[:FIELD=VALUE,...]`` model specs of those pictures.

Privileged (it flips hidden state in the simulator): evaluation only, never used by a planner. Importing this
module loads neither torch nor a world model; :func:`load_replays` imports Gymnasium and the envs only when it
has to replay.

Used by ``experiments/stochasticity_counterfactual``, ``experiments/counterfactual_strips`` and
``experiments/stride_experiment``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from .windows import label_window

if TYPE_CHECKING:
    import gymnasium as gym

    from genex.world_model.data import EpisodeData

__all__ = [
    "DIFF_LEVELS", "GAP", "GROUPS", "MIN_PIXELS", "WindowResult", "classify", "compose", "differs", "group_of",
    "load_replays", "parse_model", "replay", "replay_pair", "select_windows", "settled", "summarize",
]

#: a pixel differs between two frames when one of its channels differs by more than this (uint8 levels)
DIFF_LEVELS = 32
#: two replays' futures differ when at least this many pixels differ at some step (a far pedestrian is ~6)
MIN_PIXELS = 4
#: pixels between frames and between rows in :func:`compose`
GAP = 2
#: the window groups, in the order :func:`summarize` reports them
GROUPS = ("uncertain", "visible", "settled")

Group = Literal["uncertain", "visible", "settled"]


def replay(env: gym.Env, seed: int, actions: Sequence[int] | np.ndarray, flip: str | None) -> np.ndarray:
    """``uint8[T + 1, H, W, 3]``: the episode of ``seed`` replayed with ``actions``, with agent ``flip``'s presence
    flipped at the start (``None``: as recorded).

    ``env`` is a driving env (``genex/OccludedCrosswalk-v0`` for ``flip="pedestrian"``); the flip edits the world
    state of a snapshot and restores it, so nothing else about the episode changes. Stops early if the flipped
    world ends the episode (the ego hits a pedestrian the recording never had).
    """
    obs, _ = env.reset(seed=seed)
    if flip is not None:
        u = env.unwrapped
        snap = u.snapshot()
        world = snap.state["world"]
        present = np.array(world.agents.present, copy=True)
        present[u.scenario.slot(flip)] = ~present[u.scenario.slot(flip)]
        snap.state["world"] = world._replace(agents=world.agents._replace(present=present))
        obs, _ = u.restore(snap)
    frames = [obs["image"]]
    for a in actions:
        obs, _, terminated, _, _ = env.step(int(a))
        frames.append(obs["image"])
        if terminated:
            break
    return np.stack(frames)


def differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``bool[..., H, W]``: pixels where two uint8 frames (``[..., H, W, 3]``) differ by more than
    :data:`DIFF_LEVELS` in some channel."""
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)) > DIFF_LEVELS).any(-1)


def replay_pair(env: gym.Env, ep: EpisodeData) -> dict[str, np.ndarray]:
    """The cache entries of one recorded crosswalk episode: its replay as recorded, with the pedestrian flipped,
    and whether the recording has one (keys ``seed{N}_real``, ``seed{N}_flipped``, ``seed{N}_present``)."""
    key = f"seed{ep.seed}"
    present = bool(env.reset(seed=ep.seed)[1]["hidden"]["pedestrian_crossing"])  # the episode's truth, unflipped
    real = replay(env, ep.seed, ep.raw_actions, None)
    flipped = replay(env, ep.seed, ep.raw_actions, "pedestrian")
    return {f"{key}_real": real, f"{key}_flipped": flipped, f"{key}_present": np.array(present)}


def settled(fut_r: np.ndarray, fut_f: np.ndarray) -> bool:
    """Whether two replays' ``uint8[T, H, W, 3]`` futures are the same (fewer than :data:`MIN_PIXELS` differ at
    every step): nothing hidden shows up within the horizon, so there is no alternative to choose between."""
    return bool(differs(fut_r, fut_f).reshape(len(fut_r), -1).sum(1).max() < MIN_PIXELS)


def group_of(fut_r: np.ndarray, fut_f: np.ndarray, same_ctx: bool) -> Group:
    """A window's group from its two replays' ``uint8[T, H, W, 3]`` futures and whether their context frames are
    identical: ``"settled"``, ``"uncertain"`` or ``"visible"`` (see the module's docstring): the
    :func:`~genex.evaluation.windows.label_window` of "the replays differ" (any pixel in the context, at least
    :data:`MIN_PIXELS` at a future step, as :func:`settled` counts), settled first."""
    steps = differs(fut_r, fut_f).reshape(len(fut_r), -1).sum(1) >= MIN_PIXELS
    label = label_window(np.concatenate([[not same_ctx], steps]), 0, context=1, horizon=None, settle_first=True)
    return {"stays": "settled", "comes": "uncertain", "in_view": "visible"}[label]


def load_replays(episodes: Iterable[EpisodeData], env_id: str, env_kwargs: Mapping[str, Any],
                 path: str | Path | None) -> dict[str, np.ndarray]:
    """The :func:`replay_pair` entries of every episode: read from the ``.npz`` at ``path`` where it has them, the
    others replayed in MuJoCo (``gym.make(env_id, **env_kwargs)``; headless: ``MUJOCO_GL=egl``), and the file
    written with them when ``path`` is given. With a complete cache, another checkpoint or sampler is measured
    without MuJoCo."""
    cache = dict(np.load(path)) if path and Path(path).exists() else {}
    missing = [ep for ep in episodes if f"seed{ep.seed}_real" not in cache]
    if missing:
        import gymnasium as gym
        from tqdm.auto import tqdm

        import genex.envs  # noqa: F401  (registers the envs)
        env = gym.make(env_id, **env_kwargs)
        try:
            for ep in tqdm(missing, desc="replays"):
                cache.update(replay_pair(env, ep))
        finally:
            env.close()
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, **cache)
    return cache


def classify(samples: np.ndarray, fut_r: np.ndarray, fut_f: np.ndarray, same_ctx: bool,
             present: bool) -> tuple[Group, int]:
    """A window's group and how many of its ``float32[S, T, H, W, 3]`` samples are nearer the future with the
    pedestrian; ``fut_r``/``fut_f`` are the recorded and flipped replays' ``uint8[T, H, W, 3]`` futures and
    ``present`` whether the recording has a pedestrian.

    Nearness is the squared error over the pixels where the two real futures differ (at any step), summed over the
    horizon; a tie (a sample as far from both) counts as "no pedestrian". Settled windows count 0.
    """
    group = group_of(fut_r, fut_f, same_ctx)
    if group == "settled":
        return group, 0
    mask = differs(fut_r, fut_f)  # [T,H,W]
    fut_p, fut_a = (fut_r, fut_f) if present else (fut_f, fut_r)
    sel = mask[None, :, :, :, None]
    d_p = (((samples - fut_p) ** 2) * sel).reshape(len(samples), -1).sum(1)
    d_a = (((samples - fut_a) ** 2) * sel).reshape(len(samples), -1).sum(1)
    return group, int((d_p < d_a).sum())


@dataclass
class WindowResult:
    """One window's result, as :func:`summarize` reads it."""

    group: str  # "uncertain", "visible" or "settled"
    present: bool  # the recorded episode has a pedestrian
    chose_present: int  # samples nearer to the pedestrian-present future
    samples: int
    pixel_std: float  # mean over pixels and horizon of the std across samples (0..255)


def summarize(results: Sequence[WindowResult]) -> dict[str, dict[str, float]]:
    """Per group (in the order of :data:`GROUPS`; empty groups left out): windows ``n``, the share with a
    pedestrian (``true``), of samples choosing one (``chose``), of windows whose samples split (``split``), of
    samples choosing the truth (``truth``), and the mean pixel std (``pixel_std``)."""
    table = {}
    for group in GROUPS:
        v = [r for r in results if r.group == group]
        if v:
            table[group] = dict(
                n=len(v), true=float(np.mean([r.present for r in v])),
                chose=float(np.mean([r.chose_present / r.samples for r in v])),
                split=float(np.mean([0 < r.chose_present < r.samples for r in v])),
                truth=float(np.mean([(r.chose_present if r.present else r.samples - r.chose_present) / r.samples
                                     for r in v])),
                pixel_std=float(np.mean([r.pixel_std for r in v])))
    return table


def select_windows(episodes: Iterable[EpisodeData], cache: Mapping[str, np.ndarray], *, group: str,
                   present: Literal["yes", "no", "any"], stride: int, horizon: int, k: int,
                   n: int) -> list[dict[str, Any]]:
    """The first ``n`` windows of ``group`` (episodes in order, a window every ``stride`` steps, grouped as
    :func:`group_of` does from the :func:`load_replays` ``cache``), only from episodes with (``present="yes"``) or
    without (``"no"``) a pedestrian, or either (``"any"``).

    Each window is a dict: ``context`` ``uint8[k, H, W, 3]`` (the first frame repeated before the episode's start),
    ``actions`` ``float32[horizon, A]``, the real futures ``with_ped`` and ``without`` ``uint8[horizon, H, W, 3]``,
    the episode's ``seed`` and the start step ``t0`` (the context's last frame).
    """
    out: list[dict[str, Any]] = []
    for ep in episodes:
        key = f"seed{ep.seed}"
        real, flipped, has = cache[f"{key}_real"], cache[f"{key}_flipped"], bool(cache[f"{key}_present"])
        if present != "any" and has != (present == "yes"):
            continue
        n_common = min(len(real), len(flipped)) - 1
        for t0 in range(0, n_common - horizon + 1, stride):
            fut_r, fut_f = real[t0 + 1:t0 + 1 + horizon], flipped[t0 + 1:t0 + 1 + horizon]
            ctx_idx = np.maximum(np.arange(t0 - k + 1, t0 + 1), 0)
            if group_of(fut_r, fut_f, not differs(real[ctx_idx], flipped[ctx_idx]).any()) != group:
                continue
            out.append(dict(context=ep.frames[ctx_idx], actions=ep.actions[t0:t0 + horizon].astype(np.float32),
                            with_ped=fut_r if has else fut_f, without=fut_f if has else fut_r,
                            seed=ep.seed, t0=t0))
            if len(out) == n:
                return out
    return out


def compose(rows: Sequence[tuple[str, np.ndarray]], now: np.ndarray) -> np.ndarray:
    """One picture block, ``uint8[R * (H + GAP), (T + 1) * (W + GAP), 3]`` on white: each of the ``R`` rows
    ``(label, uint8[T, H, W, 3] future)`` is drawn as ``now`` (``uint8[H, W, 3]``) then its future, frames
    :data:`GAP` pixels apart. The labels are not drawn."""
    h, w = now.shape[:2]
    t = len(rows[0][1])
    block = np.full((len(rows) * (h + GAP), (t + 1) * (w + GAP), 3), 255, np.uint8)
    for r, (_, frames) in enumerate(rows):
        for c, f in enumerate([now, *frames]):
            block[r * (h + GAP):r * (h + GAP) + h, c * (w + GAP):c * (w + GAP) + w] = f
    return block


def parse_model(text: str) -> tuple[str, str, dict[str, Any]]:
    """``LABEL=DIR[:FIELD=VALUE,...]`` -> ``(label, dir, sampling overrides)``, the FIELDs being those of
    :data:`genex.world_model.cli.SAMPLING_ARGUMENTS` (``steps``, ``sigma_min``, ``sigma_max``, ``sampler``,
    ``snap``, ``min_changed_pixels``), each VALUE converted to its type.

    Raises :class:`argparse.ArgumentTypeError` on anything else, so it serves as an argparse ``type``.
    """
    from genex.world_model.cli import SAMPLING_ARGUMENTS

    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise argparse.ArgumentTypeError(f"--model {text!r}: expected LABEL=DIR or LABEL=DIR:FIELD=VALUE,...")
    path, _, opts = rest.partition(":")
    overrides = {}
    for item in filter(None, opts.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in SAMPLING_ARGUMENTS:
            raise argparse.ArgumentTypeError(f"--model {text!r}: {item!r} is not FIELD=VALUE with FIELD one of "
                                             f"{sorted(SAMPLING_ARGUMENTS)}")
        overrides[key] = SAMPLING_ARGUMENTS[key][0](value)
    return label, path, overrides
