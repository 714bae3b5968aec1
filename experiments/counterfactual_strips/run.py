"""Experiment: pictures of the crosswalk windows the counterfactual stochasticity test counts.

Question: what do a world model's imagined samples draw in the windows that
    ``experiments/stochasticity_counterfactual`` counts (uncertain or visible), next to the two real futures, with
    and without the pedestrian?
Status: done 2026-11-27 (two pictures in docs/images, described in docs/world_model.md), not shipped.
Result: ``docs/images/change_weight_visible_pedestrian.png``: without a change weight the visible pedestrian stands
    still or fades; with ``--change-weight`` 3 or 10 pixels of its colour move along its path as a smear while the
    frame degrades within 3-5 steps. ``docs/images/gpu_sweep_uncertain_windows.png``: in two uncertain held-out
    windows the shipped and ``w`` samples leave a visible oncoming car in place and let it fade, and ``fwcw`` at 16
    steps dissolves into noise from step 3-4 on.
Command:
    python experiments/counterfactual_strips/run.py --data data/wm/heldout/OccludedCrosswalk \\
        --replays .gpu/replays_heldout.npz --group uncertain --present yes --windows 3 --samples 2 \\
        --model shipped=checkpoints/world_model/driving \\
        --model "w, 8 steps=runs/s19/w/model:steps=8,min_changed_pixels=0" --out strips.png

Each window is a block of rows: the real future with the pedestrian, the real future without it, then ``--samples``
imagined futures per ``--model``; the first column is the last context frame ("now"), the others the horizon's
steps. The windows, their groups and the blocks come from :mod:`genex.evaluation.counterfactual`.

A ``--model`` is ``LABEL=DIR`` or ``LABEL=DIR:FIELD=VALUE,...`` with sampling overrides (``steps``,
``sigma_min``, ``sigma_max``, ``sampler``, ``snap``, ``min_changed_pixels``). Without ``--replays`` (or when the
file does not exist yet) the episodes are replayed in MuJoCo (``MUJOCO_GL=egl``) and the file is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from genex.evaluation.counterfactual import GAP, compose, load_replays, parse_model, select_windows
from genex.world_model.checkpoint import load_world_model
from genex.world_model.evaluate import load_episodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/wm/heldout/OccludedCrosswalk")
    ap.add_argument("--replays", default=None,
                    help="cache of the replays (.npz), as in experiments/stochasticity_counterfactual")
    ap.add_argument("--model", action="append", type=parse_model, required=True, dest="models",
                    help="LABEL=DIR[:FIELD=VALUE,...] (repeatable)")
    ap.add_argument("--group", choices=("uncertain", "visible"), default="uncertain")
    ap.add_argument("--present", choices=("yes", "no", "any"), default="any",
                    help="only episodes with (yes) or without (no) a pedestrian")
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--samples", type=int, default=2, help="imagined futures drawn per model and window")
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--max-episodes", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="PNG to write")
    args = ap.parse_args()
    if args.windows < 1 or args.samples < 1:
        ap.error("--windows and --samples must be >= 1")
    torch.set_num_threads(args.threads)
    models = []
    for label, path, overrides in args.models:
        m = load_world_model(path, device="cpu")
        m.set_sampling(**overrides)
        models.append((label, m))
    k = models[0][1].cfg.context
    if any(m.cfg.context != k for _, m in models):
        raise SystemExit("the --model checkpoints differ in context length; draw them in separate pictures")
    episodes, _, manifests = load_episodes([args.data], models[0][1].cfg, args.max_episodes)
    (env_id, manifest), = manifests.items()
    if "OccludedCrosswalk" not in env_id:
        raise SystemExit(f"{args.data} holds {env_id}; the counterfactual flips the crosswalk's pedestrian")
    cache = load_replays(episodes, env_id, manifest.env_kwargs, args.replays)

    wins = select_windows(episodes, cache, group=args.group, present=args.present, stride=args.stride,
                          horizon=args.horizon, k=k, n=args.windows)
    if not wins:
        raise SystemExit(f"no {args.group} window in {args.data} (--present {args.present})")
    blocks, labels = [], []
    for i, w in enumerate(wins):
        rows = [("real: pedestrian", w["with_ped"]), ("real: none", w["without"])]
        for label, m in models:
            s = args.samples
            out = m.imagine_batch(np.repeat(w["context"][None], s, 0), np.repeat(w["actions"][None], s, 0),
                                  seed=args.seed + i)
            rows += [(f"{label} #{j + 1}", out[j]) for j in range(s)]
        blocks.append(compose(rows, w["context"][-1]))
        labels.append((f"seed {w['seed']}, step {w['t0']}", [r[0] for r in rows]))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = blocks[0].shape[0]
    fig, axes = plt.subplots(len(blocks), 1, figsize=(blocks[0].shape[1] / 40, len(blocks) * h / 40 + 0.4),
                             squeeze=False)
    frame = wins[0]["context"].shape[1] + GAP
    for ax, block, (title, row_labels) in zip(axes[:, 0], blocks, labels):
        ax.imshow(block, interpolation="nearest")
        ax.set_title(f"{args.group} window, {title} (first column: now)", fontsize=8, loc="left")
        ax.set_yticks([r * frame + frame / 2 for r in range(len(row_labels))], row_labels, fontsize=7)
        ax.set_xticks([c * (wins[0]["context"].shape[2] + GAP) + wins[0]["context"].shape[2] / 2 for c in range(args.horizon + 1)],
                      ["now"] + [f"+{t + 1}" for t in range(args.horizon)], fontsize=7)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100, bbox_inches="tight")
    print(f"wrote {args.out}: {len(blocks)} {args.group} windows, {len(models)} models x {args.samples} samples")


if __name__ == "__main__":
    main()
