"""Evaluating world models on held-out recorded episodes: the ``genex eval-world-model`` job
(:func:`evaluate_models`, its figures and tables, :func:`evaluate_cli`). Windows and their groups, the image
metrics and the outcome tests live in :mod:`genex.evaluation` (``windows``, ``metrics``, ``outcomes``).

Windows (:func:`~genex.evaluation.windows.make_windows`): in each episode, every ``stride`` steps ``t0`` (with
``t0 + T`` inside the episode), the context is ``frames[t0-K+1 .. t0]`` (reset frame repeated
before the start), the actions ``actions[t0 .. t0+T-1]`` and the truth
``frames[t0+1 .. t0+T]``.

Metrics, per horizon step ``h = 1..T`` and model:

* ``psnr``: PSNR in dB (identical frames capped at 60 dB), mean over windows
  and samples; ``ssim``: SSIM (Gaussian 11x11 window, sigma 1.5, per channel);
* ``diversity``: mean over pixels of the standard deviation across the ``S``
  samples (0..255 units), i.e. how much the imagined futures disagree. It is
  reported separately for *unresolved* windows (the scenario's hidden agent
  is not visible in any context frame of an episode where it appears later)
  and *resolved* windows (fully visible: it is in view, or the episode has no
  hidden agent and the window starts after the last step of the first half).
  Pixel diversity mostly measures motion: on the crosswalk it is as high far
  from the truck, where nothing hidden can show up within the horizon, as
  next to it (``experiments/stochasticity_by_distance/run.py``).
* ``outcome``, with a policy (``genex eval-world-model --policy DIR``): per
  window, the share ``p`` of the ``S`` samples in which the policy sees the
  hidden agent in some imagined frame, and the samples' *outcome disagreement*
  ``2 p (1 - p) S / (S - 1)``: the chance that two of them differ on whether
  the agent shows up (0 = all agree), next to how often the same policy sees
  it in the *real* future frames. It counts only the alternative that matters,
  but through the policy's eyes: its false alarms on real frames (the real
  share in windows where the agent never comes) bound what it can show.

The oracle needs the simulator: ``make_env(env_id, env_kwargs)`` rebuilds the
recorded env, which is replayed from ``reset(seed)`` with the recorded actions
and snapshotted at every window start.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..evaluation.metrics import mse, psnr, psnr_of_mse, ssim
from ..evaluation.outcomes import outcome_agreement
from ..evaluation.windows import Window, make_windows
from .data import MIN_CHANGED, EpisodeData, changed_fraction, require_action_labels

__all__ = ["load_episodes", "evaluate_models", "save_strip_figure", "click_transitions", "evaluate_cli",
           "format_table", "make_env"]

log = logging.getLogger(__name__)

def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def evaluate_models(models: Mapping[str, Any], windows: Sequence[Window], num_samples: int, seed: int = 0,
                    snapshots: Sequence[Any] | None = None, batch_size: int = 64, progress: bool = True,
                    model_actions: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per-horizon PSNR/SSIM (and diversity) of each model; returns ``(metrics, imagined)``.

    Models named ``"oracle"`` are called per window with ``snapshot=snapshots[i]``;
    the others through ``imagine_batch``, ``num_samples`` samples each unless the model
    says ``deterministic = True`` (copy-last, oracle: one sample), so several learned
    models can be scored on the same windows in one call. ``model_actions[name]`` replaces the windows' raw actions
    for that model (e.g. pre-encoded ``float32[N, T, A]``).
    ``imagined[name]`` is ``uint8[N, S, T, H, W, 3]``.
    """
    from tqdm.auto import tqdm

    truth = np.stack([w.truth for w in windows])  # [N,T,H,W,3]
    contexts = np.stack([w.context for w in windows])
    actions = [w.actions for w in windows]
    groups = np.array([w.group for w in windows])
    previous = np.concatenate([contexts[:, -1:], truth[:, :-1]], axis=1)
    static = (truth == previous).all((-3, -2, -1))  # [N,T]: nothing changed from the frame before
    metrics: dict[str, Any] = {"windows": len(windows), "horizon": int(truth.shape[1]), "models": {}}
    imagined: dict[str, np.ndarray] = {}
    for name, model in models.items():
        s = 1 if getattr(model, "deterministic", False) else num_samples
        acts_all = (model_actions or {}).get(name, actions)
        parts = []
        if name == "oracle":
            for i in tqdm(range(len(windows)), desc="oracle", disable=not progress):
                parts.append(model.imagine(contexts[i], acts_all[i], 1, snapshot=snapshots[i])[None])
        else:
            n = len(windows)
            for sl in tqdm(_chunks(n, max(1, batch_size // s)), desc=name, disable=not progress):
                ctx = np.repeat(contexts[sl], s, axis=0)
                acts = acts_all[sl]
                acts = np.repeat(acts, s, axis=0) if isinstance(acts, np.ndarray) else [a for a in acts for _ in range(s)]
                out = model.imagine_batch(ctx, acts, seed=seed + sl.start)
                parts.append(out.reshape(sl.stop - sl.start, s, *out.shape[1:]))
        pred = np.concatenate(parts)  # [N,S,T,H,W,3]
        imagined[name] = pred
        err = mse(pred, truth[:, None])  # [N,S,T]
        p = psnr_of_mse(err)
        q = ssim(pred, np.broadcast_to(truth[:, None], pred.shape))
        m = {"psnr": p.mean((0, 1)).tolist(), "ssim": q.mean((0, 1)).tolist(),
             "psnr_std_over_windows": p.mean(1).std(0).tolist(),
             # PSNR of the mean squared error over all windows: no 60 dB cap, so the exactly static frames that
             # copy-last reproduces (cap 60 dB each in "psnr") weigh by their error, not by the cap's choice
             "psnr_dataset": (10 * np.log10(255.0**2 / np.maximum(err.mean((0, 1)), 1e-10))).tolist()}
        for part, mask in (("moving", ~static), ("static", static)):  # [N,T]: is frame t a copy of frame t-1?
            m[f"psnr_{part}"] = [float(p[mask[:, t], :, t].mean()) if mask[:, t].any() else float("nan")
                                 for t in range(p.shape[2])]
            m[f"windows_{part}"] = mask.sum(0).tolist()
        if s > 1:
            div = pred.astype(np.float32).std(1).mean((-3, -2, -1))  # [N,T]
            m["diversity"] = div.mean(0).tolist()
            for g in ("unresolved", "resolved"):
                if (groups == g).any():
                    m[f"diversity_{g}"] = div[groups == g].mean(0).tolist()
                    m[f"windows_{g}"] = int((groups == g).sum())
        metrics["models"][name] = m
    return metrics, imagined


def save_strip_figure(path: str | Path, windows: Sequence[Window], imagined: Mapping[str, np.ndarray],
                      rows: int = 3, seed: int = 0) -> Path:
    """A PNG: for a few windows, the real future strip above each model's imagined strip (sample 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    pick = rng.choice(len(windows), size=min(rows, len(windows)), replace=False)
    names = ["real"] + list(imagined)
    t = windows[0].truth.shape[0]
    fig, axes = plt.subplots(len(pick) * len(names), 1, figsize=(1.2 * t, 1.3 * len(pick) * len(names)))
    axes = np.atleast_1d(axes)
    for r, i in enumerate(pick):
        for j, name in enumerate(names):
            strip = windows[i].truth if name == "real" else imagined[name][i, 0]
            ax = axes[r * len(names) + j]
            ax.imshow(np.concatenate(list(strip), axis=1))
            ax.set_yticks([])
            ax.set_xticks([])
            ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def click_transitions(model: Any, episodes: Sequence[EpisodeData], min_changed: float = MIN_CHANGED, seed: int = 0,
                      batch_size: int = 32) -> dict[str, Any]:
    """GUI check: after clicks that change the screen a lot (a tab or dialog opens), is the imagined next
    screen closer (PSNR) to the true next screen than to the current one?

    A click "opens something" when at least ``min_changed`` of the pixels change. Returns the fraction
    of such clicks where ``PSNR(imagined, next) > PSNR(imagined, current)`` and the mean PSNRs.
    """
    cfg = model.cfg
    ctxs, acts, cur, nxt, envs = [], [], [], [], []
    for ep in episodes:
        for t, a in enumerate(ep.raw_actions):
            if not isinstance(a, Mapping) or int(a.get("type", -1)) != 0:
                continue
            if changed_fraction(ep.frames[t], ep.frames[t + 1]) < min_changed:
                continue
            idx = np.maximum(np.arange(t - cfg.context + 1, t + 1), 0)
            ctxs.append(ep.frames[idx])
            acts.append(ep.actions[t:t + 1])
            cur.append(ep.frames[t])
            nxt.append(ep.frames[t + 1])
            envs.append(ep.env_id)
    if not ctxs:
        return {"clicks": 0}
    preds = []
    for sl in _chunks(len(ctxs), batch_size):
        preds.append(model.imagine_batch(np.stack(ctxs[sl]), np.stack(acts[sl]).astype(np.float32),
                                         seed=seed + sl.start)[:, 0])
    pred = np.concatenate(preds)
    to_next, to_cur = psnr(pred, np.stack(nxt)), psnr(pred, np.stack(cur))
    closer, env_ids = to_next > to_cur, np.array(envs)
    per_env = {e: {"clicks": int((env_ids == e).sum()), "closer_to_next": float(closer[env_ids == e].mean())}
               for e in dict.fromkeys(envs)}
    return {"clicks": len(ctxs), "min_changed": min_changed,
            "closer_to_next": float(closer.mean()), "per_env": per_env,
            "psnr_to_next": float(to_next.mean()), "psnr_to_current": float(to_cur.mean()),
            "copy_last_psnr_to_next": float(psnr(np.stack(cur), np.stack(nxt)).mean())}


def load_episodes(data_dirs: Sequence[str | Path], cfg: Any, max_episodes: int | None = None
                  ) -> tuple[list[EpisodeData], dict[str, list[str]], dict[str, Any]]:
    """Recorded episodes for evaluating a model with config ``cfg``: ``(episodes, facts, manifests)``.

    Actions are encoded with each recording's own action names; ``meta["_visible"]`` holds the visibility
    labels (``bool[T + 1, F]``) that :func:`make_windows` groups windows by. ``facts`` and ``manifests`` are
    per env id. At most ``max_episodes`` per folder; empty episodes are skipped; frames of another size than
    the model imagines raise ``ValueError``.
    """
    from ..recording import iter_episodes, read_manifest
    from .actions import encode_actions

    episodes: list[EpisodeData] = []
    facts: dict[str, list[str]] = {}
    manifests: dict[str, Any] = {}
    for d in data_dirs:
        m = read_manifest(d)
        manifests[m.env_id] = m
        facts[m.env_id] = list(m.facts)
        for i, ep in enumerate(iter_episodes(d)):
            if max_episodes is not None and i >= max_episodes:
                break
            if len(ep) == 0:
                continue
            if ep.frames.shape[1:3] != (cfg.height, cfg.width):
                raise ValueError(f"{d} holds {ep.frames.shape[1]}x{ep.frames.shape[2]} frames; the checkpoint "
                                 f"imagines {cfg.height}x{cfg.width}")
            require_action_labels(cfg, ep, d)
            meta = dict(ep.meta, _visible=ep.visible)
            episodes.append(EpisodeData(ep.frames, encode_actions(ep.actions, cfg, m.action_names), list(ep.actions),
                                        m.env_id, int(ep.meta.get("seed", -1)), meta))
    return episodes, facts, manifests


def evaluate_cli(args: Any) -> int:
    """``genex eval-world-model`` (see :mod:`.cli`). Without the oracle it needs no Gymnasium (``make_env`` imports
    it), so ``--no-oracle`` runs where only torch and diffusers are installed."""
    from .actions import encode_actions
    from .baselines import CopyLastFrameWorldModel, OracleWorldModel
    from .checkpoint import load_world_model

    model = load_world_model(args.checkpoint, device=args.device)
    flags = ("steps", "snap", "min_changed_pixels")
    model.sampler = model.sampler.overridden({k: getattr(args, k, None) for k in flags})
    cfg = model.cfg
    episodes, facts, manifests = load_episodes(args.data, cfg, args.max_episodes)
    windows = make_windows(episodes, cfg.context, args.horizon, args.stride, facts)
    if not windows:
        raise ValueError(f"no windows of {args.horizon} steps in the held-out episodes")
    # encode actions per window with its own env's action names
    names = {eid: m.action_names for eid, m in manifests.items()}
    enc = np.stack([encode_actions(w.actions, cfg, names[episodes[w.episode].env_id]) for w in windows])

    policy, prompts = None, {}
    if getattr(args, "policy", None):  # checked and loaded before the (long) evaluation, not after it
        if args.samples < 2:
            raise ValueError("--policy measures whether the samples agree: give --samples 2 or more")
        if not any(w.group for w in windows):
            raise ValueError("--policy reads the hidden agent of the driving scenes (HIDDEN_FACT), and none of "
                             "these windows has one")
        from ..policy import make_policy

        policy = make_policy("tiny", checkpoint=args.policy)
        for ep in episodes:  # the instruction the episode was recorded with, as the planners read it
            prompts.setdefault(ep.env_id, str(ep.meta.get("instruction", "")))
    models: dict[str, Any] = {"diffusion": model, "copy_last": CopyLastFrameWorldModel()}
    snapshots = None
    if not args.no_oracle:
        snapshots = _replay_snapshots(episodes, windows, manifests)
        oracles = {eid: OracleWorldModel(make_env(eid, m.env_kwargs)) for eid, m in manifests.items()}

        class _Oracle:
            """Dispatches each window to the oracle of its env (snapshots are ``(env_id, snapshot)``)."""

            context_is_state = False

            def imagine(self, ctx: Any, acts: Any, s: int, snapshot: Any = None) -> np.ndarray:
                return oracles[snapshot[0]].imagine(ctx, acts, s, snapshot=snapshot[1])

        models["oracle"] = _Oracle()
    metrics, imagined = evaluate_models(models, windows, args.samples, seed=args.seed, snapshots=snapshots,
                                        model_actions={"diffusion": enc})
    if policy is not None:
        metrics["outcome"] = outcome_agreement(imagined["diffusion"], windows,
                                               [episodes[w.episode].env_id for w in windows], policy, prompts)
        metrics["outcome"]["policy"] = str(args.policy)
    if cfg.action_family == "gui":
        metrics["gui_clicks"] = click_transitions(model, episodes, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics["checkpoint"] = str(args.checkpoint)
    metrics["data"] = [str(d) for d in args.data]
    metrics["samples"] = args.samples
    metrics["stride"] = args.stride
    metrics["sampling_steps"] = model.sampler.steps
    metrics["snap"] = model.sampler.snap
    metrics["min_changed_pixels"] = model.sampler.min_changed_pixels
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "horizon", "psnr", "ssim", "diversity"])
        for name, m in metrics["models"].items():
            for h in range(metrics["horizon"]):
                w.writerow([name, h + 1, f"{m['psnr'][h]:.3f}", f"{m['ssim'][h]:.4f}",
                            f"{m['diversity'][h]:.3f}" if "diversity" in m else ""])
    save_strip_figure(out / "strips.png", windows, imagined)
    print(format_table(metrics))
    if "gui_clicks" in metrics:
        print("clicks that open a tab/dialog:", json.dumps(metrics["gui_clicks"]))
    print(f"wrote {out / 'metrics.json'}, {out / 'metrics.csv'}, {out / 'strips.png'}")
    return 0


def format_table(metrics: Mapping[str, Any]) -> str:
    names = list(metrics["models"])
    lines = ["| h | " + " | ".join(f"{n} PSNR | {n} SSIM" for n in names) + " |",
             "|---|" + "---|---|" * len(names)]
    for h in range(metrics["horizon"]):
        cells = []
        for n in names:
            m = metrics["models"][n]
            cells += [f"{m['psnr'][h]:.2f}", f"{m['ssim'][h]:.3f}"]
        lines.append(f"| {h + 1} | " + " | ".join(cells) + " |")
    if all("psnr_dataset" in metrics["models"][n] for n in names):
        first = metrics["models"][names[0]]
        lines += ["", "| h | moving windows | " + " | ".join(f"{n} PSNR moving | {n} PSNR of mean MSE" for n in names) + " |",
                  "|---|---|" + "---|---|" * len(names)]
        for h in range(metrics["horizon"]):
            cells = [str(first["windows_moving"][h])]
            for n in names:
                m = metrics["models"][n]
                cells += [f"{m['psnr_moving'][h]:.2f}", f"{m['psnr_dataset'][h]:.2f}"]
            lines.append(f"| {h + 1} | " + " | ".join(cells) + " |")
    d = metrics["models"].get("diffusion", {})
    for g in ("diversity", "diversity_unresolved", "diversity_resolved"):
        if g in d:
            lines.append(f"{g} (per h): " + " ".join(f"{v:.2f}" for v in d[g]) +
                         (f"  [{d.get('windows_' + g.split('_')[-1], '')} windows]" if g != "diversity" else ""))
    o = metrics.get("outcome", {})
    for g in ("unresolved", "resolved"):
        if f"outcome_seen_{g}" in o:
            lines.append(f"outcome {g}: agent shown in {o[f'outcome_seen_{g}']:.3f} of samples (real futures "
                         f"{o[f'outcome_seen_real_{g}']:.3f}), samples disagree "
                         f"{o[f'outcome_disagreement_{g}']:.3f} (pairs), {o[f'outcome_split_{g}']:.3f} (windows)  "
                         f"[{o[f'windows_{g}']} windows]")
    return "\n".join(lines)


def make_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> Any:
    """Build a recorded env by id for the oracle. Only the evaluation command does this: the env
    package is imported lazily by name (``genex.envs``, then ``genex.envs.gui``), never at module import."""
    import importlib

    import gymnasium as gym

    importlib.import_module("genex.envs")  # registers the driving envs
    if env_id not in gym.registry:
        try:
            importlib.import_module("genex.envs.gui").register_gui_envs()
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot build {env_id!r} for the oracle ({e}); use --no-oracle") from e
    return gym.make(env_id, **dict(env_kwargs or {}))


def _replay_snapshots(episodes: Sequence[EpisodeData], windows: Sequence[Window],
                      manifests: Mapping[str, Any]) -> list[Any]:
    """Replay each episode from ``reset(seed)`` with its recorded actions; snapshot at each window start."""
    by_ep: dict[int, list[int]] = {}
    for j, w in enumerate(windows):
        by_ep.setdefault(w.episode, []).append(j)
    snaps: list[Any] = [None] * len(windows)
    envs: dict[str, Any] = {}
    mismatches = 0
    for i, js in by_ep.items():
        ep = episodes[i]
        if ep.env_id not in envs:
            envs[ep.env_id] = make_env(ep.env_id, manifests[ep.env_id].env_kwargs)
        env = envs[ep.env_id]
        obs, _ = env.reset(seed=ep.seed)
        starts = {windows[j].t0: j for j in js}
        for t, a in enumerate(ep.raw_actions):
            if t in starts:
                snaps[starts[t]] = (ep.env_id, env.unwrapped.snapshot())
                if not np.array_equal(obs["image"], ep.frames[t]):
                    mismatches += 1
            if t >= max(starts):
                break
            obs, *_ = env.step(a)
    if mismatches:
        log.warning("%d window starts replayed to frames that differ from the recording (non-deterministic env?)",
                    mismatches)
    for e in envs.values():
        e.close()
    return snaps
