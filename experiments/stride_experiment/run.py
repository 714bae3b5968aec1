"""Experiment: does a driving world model that predicts ``s`` env steps at once draw the pedestrian?

Question: a next-frame model (0.25 s ahead) sees a pedestrian move 1-3 pixels a step and copies it where it was.
    Does a model that jumps ``s`` steps (every ``s``-th frame as context, the mean of the ``s`` encoded actions as
    its action) see enough motion to draw it? And, as the fitting probe (``train --stride 1 --max-episodes 12``),
    can the network draw it even on a few episodes it was fitted to?
Status: done 2026-11-27, not shipped; result in docs/world_model.md ("A model that jumps 4 steps per prediction
    does not draw the pedestrian either" and "Not even on its own training windows: fitting probes").
Result: after 600, 1200 and 2400 steps with 4-step jumps, held out (19 uncertain, 31 visible windows), no sample
    chose or split on the pedestrian (0.00 / 0.00 in both groups, as for the shipped model). Fitted to 12 episodes,
    the networks change the walking pedestrian's pixels at up to half strength (20-65 of ~105 uint8 levels; shipped
    9-26), but at most 0.08 of the visible windows' samples continue it in a rollout; only with ``--change-weight 3``
    did 0.29, as a smear that does not carry over to held-out episodes.
Command:
    python experiments/stride_experiment/run.py train --stride 4 --steps 2400 --out runs/stride/s4
    MUJOCO_GL=egl python experiments/stride_experiment/run.py eval --checkpoint runs/stride/s4 --stride 4 \\
        --replays runs/stride/replays_heldout.npz

The shipped model predicts the next frame (0.25 s ahead). There a pedestrian moves 1-3 pixels and one who
steps out from behind the truck shows a sliver of 1-2 pixels: a tiny share of the loss, and the model copies
the pedestrian where it was. A model that jumps ``s`` steps sees ``s`` times the motion and ``s`` times the chance
of a step-out per prediction, and rolls out ``s`` times fewer network calls.

``eval`` uses the counterfactual replays and groups of :mod:`genex.evaluation.counterfactual` (as
``experiments/stochasticity_counterfactual`` does), on the frames every ``s`` steps: the shipped model rolls out
frame by frame and is read at the same frames.

``train --stride 1 --max-episodes 12`` is the *fitting probe*: a network fitted to a few episodes, then measured
on them with ``experiments/stochasticity_counterfactual/run.py --max-episodes 12``. Results of both experiments:
``docs/world_model.md`` (all negative: neither draws the walking pedestrian in a rollout).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers.training_utils import EMAModel

from genex.evaluation.counterfactual import WindowResult, classify, differs, load_replays, summarize
from genex.world_model.checkpoint import load_denoiser, load_world_model, save_world_model
from genex.world_model.cli import add_sampling_arguments, sampling_overrides
from genex.world_model.data import WindowDataset, load_recordings, split_episodes
from genex.world_model.denoiser import to_uint8
from genex.world_model.evaluate import load_episodes
from genex.world_model.sampler import sample_next_frame

DRIVING = [f"data/wm/train/{e}" for e in ("OccludedCrosswalk", "StoppedLeadCar", "OccludedLeftTurn")]


def train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    den, _ = load_denoiser(args.init)
    if args.scratch:
        from genex.world_model.denoiser import Denoiser
        arch = {k: v for k, v in (("channels", args.channels), ("patch", args.patch)) if v is not None}
        den = Denoiser(den.cfg.replace(**arch))
    elif args.channels or args.patch:
        raise SystemExit("--channels/--patch change the network: they need --scratch")
    training = {k: v for k, v in (("p_mean", args.p_mean), ("p_std", args.p_std), ("change_weight", args.change_weight))
                if v is not None}
    if training:  # training-only fields: the network is unchanged
        den.cfg = den.cfg.replace(**training)
    eps = load_recordings(args.data, den.cfg, limit=args.max_episodes)
    tr, _ = split_episodes(eps) if args.max_episodes is None else (eps, [])  # a capacity probe fits all it gets
    data = WindowDataset(tr, den.cfg.context, stride=args.stride)
    print(f"{len(data)} strided windows (stride {args.stride})", flush=True)
    den.train()
    opt = torch.optim.AdamW(den.parameters(), lr=args.lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 100))
    ema = EMAModel(den.parameters(), decay=0.999)
    rng, t0 = np.random.default_rng(args.seed), time.time()
    out = Path(args.out)
    for step in range(1, args.steps + 1):
        loss, _ = den(data.get(rng.integers(0, len(data), size=args.batch_size)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(den.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.step(den.parameters())
        if step % 100 == 0:
            print(f"step {step} loss {float(loss.detach()):.4f} {time.time() - t0:.0f}s", flush=True)
        if step % 600 == 0 or step == args.steps:
            live = [p.detach().clone() for p in den.parameters()]
            ema.copy_to(den.parameters())
            save_world_model(den, out, extra=dict(stride=args.stride, steps=step, command=" ".join(sys.argv),
                                                 train_seconds=round(time.time() - t0)))
            for p, v in zip(den.parameters(), live):
                p.data.copy_(v)


@torch.no_grad()
def rollout_strided(model, contexts: np.ndarray, actions: np.ndarray, gen) -> np.ndarray:
    """``uint8[B,K,H,W,3]`` strided contexts, ``float[B,J,A]`` mean actions -> ``uint8[B,J,H,W,3]``."""
    den = model.denoiser
    ctx = den.stack_context(torch.from_numpy(contexts))
    acts = torch.from_numpy(actions)
    out = []
    for j in range(acts.shape[1]):
        frame = to_uint8(sample_next_frame(den, ctx, acts[:, j], generator=gen))
        out.append(frame)
        ctx = torch.cat([ctx[:, 3:], frame.movedim(-1, -3).float().div(127.5).sub(1.0)], 1)
    return torch.stack(out, 1).numpy()


def evaluate(args) -> None:
    torch.set_num_threads(args.threads)
    s, jumps, n_samples = args.stride, args.jumps, args.samples
    horizon = s * jumps
    models = {} if args.no_baseline else {"shipped (1 step)": (load_world_model(args.baseline, device="cpu"), 1)}
    if args.checkpoint:
        models[f"{args.checkpoint} ({s} steps)"] = (load_world_model(args.checkpoint, device="cpu"), s)
    if not models:
        raise SystemExit("nothing to measure: give --checkpoint, or drop --no-baseline")
    for m, _ in models.values():
        m.set_sampling(**sampling_overrides(args))
    cfg = next(iter(models.values()))[0].cfg
    k = cfg.context
    episodes, _, manifests = load_episodes([args.data], cfg, args.max_episodes)
    (env_id, man), = manifests.items()
    cache = load_replays(episodes, env_id, man.env_kwargs, args.replays)
    rows: dict[str, list] = {name: [] for name in models}
    for n, ep in enumerate(episodes):
        key = f"seed{ep.seed}"
        real, flipped, present = cache[f"{key}_real"], cache[f"{key}_flipped"], bool(cache[f"{key}_present"])
        n_common = min(len(real), len(flipped)) - 1
        starts = list(range((k - 1) * s, n_common - horizon + 1, args.window_stride))
        if not starts:
            continue
        keys = [np.arange(t0 + s, t0 + horizon + 1, s) for t0 in starts]  # frames compared: every s steps
        for name, (model, ms) in models.items():
            if ms == 1:
                ctx = np.stack([ep.frames[np.maximum(np.arange(t0 - k + 1, t0 + 1), 0)] for t0 in starts])
                acts = np.stack([ep.actions[t0:t0 + horizon] for t0 in starts]).astype(np.float32)
                out = model.imagine_batch(np.repeat(ctx, n_samples, 0), np.repeat(acts, n_samples, 0),
                                          seed=args.seed + n)[:, s - 1::s]
            else:
                ctx = np.stack([ep.frames[np.arange(t0 - (k - 1) * s, t0 + 1, s)] for t0 in starts])
                acts = np.stack([ep.actions[t0:t0 + horizon].reshape(jumps, s, -1).mean(1) for t0 in starts])
                out = rollout_strided(model, np.repeat(ctx, n_samples, 0),
                                      np.repeat(acts.astype(np.float32), n_samples, 0),
                                      torch.Generator().manual_seed(args.seed + n))
            out = out.reshape(len(starts), n_samples, jumps, *out.shape[2:]).astype(np.float32)
            for j, t0 in enumerate(starts):
                ctx_frames = np.arange(t0 - (k - 1) * s, t0 + 1)  # everything either model could have seen
                same_ctx = not differs(real[ctx_frames], flipped[ctx_frames]).any()
                group, chose = classify(out[j], real[keys[j]], flipped[keys[j]], same_ctx, present)
                rows[name].append(WindowResult(group, present, chose, n_samples, float(out[j].std(0).mean())))
        print(f"episode {n + 1}/{len(episodes)}", flush=True)
    print(f"{args.data}: windows every {args.window_stride} steps, compared at steps {s}..{horizon} every {s}, "
          f"{n_samples} samples")
    print("| model | windows | n | pedestrian really comes | samples choosing 'pedestrian' | split | chose truth |")
    print("|---|---|---|---|---|---|---|")
    table = {}
    for name, rs in rows.items():
        for group, row in summarize(rs).items():
            if group == "settled":  # no alternative to choose between
                continue
            table[f"{name}/{group}"] = row
            print(f"| {name} | {group} | {row['n']} | {row['true']:.2f} | {row['chose']:.2f} | {row['split']:.2f} "
                  f"| {row['truth']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--init", default="checkpoints/world_model/driving", help="weights (and config) to start from")
    t.add_argument("--scratch", action="store_true", help="only take the config from --init")
    t.add_argument("--channels", type=lambda v: tuple(int(c) for c in v.split(",")), default=None,
                   help="with --scratch: UNet widths, e.g. 64,128,128")
    t.add_argument("--patch", type=int, default=None, help="with --scratch: pixel-unshuffle factor (1: full resolution)")
    t.add_argument("--data", nargs="+", default=DRIVING)
    t.add_argument("--stride", type=int, default=4, help="1: the shipped next-frame windows")
    t.add_argument("--max-episodes", type=int, default=None,
                   help="train on only the first N episodes of each folder, all of them (a capacity probe)")
    t.add_argument("--steps", type=int, default=2400)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--p-mean", type=float, default=None)
    t.add_argument("--p-std", type=float, default=None)
    t.add_argument("--change-weight", type=float, default=None, help="see WorldModelConfig.change_weight")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True)
    e = sub.add_parser("eval")
    e.add_argument("--checkpoint", default=None, help="a strided model (omit: only the shipped one)")
    e.add_argument("--baseline", default="checkpoints/world_model/driving")
    e.add_argument("--no-baseline", action="store_true", help="only measure --checkpoint")
    e.add_argument("--data", default="data/wm/heldout/OccludedCrosswalk")
    e.add_argument("--stride", type=int, default=4)
    e.add_argument("--jumps", type=int, default=2, help="strided predictions per window (horizon = stride x jumps)")
    e.add_argument("--window-stride", type=int, default=4)
    e.add_argument("--samples", type=int, default=8)
    e.add_argument("--max-episodes", type=int, default=None)
    add_sampling_arguments(e)
    e.add_argument("--replays", default=None)
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.cmd == "train":
        train(args)
    else:
        evaluate(args)


if __name__ == "__main__":
    main()
