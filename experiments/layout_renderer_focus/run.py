"""Experiment: does the v2 renderer learn to draw the layout when its batches hold the windows where it matters?

Question: the driving model v2's renderer (``--config small-layout``, fine-tuned from the shipped driving model,
    3,000 steps on 400 crosswalk episodes) did not read its layout input: rendering a held-out window with and
    without the pedestrian's cells gave the same frame (mean error in the pedestrian's cells 21.3 vs 21.2 levels),
    because a pedestrian who is new in the target frame (the one case only the layout can tell) is in ~1-2% of
    uniform windows. Does oversampling windows whose target frame shows a pedestrian (and, among them, those where
    the last context frame does not) teach it to?
Status: run 2026-12-07 on 2 shared CPU cores (docs/world_model.md, "Driving model v2: the renderer"); the first
    recipe negative, the second positive but faint.
Result: no. After 2,000 focused steps (horizon-1 PSNR with the true layout 29.6 -> 29.9 dB, copy-last 22.8) the
    error in the pedestrian's cells is 19.9 levels with the true layout and 20.2 with the pedestrian emptied
    (copy-last 25.0); where the pedestrian is new, 12.3 vs 11.6: the renderer still draws from its context.
    1,500 more steps with ``--mask-share 0.5`` (half the windows lose the pedestrian's cells from their context,
    and as many random cells; 2 threads, 7 min): 19.6 vs 20.1, new 11.6 vs 11.1. Still no. But those numbers went
    through the checkpoint's snap (32 levels) and min-changed gate (30 pixels), which erase a faint new pedestrian
    whatever the network draws; ``--raw`` and ``--keep-layout`` measure without them.
    Second recipe (``--config small-layout-v2``: a layout encoder, weight on the rare facts; 3,000 steps from the
    shipped model, ``--mask-share 0.25``, 58 min on 1 thread): yes, faintly. The true and emptied renders differ by
    7.2 levels in the pedestrian's cells (14.9 with ``--keep-layout``), error 19.3 vs 20.0; the difference images
    show a grey pedestrian-shaped stroke where the real one steps out (docs/world_model.md, "Second recipe").
    Third (2026-12-08): told the colours (``--config small-layout-v3``, data with ``info["appearance"]``, 2,000
    steps from driving-v2, 49 min): read by the policy no more often than the same steps without colours (0.31
    against 0.32, ``experiments/renderer_reading``); ``--p-mean -0.4 --p-std 1.2`` (low noise, 2,000 more steps)
    with a 3-step sampler from sigma 5: 0.27. docs/world_model.md, "Appearance".
Command:
    python experiments/layout_renderer_focus/run.py --data runs/layout_probe2/data/train \\
        --init-from checkpoints/world_model/driving --config small-layout-v2 --out runs/wm_v2/renderer_v2 \\
        --steps 3000 --mask-share 0.25
    python experiments/layout_renderer_focus/run.py --data runs/layout_probe2/data/train \\
        --init-from runs/wm_v2/renderer/model --out runs/wm_v2/renderer_focus --steps 2000
    python experiments/layout_renderer_focus/run.py --data runs/layout_probe2/data/train \\
        --init-from runs/wm_v2/renderer_focus/model --out runs/wm_v2/renderer_masked --steps 1500 --mask-share 0.5 \\
        --threads 2
    # does a renderer read its layout? (any layout checkpoint with its stage; held-out windows)
    python experiments/layout_renderer_focus/run.py --measure runs/wm_v2/model --data runs/layout_probe2/data/heldout

``PedestrianFocusTrainer`` is :class:`genex.world_model.train.WorldModelTrainer` with one hook changed
(``draw_indices``): ``--new-share`` of each batch from windows whose target frame shows a pedestrian that the last
context frame does not, ``--ped-share`` from windows whose target shows one at all, the rest uniform.

``--measure CHECKPOINT`` instead renders one step of up to 120 held-out windows whose target frame shows a
pedestrian, once with the target's true layout and once with the pedestrian's cells emptied (same noise), and
prints the mean absolute error (uint8 levels, worst channel) against the real target inside the pedestrian's
cells, for all those windows and for those where the pedestrian is new (not in the last context frame), beside
copy-last's: a renderer that reads its layout has a clearly lower error with the true layout.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch

from genex.world_model.config import preset
from genex.world_model.data import WindowDataset
from genex.world_model.denoiser import Batch
from genex.world_model.train import WorldModelTrainer

PEDESTRIAN = 0  # the first occupancy fact of OccludedCrosswalk


class PedestrianFocusTrainer(WorldModelTrainer):
    """Batches weighted towards the windows whose target frame shows a pedestrian (see the module docstring)."""

    def __init__(self, *args: Any, ped_share: float, new_share: float, mask_share: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ped_share, self.new_share, self.mask_share = ped_share, new_share, mask_share
        self._pools_of: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._mask_rng = torch.Generator().manual_seed(12345)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "ped_share": self.ped_share, "new_share": self.new_share,
                "mask_share": self.mask_share}

    def compute_loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """With ``mask_share``: in that share of the windows, the context frames lose the cells the target's
        pedestrian occupies (dilated by one cell) and as many random other cells (filled with each frame's mean
        colour), so the layout is the only place that says where, and whether, a pedestrian is: the renderer
        has to read it. The random cells keep the mask itself from saying where the pedestrian is."""
        if self.mask_share <= 0 or batch.layout is None:
            return super().compute_loss(model, batch)
        ctx = batch.context.clone()  # uint8[B, K, H, W, 3]
        b, _, h, w, _ = ctx.shape
        ped = batch.layout[:, PEDESTRIAN].float()[:, None]  # [B, 1, gh, gw]
        gh, gw = ped.shape[-2:]
        near = torch.nn.functional.max_pool2d(ped, 3, stride=1, padding=1)[:, 0] > 0  # [B, gh, gw]
        # as many random cells as the pedestrian's (at least 4, so windows without one are masked too)
        share = near.float().mean((1, 2), keepdim=True).clamp(min=4 / (gh * gw))
        extra = torch.rand(b, gh, gw, generator=self._mask_rng) < share
        chosen = torch.rand(b, generator=self._mask_rng) < self.mask_share
        cells = (near | extra) & chosen[:, None, None]
        pixels = cells.repeat_interleave(h // gh, 1).repeat_interleave(w // gw, 2)  # [B, H, W]
        mean = ctx.float().mean((2, 3), keepdim=True).round().to(ctx.dtype)  # [B, K, 1, 1, 3]
        ctx = torch.where(pixels[:, None, :, :, None], mean.expand_as(ctx), ctx)
        return super().compute_loss(model, Batch(ctx, batch.action, batch.target, batch.layout))

    def _pools(self, data: WindowDataset) -> tuple[np.ndarray, np.ndarray]:
        if id(data) not in self._pools_of:
            if data.occupancy is None:
                raise ValueError("the windows carry no occupancy: train a layout model (--config small-layout)")
            t = torch.from_numpy(data.frame_index)
            target = data.occupancy[t + data.stride, PEDESTRIAN].flatten(1).any(1).numpy()
            last = data.occupancy[t, PEDESTRIAN].flatten(1).any(1).numpy()
            self._pools_of[id(data)] = (np.flatnonzero(target), np.flatnonzero(target & ~last))
        return self._pools_of[id(data)]

    def draw_indices(self, data: WindowDataset, rng: np.random.Generator, n: int) -> np.ndarray:
        ped, new = self._pools(data)
        n_new = int(round(self.new_share * n)) if len(new) else 0
        n_ped = int(round(self.ped_share * n)) if len(ped) else 0
        rest = super().draw_indices(data, rng, n - n_new - n_ped)
        return np.concatenate([new[rng.integers(0, len(new), n_new)] if n_new else rest[:0],
                               ped[rng.integers(0, len(ped), n_ped)] if n_ped else rest[:0], rest])


def measure_layout_effect(checkpoint: str, data: str, episodes: int = 60, windows: int = 120,
                          raw: bool = False, keep: bool = False) -> dict[str, float]:
    """The ``--measure`` numbers (module docstring) of the layout renderer in ``checkpoint`` on recordings ``data``.

    ``raw``: sample without the checkpoint's snapping (``snap 0``, ``min_changed_pixels 0``), which zeroes changes
    under 32 levels and frames where fewer than 30 pixels change: a lone new pedestrian (~12 pixels) in front of
    a waiting car is both, so the snapped render cannot show it whatever the network draws. ``keep``: snap, but
    spare the layout's cells (``SamplerConfig.keep_layout``)."""
    from genex.recording import iter_episodes, read_manifest
    from genex.world_model.checkpoint import load_world_model
    from genex.world_model.network import with_colours
    from genex.world_model.sampler import sample_next_frame

    model = load_world_model(checkpoint, device="cpu")
    sampler = model.sampler.replace(snap=0.0, min_changed_pixels=0) if raw else model.sampler
    sampler = sampler.replace(keep_layout=True) if keep else sampler
    model.action_names = tuple(read_manifest(data).action_names)
    den, k = model.denoiser, model.cfg.context
    found = []
    for i, ep in enumerate(iter_episodes(data)):
        if i >= episodes:
            break
        for t in range(k - 1, len(ep.discrete_actions)):
            if ep.occupancy[t + 1, PEDESTRIAN].any():
                found.append((ep, t))
    pick = np.random.default_rng(0).choice(len(found), size=min(windows, len(found)), replace=False)
    err: dict[str, list[float]] = {"true": [], "emptied": [], "copy_last": [], "true_new": [], "emptied_new": [],
                                   "effect": [], "effect_new": []}
    for j in pick:
        ep, t = found[j]
        ctx = den.stack_context(torch.from_numpy(ep.frames[t - k + 1:t + 1][None]))
        act = model._encode(np.asarray(ep.discrete_actions[t:t + 1])[None])[:, 0]
        layout = torch.from_numpy(ep.occupancy[t + 1][None] > 0)
        emptied = layout.clone()
        emptied[:, PEDESTRIAN] = False
        # a renderer told colours (small-layout-v3) gets the recorded ones; the emptied pedestrian loses its colour
        colours = None if ep.appearance is None else torch.from_numpy(ep.appearance[t + 1][None])
        layout, emptied = with_colours(model.cfg, layout, colours), with_colours(model.cfg, emptied, colours)
        cell = model.cfg.height // layout.shape[-2]
        mask = np.kron(ep.occupancy[t + 1, PEDESTRIAN] > 0, np.ones((cell, cell))).astype(bool)
        target = ep.frames[t + 1].astype(np.float32)
        new = not ep.occupancy[t, PEDESTRIAN].any()
        outs = []
        for name, lay in (("true", layout), ("emptied", emptied)):
            x = sample_next_frame(den, ctx, act, sampler, generator=torch.Generator().manual_seed(0), layout=lay)
            out = ((x[0].permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).numpy()
            outs.append(out)
            e = float(np.abs(out - target).max(-1)[mask].mean())
            err[name].append(e)
            if new:
                err[name + "_new"].append(e)
        # how much the pedestrian's cells change between the two renders: 0 for a renderer that ignores its layout
        effect = float(np.abs(outs[0] - outs[1]).max(-1)[mask].mean())
        err["effect"].append(effect)
        if new:
            err["effect_new"].append(effect)
        err["copy_last"].append(float(np.abs(ep.frames[t].astype(np.float32) - target).max(-1)[mask].mean()))
    res = {name: float(np.mean(v)) if v else float("nan") for name, v in err.items()}
    res["windows"], res["new_windows"] = float(len(pick)), float(len(err["true_new"]))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--measure", default=None, metavar="CHECKPOINT",
                    help="measure whether this layout checkpoint reads its layout, on --data (held out), and exit")
    ap.add_argument("--init-from", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--config", default="small-layout", help="the renderer's preset (small-layout-v2: layout encoder)")
    ap.add_argument("--agent-weight", type=float, default=None, help="default: the preset's")
    ap.add_argument("--p-mean", type=float, default=None,
                    help="training noise level: mean of log sigma (default: the preset's, 2.0 for the layout presets)")
    ap.add_argument("--p-std", type=float, default=None, help="training noise level: std of log sigma")
    ap.add_argument("--raw", action="store_true",
                    help="with --measure: sample without the checkpoint's snapping (snap 0, min_changed_pixels 0)")
    ap.add_argument("--keep-layout", action="store_true",
                    help="with --measure: snap, but spare the layout's cells (SamplerConfig.keep_layout)")
    ap.add_argument("--ped-share", type=float, default=0.25)
    ap.add_argument("--new-share", type=float, default=0.25)
    ap.add_argument("--mask-share", type=float, default=0.0,
                    help="share of windows whose context loses the pedestrian's cells (and as many random ones)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.measure:
        r = measure_layout_effect(args.measure, args.data[0], raw=args.raw, keep=args.keep_layout)
        how = " (raw sampler)" if args.raw else " (keep_layout)" if args.keep_layout else ""
        print(f"{args.measure} on {args.data[0]}{how}: {r['windows']:.0f} windows "
              f"whose target shows a pedestrian; mean error in its cells (uint8 levels): true layout {r['true']:.1f}, "
              f"pedestrian emptied {r['emptied']:.1f}, copy-last {r['copy_last']:.1f}, difference between the two "
              f"renders {r['effect']:.1f}; where the pedestrian is new ({r['new_windows']:.0f}): "
              f"{r['true_new']:.1f} vs {r['emptied_new']:.1f}, difference {r['effect_new']:.1f}")
        return
    if not args.init_from or not args.out:
        ap.error("training needs --init-from and --out (or --measure CHECKPOINT)")
    weight = {k: v for k, v in (("agent_weight", args.agent_weight), ("p_mean", args.p_mean), ("p_std", args.p_std))
              if v is not None}
    cfgs = preset(args.config, max_steps=args.steps, lr=args.lr, checkpoint_every=250, eval_every=500, **weight)
    model_cfg, train_cfg = cfgs.model, cfgs.train
    trainer = PedestrianFocusTrainer(args.data, args.out, model_cfg, train_cfg, init_from=args.init_from,
                                     resume=args.resume, sampler=cfgs.sampler, device="cpu",
                                     ped_share=args.ped_share, new_share=args.new_share, mask_share=args.mask_share,
                                     command="python experiments/layout_renderer_focus/run.py " + " ".join(
                                         f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}" for k, v in vars(args).items()
                                         if v not in (None, False)))
    trainer.train()


if __name__ == "__main__":
    main()
