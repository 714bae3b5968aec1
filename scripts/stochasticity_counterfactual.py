"""Do a driving world model's S imagined futures differ where the crosswalk's outcome is uncertain, and agree
where it is visible? Measured against counterfactual replays, with no detector in the loop.

Issue 4's stochasticity clause. Pixel diversity mixes motion with the one alternative that matters, and a
policy used as a pedestrian detector has its own false alarms (``scripts/stochasticity_by_distance.py``).
This script needs neither. Each recorded crosswalk episode is replayed twice with its recorded actions: as
recorded, and with the pedestrian's presence flipped (removed where there was one, added where there was
none; everything else, the truck, the ball, the timing, stays). Every window (``K`` context frames, ``T``
future steps) then falls in one group:

* **uncertain**: the two replays' context frames are identical (no camera can tell the hypotheses apart)
  but their futures differ within the horizon (a pedestrian, if there is one, steps out);
* **visible**: the context frames already differ (the pedestrian or its feet are in view) and so do the
  futures: the outcome is determined by what the camera sees;
* **settled**: the futures are the same under both hypotheses (nothing hidden can show up within the
  horizon: too far from the crosswalk, or past it). These have no alternative to choose between.

Each imagined sample (the recorded actions, from the recorded context) is assigned to the hypothesis whose
real future it is nearer to (squared error over the pixels where the two real futures differ, at any step,
summed over the horizon). A window's samples *split* when both hypotheses get at least one sample. The clause
asks for splits in uncertain windows and none in visible ones; a calibrated model would also give
"pedestrian" about as often as pedestrians really come in uncertain windows (the ``true`` column).

Privileged (it flips hidden state in the simulator): an evaluation script, never used by a planner.

    MUJOCO_GL=egl python scripts/stochasticity_counterfactual.py --checkpoint checkpoints/world_model/driving \\
        --data data/wm/heldout/OccludedCrosswalk --samples 8 --stride 4
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from genex.world_model.checkpoint import load_world_model
from genex.world_model.cli import add_sampling_arguments, add_window_arguments, sampling_overrides
from genex.world_model.evaluate import load_episodes

#: a pixel differs between two frames when one of its channels differs by more than this (uint8 levels)
DIFF_LEVELS = 32
#: two replays' futures differ when at least this many pixels differ at some step (a far pedestrian is ~6)
MIN_PIXELS = 4


def replay(env, seed: int, actions: np.ndarray, flip: str | None) -> np.ndarray:
    """``uint8[T + 1, H, W, 3]``: the episode's frames, with agent ``flip``'s presence flipped at the start.

    Stops early if the flipped world ends the episode (the ego hits a pedestrian the recording never had).
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
    """``bool[..., H, W]``: pixels where two uint8 frames differ by more than ``DIFF_LEVELS`` in some channel."""
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)) > DIFF_LEVELS).any(-1)


def replay_pair(env, ep) -> dict[str, np.ndarray]:
    """The cache entries of one recorded episode: its replay as recorded, with the pedestrian flipped, and whether
    the recording has one (``seed{N}_real``, ``seed{N}_flipped``, ``seed{N}_present``)."""
    key = f"seed{ep.seed}"
    present = bool(env.reset(seed=ep.seed)[1]["hidden"]["pedestrian_crossing"])  # the episode's truth, unflipped
    real = replay(env, ep.seed, ep.raw_actions, None)
    flipped = replay(env, ep.seed, ep.raw_actions, "pedestrian")
    return {f"{key}_real": real, f"{key}_flipped": flipped, f"{key}_present": np.array(present)}


def settled(fut_r: np.ndarray, fut_f: np.ndarray) -> bool:
    """Whether two replays' ``uint8[T, H, W, 3]`` futures are the same (fewer than ``MIN_PIXELS`` differ at every
    step): nothing hidden shows up within the horizon, so there is no alternative to choose between."""
    return bool(differs(fut_r, fut_f).reshape(len(fut_r), -1).sum(1).max() < MIN_PIXELS)


def group_of(fut_r: np.ndarray, fut_f: np.ndarray, same_ctx: bool) -> str:
    """A window's group from its two replays' futures and whether their context frames are identical."""
    if settled(fut_r, fut_f):
        return "settled"
    return "uncertain" if same_ctx else "visible"


def load_replays(episodes, env_id: str, env_kwargs: dict, path: str | None) -> dict[str, np.ndarray]:
    """The :func:`replay_pair` entries of every episode: read from the ``.npz`` at ``path`` where it has them,
    the others replayed in MuJoCo (and the file written with them, when ``path`` is given)."""
    cache = dict(np.load(path)) if path and Path(path).exists() else {}
    missing = [ep for ep in episodes if f"seed{ep.seed}_real" not in cache]
    if missing:
        import gymnasium as gym

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
             present: bool) -> tuple[str, int]:
    """A window's group and how many of its ``float32[S, T, H, W, 3]`` samples are nearer the future with the
    pedestrian; ``fut_r``/``fut_f`` are the recorded and flipped replays' ``uint8[T, H, W, 3]`` futures."""
    group = group_of(fut_r, fut_f, same_ctx)
    if group == "settled":
        return group, 0
    mask = differs(fut_r, fut_f)  # [T,H,W]
    fut_p, fut_a = (fut_r, fut_f) if present else (fut_f, fut_r)
    sel = mask[None, :, :, :, None]
    d_p = (((samples - fut_p) ** 2) * sel).reshape(len(samples), -1).sum(1)
    d_a = (((samples - fut_a) ** 2) * sel).reshape(len(samples), -1).sum(1)
    # a tie (the sample is as far from both) counts as "none"
    return group, int((d_p < d_a).sum())


@dataclass
class WindowResult:
    group: str  # "uncertain", "visible" or "settled"
    present: bool  # the recorded episode has a pedestrian
    chose_present: int  # samples nearer to the pedestrian-present future
    samples: int
    pixel_std: float  # mean over pixels and horizon of the std across samples (0..255)


def summarize(results: list[WindowResult]) -> dict[str, dict[str, float]]:
    """Per group (in the order uncertain, visible, settled; empty groups left out): windows ``n``, the share with a
    pedestrian (``true``), of samples choosing one (``chose``), of windows whose samples split, of samples choosing
    the truth, and the mean pixel std."""
    table = {}
    for group in ("uncertain", "visible", "settled"):
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="checkpoints/world_model/driving")
    ap.add_argument("--data", default="data/wm/heldout/OccludedCrosswalk")
    add_window_arguments(ap, samples=8, stride=4)
    ap.add_argument("--threads", type=int, default=1)
    add_sampling_arguments(ap)
    ap.add_argument("--json", default=None, help="also write the per-group table here")
    ap.add_argument("--replays", default=None,
                    help="cache of the two replays per episode (.npz): read if it exists, else written; with it, "
                         "another checkpoint or sampler is measured without MuJoCo")
    ap.add_argument("--device", default="auto", help="where the world model runs: auto, cpu, cuda")
    ap.add_argument("--skip-settled", action="store_true",
                    help="imagine only windows with an alternative (uncertain, visible): ~3x faster, no settled row")
    args = ap.parse_args()
    if args.samples < 2:
        ap.error("--samples must be >= 2: a split needs two samples")
    torch.set_num_threads(args.threads)

    model = load_world_model(args.checkpoint, device=args.device)
    model.set_sampling(**sampling_overrides(args))
    cfg, s, horizon, k = model.cfg, args.samples, args.horizon, model.cfg.context
    episodes, _, manifests = load_episodes([args.data], cfg, args.max_episodes)
    (env_id, m), = manifests.items()
    if "OccludedCrosswalk" not in env_id:
        raise SystemExit(f"{args.data} holds {env_id}; this script flips the crosswalk's pedestrian")
    if args.replays and Path(args.replays).exists():
        seeds = set(np.load(args.replays).files)
        for ep in episodes:
            if f"seed{ep.seed}_real" not in seeds:
                raise SystemExit(f"{args.replays} has no replay of episode seed {ep.seed}; delete it to rebuild it")
    cache = load_replays(episodes, env_id, m.env_kwargs, args.replays)

    results: list[WindowResult] = []
    mismatched = 0
    for n, ep in enumerate(tqdm(episodes, desc="episodes")):
        key = f"seed{ep.seed}"
        real, flipped = cache[f"{key}_real"], cache[f"{key}_flipped"]
        present = bool(cache[f"{key}_present"])
        mismatched += int(not np.array_equal(real[:len(ep.frames)], ep.frames[:len(real)]))
        n_common = min(len(real), len(flipped)) - 1  # steps both replays reached
        starts = list(range(0, n_common - horizon + 1, args.stride))
        if args.skip_settled:
            starts = [t0 for t0 in starts
                      if not settled(real[t0 + 1:t0 + 1 + horizon], flipped[t0 + 1:t0 + 1 + horizon])]
        if not starts:
            continue
        ctx_idx = [np.maximum(np.arange(t0 - k + 1, t0 + 1), 0) for t0 in starts]
        contexts = np.stack([ep.frames[i] for i in ctx_idx])
        acts = np.stack([ep.actions[t0:t0 + horizon] for t0 in starts]).astype(np.float32)
        out = model.imagine_batch(np.repeat(contexts, s, 0), np.repeat(acts, s, 0), seed=args.seed + n)
        out = out.reshape(len(starts), s, horizon, *out.shape[2:])
        for j, t0 in enumerate(starts):
            samples = out[j].astype(np.float32)  # [S,T,H,W,3]
            fut_r, fut_f = real[t0 + 1:t0 + 1 + horizon], flipped[t0 + 1:t0 + 1 + horizon]
            same_ctx = not differs(real[ctx_idx[j]], flipped[ctx_idx[j]]).any()
            group, chose = classify(samples, fut_r, fut_f, same_ctx, present)
            results.append(WindowResult(group, present, chose, s, float(samples.std(0).mean())))

    print(f"{args.checkpoint} ({cfg.steps} {cfg.sampler} steps, sigma {cfg.sigma_max:g} -> {cfg.sigma_min:g}), "
          f"{args.data}: {len(episodes)} episodes, {len(results)} windows, {s} samples, horizon {horizon}")
    if mismatched:
        print(f"warning: {mismatched} episodes replayed to other frames than recorded (renderer changed?)")
    print("| windows | n | pedestrian really comes | samples choosing 'pedestrian' | windows whose samples split "
          "| samples choosing the truth | pixel std |")
    print("|---|---|---|---|---|---|---|")
    table = summarize(results)
    for group, row in table.items():
        cells = ["-"] * 3 if group == "settled" else [f"{row[c]:.2f}" for c in ("chose", "split", "truth")]
        print(f"| {group} | {row['n']} | {row['true']:.2f} | {' | '.join(cells)} | {row['pixel_std']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(checkpoint=args.checkpoint, sampling=cfg.to_dict(), data=args.data, samples=s,
                           horizon=horizon, stride=args.stride, groups=table), f, indent=2)


if __name__ == "__main__":
    main()
