"""Experiment: does a driving world model learn to move pedestrians when it sees more of them?

Question: only 7.7% of the training windows have a hidden agent (pedestrian or oncoming vehicle) in the next frame.
    Does fine-tuning with a share of every batch drawn from those windows (from the recordings' visibility labels)
    make the samples continue a visible pedestrian?
Status: done 2026-11-27, not shipped; result in docs/world_model.md ("Stochasticity against counterfactual replays").
Result: after 1200 steps at share 0.5 (14 min, 2 threads) the samples cover 15% of a visible pedestrian's next-step
    pixels instead of 5%, and the counterfactual table did not move (uncertain 0.34 / 0.07 / 0.03, visible 0.00 /
    0.00: no sample nearer the future with the pedestrian). After 3000 steps: 26% of the pixels, visible 0.00 / 0.02.
Command:
    python experiments/finetune_agent_windows/run.py --steps 1200 --agent-share 0.5 --out runs/stoch/ft_agent50

Fine-tunes a checkpoint with ``--agent-share`` of every batch drawn from windows whose next frame shows a hidden
agent; measure the result (``OUT/model``) with ``experiments/stochasticity_counterfactual``.

The library's trainer (:class:`genex.world_model.train.WorldModelTrainer`) does the training, fine-tuning from
``--checkpoint`` (``init_from``) with two hooks changed: each step's window indices (:meth:`draw_indices`: the
pool share first, then uniform) and a constant learning rate (AdamW weight decay 0.01, EMA 0.999, clip 1, fp32,
as the experiment ran). ``--out`` is a resumable run folder (``--resume``). (The results above came from the
experiment's own loop, since replaced: same settings, other random draws.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from genex.recording import read_manifest
from genex.world_model.checkpoint import load_denoiser
from genex.world_model.config import TrainConfig
from genex.world_model.data import EpisodeRef, WindowDataset
from genex.world_model.train import WorldModelTrainer

AGENTS = ("pedestrian", "oncoming_vehicle")


def agent_in_next_frame(ref: EpisodeRef) -> np.ndarray:
    """``bool[T]``: whether window ``t`` of the episode (predicting frame ``t + 1``) shows a hidden agent there,
    from the recording's visibility labels (the episode's ``visible`` member only; no frame is decoded)."""
    facts = read_manifest(ref.path.parent.parent).facts  # <folder>/episodes/episode_XXXXXX.npz
    cols = [i for i, f in enumerate(facts) if f in AGENTS]
    with np.load(ref.path, allow_pickle=False) as z:
        visible = z["visible"]
    seen = visible[:, cols].any(1) if cols else np.zeros(len(visible), bool)
    return seen[1:]


class AgentWindowTrainer(WorldModelTrainer):
    """Fine-tuning whose batches draw ``agent_share`` of their windows from those with a hidden agent in the next
    frame (the pool, among the training episodes of the trainer's own split), the rest uniformly."""

    def __init__(self, *args, agent_share: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.agent_share = agent_share
        self.pool = np.zeros(0, np.int64)

    def settings(self) -> dict:
        return {"agent_share": self.agent_share, "agents": list(AGENTS)}

    def episodes(self) -> tuple[list[EpisodeRef], list[EpisodeRef]]:
        train, val = super().episodes()
        flags = np.concatenate([agent_in_next_frame(r) for r in train])  # the windows' order (stride 1)
        self.pool = np.flatnonzero(flags)
        if self.agent_share > 0 and not len(self.pool):
            raise ValueError(f"no training window of {self.data_dirs} shows {' or '.join(AGENTS)} in its next frame "
                             "(visibility labels); use --agent-share 0 or other --data")
        print(f"{len(flags)} windows, {len(self.pool)} with a hidden agent in the next frame", flush=True)
        return train, val

    def draw_indices(self, data: WindowDataset, rng: np.random.Generator, n: int) -> np.ndarray:
        idx = rng.integers(0, len(data), size=n)
        k = int(round(self.agent_share * n))
        if k:
            idx[:k] = self.pool[rng.integers(0, len(self.pool), size=k)]
        return idx

    def lr_factor(self, step: int) -> float:
        return 1.0

    def log_metrics(self, row: dict) -> None:
        super().log_metrics(row)
        print(f"step {row['step']} loss {row['loss']:.4f} {row['seconds']:.0f}s", flush=True)

    def export_extra(self) -> dict:
        return {"experiment": {"agent_share": self.agent_share, "checkpoint": str(self.init_from)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default="checkpoints/world_model/driving")
    ap.add_argument("--data", nargs="+", default=[f"data/wm/train/{e}" for e in
                                                  ("OccludedCrosswalk", "StoppedLeadCar", "OccludedLeftTurn")])
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--agent-share", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="training run folder to write (resumable; the model in OUT/model)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] | mps")
    args = ap.parse_args()
    if not 0 <= args.agent_share <= 1:
        ap.error("--agent-share must be in [0, 1]")
    torch.set_num_threads(args.threads)
    den, _ = load_denoiser(args.checkpoint)
    tc = TrainConfig(batch_size=args.batch_size, lr=args.lr, weight_decay=1e-2, warmup_steps=0, max_steps=args.steps,
                     ema_decay=0.999, grad_clip=1.0, checkpoint_every=600, eval_every=600, log_every=100,
                     seed=args.seed, precision="fp32")
    trainer = AgentWindowTrainer(args.data, args.out, den.cfg, tc, sampler=den.sampler, init_from=args.checkpoint,
                                 resume=args.resume, device=args.device, progress=False, command=" ".join(sys.argv),
                                 agent_share=args.agent_share)
    try:
        metrics = trainer.train()
    except ValueError as e:  # the trainer's one-line errors (a resume with other settings, no agent windows)
        raise SystemExit(f"finetune_agent_windows: {e}") from e
    print(f"step {metrics['step']}; model in {Path(args.out) / 'model'}", flush=True)


if __name__ == "__main__":
    main()
