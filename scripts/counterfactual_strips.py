"""Pictures for the counterfactual stochasticity test: crosswalk windows of one group, the two real futures
(with and without the pedestrian) and imagined samples of one or more world models, side by side.

The numbers come from ``scripts/stochasticity_counterfactual.py``; this draws what they count. Each window is a
block of rows: the real future with the pedestrian, the real future without it, then ``--samples`` imagined
futures per ``--model``; the first column is the last context frame ("now"), the others the horizon's steps.

    python scripts/counterfactual_strips.py --data data/wm/heldout/OccludedCrosswalk \\
        --replays .gpu/replays_heldout.npz --group uncertain --present yes --windows 3 --samples 2 \\
        --model shipped=checkpoints/world_model/driving \\
        --model "w, 8 steps=runs/s19/w/model:steps=8,min_changed_pixels=0" --out strips.png

A ``--model`` is ``LABEL=DIR`` or ``LABEL=DIR:FIELD=VALUE,...`` with sampling overrides (``steps``,
``sigma_min``, ``sigma_max``, ``sampler``, ``snap``, ``min_changed_pixels``). Without ``--replays`` (or when the
file does not exist yet) the episodes are replayed in MuJoCo (``MUJOCO_GL=egl``) and the file is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script holds the replay and the groups
from stochasticity_counterfactual import differs, group_of, load_replays  # noqa: E402

from genex.world_model.checkpoint import load_world_model  # noqa: E402
from genex.world_model.cli import SAMPLING_ARGUMENTS  # noqa: E402
from genex.world_model.evaluate import load_episodes  # noqa: E402

GAP = 2  # pixels between frames and between rows


def parse_model(text: str) -> tuple[str, str, dict]:
    """``LABEL=DIR[:FIELD=VALUE,...]`` -> ``(label, dir, sampling overrides)``."""
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


def select_windows(episodes, cache, *, group: str, present: str, stride: int, horizon: int, k: int, n: int):
    """The first ``n`` windows of ``group`` (episodes in order, a window every ``stride`` steps): dicts with the
    context ``uint8[K,H,W,3]``, actions ``float32[T, A]``, the futures with and without the pedestrian
    ``uint8[T,H,W,3]``, and the episode's seed and start step."""
    out = []
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


def compose(rows: list[tuple[str, np.ndarray]], now: np.ndarray) -> np.ndarray:
    """One block: each row is ``now`` then the ``uint8[T,H,W,3]`` future, frames ``GAP`` pixels apart."""
    h, w = now.shape[:2]
    t = len(rows[0][1])
    block = np.full((len(rows) * (h + GAP), (t + 1) * (w + GAP), 3), 255, np.uint8)
    for r, (_, frames) in enumerate(rows):
        for c, f in enumerate([now, *frames]):
            block[r * (h + GAP):r * (h + GAP) + h, c * (w + GAP):c * (w + GAP) + w] = f
    return block


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/wm/heldout/OccludedCrosswalk")
    ap.add_argument("--replays", default=None, help="cache of the replays (.npz), as in stochasticity_counterfactual")
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
