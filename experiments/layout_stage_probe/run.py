"""Experiment: is the layout stage calibrated on real crosswalk windows?

Question: fitted on recorded OccludedCrosswalk episodes (their occupancy maps), does the stochastic layout stage
    of the driving model v2 (genex.world_model.layout) give a calibrated P(a pedestrian shows within h steps) on
    held-out windows (issue 28 asks ECE <= 0.05), and do its samples draw the pedestrian at the rate it really
    comes, in windows where none is in view yet?
Status: first probe (2026-12-07), small data on 2 shared CPU cores; see docs/world_model.md ("Driving model v2").
Result: 400 training episodes (14,909 windows), 3,000 steps; 3,576 held-out windows: P(pedestrian within 4 / 8
    steps) has ECE 0.015 / 0.013 (base rates 0.135 / 0.154, mean P 0.130 / 0.152); where no pedestrian is in the
    context the samples draw one in 0.072 / 0.098 of futures (true 0.041 / 0.063), where one is in view they
    keep it in 0.55 / 0.56 (true 0.81). Held-out NLL 12.4 nats per window (train 9.7).
    Stages of `genex train-layout` on the same data (3,000 steps, --model): persistent presence alone, ECE 0.015 /
    0.015, no pedestrian in context 0.100 (true 0.063), in view 0.52; persistent + --seen-weight 1 (the defaults
    now), ECE 0.017 / 0.018, 0.092 and 0.60. With colours (``--colour-facts pedestrian,ball,oncoming_car``, data
    recorded with ``info["appearance"]``, 2026-12-08): seed 0 ECE 0.010 / 0.014, 0.086 and 0.69, NLL 12.11
    (12.54), but seed 1 ECE 0.018 / 0.019, 0.091 and 0.56, NLL 14.19: the seed-to-seed spread exceeds the gain;
    the sampled shirt is the true palette entry in 0.16 / 0.14 of samples where the pedestrian is in view
    (commonest 0.24).
Command:
    MUJOCO_GL=egl python experiments/layout_stage_probe/run.py --train-episodes 300 --heldout-episodes 100 \\
        --steps 2000 --out runs/layout_probe
    # a stage trained by `genex train-layout` (driving model v2), on the same held-out windows:
    MUJOCO_GL=egl python experiments/layout_stage_probe/run.py --train-episodes 400 --heldout-episodes 150 \\
        --model runs/wm_v2/model --out runs/layout_probe2

Records (resumably, with ``genex.recording.record_episodes``) ``--train-episodes`` episodes from seed 0 and
``--heldout-episodes`` from seed 150000 with the ``mixed`` driver into ``OUT/data``, fits a layout stage on every
window of the training episodes, and measures on the held-out windows: the mean negative log-likelihood, the ECE
and a reliability table of P(pedestrian within h) for h = 4 and the stage's horizon, and, in the windows with no
pedestrian in view in the context, the share of samples that draw one against the share of windows where one
really shows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from genex.io import atomic_write_bytes
from genex.recording import iter_episodes, read_manifest, record_episodes
from genex.world_model.layout import (LayoutConfig, LayoutModel, fit_layout, layout_windows, load_layout,
                                     save_layout, window_colours)

ENV = "genex/OccludedCrosswalk-v0"


def windows(folder: Path, context: int, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All windows of a recording folder, and per window whether a pedestrian is in view in its context."""
    facts = read_manifest(folder).facts
    ped = facts.index("pedestrian")
    out: list[list[np.ndarray]] = [[], [], [], []]
    for ep in iter_episodes(folder):
        if ep.occupancy is None:
            raise SystemExit(f"{folder} has no occupancy maps: record it again with this genex")
        ctx, act, lay = layout_windows(ep.occupancy, ep.frames, ep.discrete_actions, context, horizon)
        seen = np.stack([ep.visible[s:s + context, ped].any() for s in range(len(ctx))]) if len(ctx) else \
            np.zeros(0, bool)
        for lst, arr in zip(out, (ctx, act, lay, seen)):
            lst.append(arr)
    return tuple(np.concatenate(x) for x in out)  # type: ignore[return-value]


def colour_agreement(model: LayoutModel, folder: Path, hf: np.ndarray, ha: np.ndarray, seen: np.ndarray) -> dict:
    """A stage with the pedestrian among its ``colour_facts``: in the held-out windows where a pedestrian shows
    within the horizon, the share of samples drawing one whose colour is the palette entry of its true colour,
    where one is in view in the context (the stage has to see the shirt) and where none is (the prior)."""
    cfg = model.cfg
    j = cfg.colour_facts.index(cfg.facts.index("pedestrian"))
    codes = np.concatenate([window_colours(ep.appearance, ep.occupancy, len(ep.discrete_actions), cfg.context,
                                           cfg.horizon, cfg.colour_facts, cfg.palettes)[:, j]
                            for ep in iter_episodes(folder)])
    palette = np.asarray(cfg.palettes[j])
    shows = codes >= 0
    agree, drawn = np.zeros(len(codes)), np.zeros(len(codes))
    with torch.no_grad():
        for i in range(0, len(hf), 256):
            _, col = model.sample(torch.from_numpy(hf[i:i + 256]), torch.from_numpy(ha[i:i + 256]), 8,
                                  generator=torch.Generator().manual_seed(i), return_colours=True)
            c = col[:, :, cfg.colour_facts[j]].numpy()  # [8, n, 3]
            has = c.max(-1) > 0
            true = palette[codes[i:i + 256].clip(0)]
            agree[i:i + 256] = ((c == true[None]).all(-1) & has).sum(0)
            drawn[i:i + 256] = has.sum(0)
    share = lambda m: float(agree[m].sum() / drawn[m].sum()) if drawn[m].sum() else None  # noqa: E731
    counts = np.bincount(codes[shows], minlength=len(palette))
    return {"seen": share(shows & seen), "unseen": share(shows & ~seen),
            "majority": float(counts.max() / counts.sum()) if counts.sum() else None}


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def event_calibration(p: np.ndarray, truth: np.ndarray, n_bins: int = 10) -> tuple[float, list[dict]]:
    """ECE of a binary event's probability (the positive class, equal-width bins) and its reliability rows.

    Not the top-answer ECE of :func:`genex.belief.expected_calibration_error`: for a yes/no event that one pools a
    window at P = 0.25 with one at P = 0.75 (both confidence 0.75) and lets their errors cancel."""
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    rows, ece = [], 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            rows.append({"p": float(p[sel].mean()), "true": float(truth[sel].mean()), "count": int(sel.sum())})
            ece += sel.mean() * abs(p[sel].mean() - truth[sel].mean())
    return float(ece), rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-episodes", type=int, default=300)
    ap.add_argument("--heldout-episodes", type=int, default=100)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--components", type=int, default=8)
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/layout_probe")
    ap.add_argument("--model", default=None,
                    help="evaluate the layout stage in this checkpoint folder (e.g. from `genex train-layout`) instead "
                         "of fitting one; results go to OUT/result_<folder name>.json and .png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    train_dir, held_dir = out / "data" / "train", out / "data" / "heldout"
    record_episodes(ENV, train_dir, args.train_episodes, driver="mixed", seed=0)
    record_episodes(ENV, held_dir, args.heldout_episodes, driver="mixed", seed=150_000)
    manifest = read_manifest(train_dir)
    if args.model is None:
        f, a, y, _ = windows(train_dir, 4, args.horizon)
        cfg = LayoutConfig(facts=tuple(manifest.facts), n_actions=len(manifest.action_names), grid=y.shape[-2:],
                           context=4, horizon=args.horizon, components=args.components, image_size=f.shape[2:4])
        print(f"{len(f)} training windows; fitting {args.steps} steps", flush=True)
        torch.manual_seed(args.seed)
        model = LayoutModel(cfg)
        losses = fit_layout(model, f, a, y, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        save_layout(model, out / "model")
        result: dict = {"train_windows": int(len(f)), "steps": args.steps,
                        "final_train_nll": float(np.mean(losses[-100:])), "config": cfg.to_dict()}
        name = "result"
    else:
        model = load_layout(args.model, facts=tuple(manifest.facts), n_actions=len(manifest.action_names))
        cfg = model.cfg
        result = {"model": str(args.model), "config": cfg.to_dict()}
        name = f"result_{Path(args.model).name}"
    hf, ha, hy, seen = windows(held_dir, cfg.context, cfg.horizon)
    ped = cfg.facts.index("pedestrian")
    result["heldout_windows"] = int(len(hf))
    with torch.no_grad():
        tf, ta, ty = torch.from_numpy(hf), torch.from_numpy(ha), torch.from_numpy(hy)
        result["heldout_nll"] = float(-torch.cat([model.log_likelihood(tf[i:i + 256], ta[i:i + 256], ty[i:i + 256])
                                                  for i in range(0, len(tf), 256)]).mean())
        for h in sorted({4, cfg.horizon}):
            p = torch.cat([model.prob_visible_within(tf[i:i + 256], ta[i:i + 256], "pedestrian", h)
                           for i in range(0, len(tf), 256)]).numpy()
            truth = hy[:, :h, ped].reshape(len(hy), -1).any(-1)
            ece, rows = event_calibration(p, truth)
            unseen = ~seen
            draws = torch.cat([model.sample(tf[i:i + 256], ta[i:i + 256], 8, generator=torch.Generator().manual_seed(i))
                               for i in range(0, len(tf), 256)], 1)  # [8, N, horizon, F, gh, gw]
            drawn = draws[:, :, :h, ped].flatten(2).any(-1).float().mean(0).numpy()
            result[f"within_{h}"] = {
                "ece": ece, "base_rate": float(truth.mean()), "mean_p": float(p.mean()), "reliability": rows,
                "unseen_windows": int(unseen.sum()),
                "unseen_true_rate": float(truth[unseen].mean()) if unseen.any() else None,
                "unseen_sampled_rate": float(drawn[unseen].mean()) if unseen.any() else None,
                "seen_true_rate": float(truth[seen].mean()) if seen.any() else None,
                "seen_sampled_rate": float(drawn[seen].mean()) if seen.any() else None,
                # the stage's own recall and false alarm (fidelity.json's events, before a renderer or a policy):
                # where no pedestrian is in view, the share of samples drawing one where one comes / does not
                "unseen_sampled_when_comes": _mean(drawn[unseen & truth]),
                "unseen_sampled_when_not": _mean(drawn[unseen & ~truth]),
                "unseen_p_when_comes": _mean(p[unseen & truth]),
                "unseen_p_when_not": _mean(p[unseen & ~truth]),
            }
            r = result[f"within_{h}"]
            print(f"pedestrian within {h}: ECE {r['ece']:.3f}, base rate {r['base_rate']:.3f}, mean P {r['mean_p']:.3f}; "
                  f"no pedestrian in the context ({r['unseen_windows']} windows): true {r['unseen_true_rate']:.3f}, "
                  f"sampled {r['unseen_sampled_rate']:.3f}; in view: true {r['seen_true_rate']}, "
                  f"sampled {r['seen_sampled_rate']}; no pedestrian in the context, sampled where one comes "
                  f"{_fmt(r['unseen_sampled_when_comes'])} / where none does {_fmt(r['unseen_sampled_when_not'])} "
                  f"(mean P {_fmt(r['unseen_p_when_comes'])} / {_fmt(r['unseen_p_when_not'])})", flush=True)
    if cfg.colour_facts and ped in cfg.colour_facts:
        result["colour"] = colour_agreement(model, held_dir, hf, ha, seen)
        c = result["colour"]
        print(f"sampled pedestrians in the true colour (palette entry; windows where one shows within "
              f"{cfg.horizon}): in view in the context {_fmt(c['seen'])}, not in view {_fmt(c['unseen'])} "
              f"(the most common colour's share: {_fmt(c['majority'])})", flush=True)
    print(f"NLL held out {result['heldout_nll']:.2f} nats per window"
          + (f" (train {result['final_train_nll']:.2f})" if "final_train_nll" in result else ""))
    atomic_write_bytes(out / f"{name}.json", json.dumps(result, indent=2).encode())
    plot_reliability(result, out / f"{name}.png")
    print(f"wrote {out / (name + '.json')} and the reliability diagram {out / (name + '.png')}")


def plot_reliability(result: dict, path: Path) -> None:
    """Reliability diagram of P(pedestrian within h) per horizon: mean predicted P against the observed rate per
    bin (marker area ~ windows in the bin), with the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted((k for k in result if k.startswith("within_")), key=lambda k: int(k.split("_")[1]))
    fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 3.3), squeeze=False)
    for ax, k in zip(axes[0], keys):
        r, rows = result[k], result[k]["reliability"]
        total = sum(x["count"] for x in rows)
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
        ax.scatter([x["p"] for x in rows], [x["true"] for x in rows], s=[8 + 400 * x["count"] / total for x in rows],
                   alpha=0.8)
        ax.plot([x["p"] for x in rows], [x["true"] for x in rows], lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted P(pedestrian within h)")
        ax.set_title(f"h = {k.split('_')[1]}: ECE {r['ece']:.3f} ({result['heldout_windows']} windows)", fontsize=8)
    axes[0][0].set_ylabel("observed rate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
