"""Recordings whose frames a world model imagined: data for a policy that has to read imagination.

A planner's policy reads *imagined* frames, but is trained on real ones. Where the two differ in ways that do
not matter to the world (a faint band where a dialog was drawn, softened text) a small policy can fail on the
imagined frame although the model drew the right screen: a `tiny-gui` trained on real frames only read the real
MailCompose print dialog every time and the imagined one never (docs/world_model.md, attempt 8; docs/policy.md).

:func:`imagine_recording` copies a recording folder and replaces each frame ``t + 1`` by the model's one-step
imagination from the real frames up to ``t`` and the recorded action ``t``, the step a GUI planner imagines per
action choice. The labels stay those of the real frame, so they are right only where the model drew the real
outcome: where the imagined frame is further than ``min_psnr`` from the real one, the real frame stays (and is
counted). The test is on the whole frame, so it catches a wrong page or dialog, not a small object drawn
wrong: use it where outcomes are large (GUI screens), not where the fact is a few pixels (a far pedestrian),
or a policy would learn to see on imagined frames what the model did not draw.

A layout renderer (driving v2, ``layout_channels > 0``) draws each imagined frame around the *recorded* layout
of the real frame it replaces (``Episode.occupancy``, what a detector sees in it), never a sampled one: the
frame then shows the recorded outcome as the renderer draws it (a pedestrian who steps out as the faint stroke
it draws a chosen one with), so the real labels hold, and a policy trained on it learns to read the renderer's
drawing of a fact rather than the simulator's. ``unroll`` ``N > 1`` imagines each replaced frame ``N`` steps
ahead from real frames (the earlier ``N - 1`` imagined, then fed back as in a planner's rollout), so the copy
also holds what the renderer's own frames become after a few steps.

Output: a normal ``genex-episodes`` folder (``genex train-policy --data`` reads it as is). Its manifest's
``notes["imagined"]`` names the source, the world model and its weights' SHA-256, the settings and the counts;
each episode's ``meta["imagined"]`` is a ``bool[T + 1]`` list (frame 0 is always real). Episodes are written
one file at a time, atomically, and a re-run with the same settings skips those on disk.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from genex.evaluation.metrics import psnr

from ..io import atomic_write_bytes
from ..recording import (ManifestMismatchError, episode_path, episode_paths, iter_episodes,
                         read_manifest, save_episode)
from .actions import encode_actions
from .data import changed_fraction, layout_of, require_action_labels

__all__ = ["imagine_recording"]


def _contexts(frames: np.ndarray, k: int) -> np.ndarray:
    """``uint8[T, K, H, W, 3]``: the ``K`` real frames up to each step ``t`` (the first frame repeated before it)."""
    t = np.arange(len(frames) - 1)[:, None] + np.arange(-k + 1, 1)[None]
    return frames[np.maximum(t, 0)]


def _imagine_steps(model: Any, ep: Any, steps: np.ndarray, enc: np.ndarray, layout: np.ndarray | None, k: int,
                   unroll: int, seed: int, batch_size: int) -> np.ndarray:
    """``uint8[len(steps), H, W, 3]``: frame ``s + 1`` for each ``s`` in ``steps``, imagined ``n = min(unroll, s + 1)``
    steps ahead from the real frames up to ``s + 1 - n`` with the recorded actions (``enc`` ``float32[T, A]``) and,
    for a layout renderer, the recorded layouts (``layout`` ``bool[T + 1, F, gh, gw]``). Steps are batched by
    ``n``; the batch whose first row is the ``j``-th of ``steps`` uses seed ``seed + j`` (distinct per batch)."""
    out = np.zeros((len(steps),) + ep.frames.shape[1:], np.uint8)
    contexts = _contexts(ep.frames, k)  # [T, K, H, W, 3]
    depth = np.minimum(unroll, steps + 1)
    for n in np.unique(depth):
        rows = np.flatnonzero(depth == n)
        start = steps[rows] + 1 - n  # the first imagined step of each row
        seq = start[:, None] + np.arange(n)[None]  # [R, n] the steps imagined
        for j in range(0, len(rows), batch_size):
            sl = slice(j, j + batch_size)
            lay = None if layout is None else layout[seq[sl] + 1]  # frame t + 1's layout for step t
            frames = model.imagine_batch(contexts[start[sl]], enc[seq[sl]], seed=seed + int(rows[j]),
                                         **({} if lay is None else {"layouts": lay}))
            out[rows[sl]] = frames[:, -1]
    return out


def imagine_recording(model: Any, src: str | Path, out: str | Path, *, min_psnr: float = 20.0,
                      min_changed: float = 0.0, seed: int = 0, batch_size: int = 32, max_episodes: int | None = None,
                      world_model_path: str = "", progress: bool = True, unroll: int = 1) -> dict[str, Any]:
    """Write ``out``: the recording ``src`` with frames ``1..T`` imagined ``unroll`` steps ahead by ``model``.

    ``model`` is a :class:`~genex.world_model.model.DiffusionWorldModel` (it needs ``imagine_batch`` and
    ``cfg``). Only steps whose real frame changes at least ``min_changed`` of the pixels are imagined (a GUI
    video is mostly static, and a static frame imagined is the real one again), and a frame is replaced only
    where ``PSNR(imagined, real) >= min_psnr``; elsewhere the real frame stays. A layout renderer draws the
    recorded layouts (the module docstring; recordings without occupancy maps raise ``ValueError``). The batches
    of episode ``i`` use seeds from ``seed + 1000 i``, so a resumed run writes the same files. Returns the counts
    (also stored in the manifest's ``notes["imagined"]``).
    """
    if not isinstance(unroll, (int, np.integer)) or isinstance(unroll, bool) or unroll < 1:
        raise ValueError(f"unroll must be an integer >= 1 (steps imagined ahead), got {unroll!r}")
    if min_psnr < 0:
        raise ValueError(f"min_psnr must be >= 0 (dB), got {min_psnr}")
    if not 0 <= min_changed <= 1:
        raise ValueError(f"min_changed is a share of the pixels in [0, 1], got {min_changed}")
    src, out = Path(src), Path(out)
    cfg = model.cfg
    manifest = read_manifest(src)
    if tuple(manifest.image_shape[:2]) != (cfg.height, cfg.width):
        raise ValueError(f"{src} holds {manifest.image_shape[0]}x{manifest.image_shape[1]} frames; the world model "
                         f"imagines {cfg.height}x{cfg.width}")
    if out.resolve() == src.resolve():
        raise ValueError("--out must differ from --data: the real recording is the source")
    settings = {"source": str(src), "world_model": world_model_path,
                "world_model_sha256": getattr(model, "info", {}).get("sha256", ""), "min_psnr": float(min_psnr),
                "min_changed": float(min_changed), "seed": int(seed), "steps": model.sampler.steps,
                "snap": model.sampler.snap}
    if unroll != 1:  # left out at 1, so folders written before the option still resume
        settings["unroll"] = int(unroll)
    if cfg.layout_channels:
        settings["layouts"] = "recorded"
    notes = {**manifest.notes, "imagined": settings}
    new = replace(manifest, notes=notes, checksums={})
    path = out / "manifest.json"
    if path.exists():
        old = read_manifest(out)
        # every setting but the last run's counts: a folder written with --unroll 3 (or drawn around sampled
        # layouts, before layouts were recorded) must not be continued with other settings
        old_settings = {k: v for k, v in old.notes.get("imagined", {}).items() if k != "counts_last_run"}
        if old.identity() != new.identity() or old_settings != settings:
            raise ManifestMismatchError(f"{out} already holds imagined frames made with "
                                        f"{old_settings or 'no settings'}, not {settings}; choose another --out")
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(asdict(new), indent=2).encode())  # now, so a partial folder says what it is

    counts = {"episodes": 0, "frames": 0, "imagined": 0, "kept_real": 0, "unchanged": 0, "skipped_existing": 0}
    psnrs: list[np.ndarray] = []
    episodes = iter_episodes(src)
    total = len(episode_paths(src))
    total = total if max_episodes is None else min(total, max_episodes)
    for i, ep in enumerate(tqdm(episodes, desc=f"imagine {src.name}", total=total, disable=not progress)):
        if max_episodes is not None and i >= max_episodes:
            break
        target = episode_path(out, i)
        if target.exists():
            counts["skipped_existing"] += 1
            continue
        mask = np.zeros(len(ep.frames), bool)
        frames = np.array(ep.frames, copy=True)
        steps = np.flatnonzero(changed_fraction(ep.frames[:-1], ep.frames[1:]) >= min_changed)
        counts["frames"] += len(ep)
        counts["unchanged"] += len(ep) - len(steps)
        if len(steps):
            require_action_labels(cfg, ep, src)
            enc = encode_actions(ep.actions, cfg, manifest.action_names)  # float32[T, A]
            pred = _imagine_steps(model, ep, steps, enc, layout_of(cfg, ep, src), cfg.context, unroll,
                                  seed + 1000 * i, batch_size)
            score = psnr(pred, ep.frames[steps + 1])
            psnrs.append(score)
            good = score >= min_psnr
            mask[steps[good] + 1] = True
            frames[steps[good] + 1] = pred[good]
            counts["imagined"] += int(good.sum())
            counts["kept_real"] += int((~good).sum())
        save_episode(target, replace(ep, frames=frames, meta={**ep.meta, "imagined": mask.tolist()}))
        counts["episodes"] += 1
    if psnrs:
        all_psnr = np.concatenate(psnrs)
        counts["psnr_mean"] = float(all_psnr.mean())
        counts["psnr_below_min"] = float((all_psnr < min_psnr).mean())
    settings["counts_last_run"] = counts
    atomic_write_bytes(path, json.dumps(asdict(replace(new, notes={**notes, "imagined": settings})), indent=2).encode())
    return counts
