"""Seconds per training step of a world-model preset: eager vs ``torch.compile``, fp32 vs bf16 autocast.

    python bench/train_speed.py [--config small] [--threads 2] [--steps 60] [--modes eager,compile]
        [--precisions fp32] [--data data/wm/train/OccludedCrosswalk]

Prints a table: the first step (``torch.compile`` compiles there) and the median of the steps after the first
third. It times the optimisation step alone (forward, backward, AdamW) on batches drawn from real recordings
(or from a synthetic recording when ``--data`` is missing), so it answers "will the preset's ``max_steps`` fit
the 60-minute budget on this CPU" without a full run. Measured 2026-11-27 on the 2-core AMD EPYC (no native
bf16), ``small``: eager fp32 0.77 s a step, compiled fp32 0.84 s after 127 s of compiling.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genex.world_model import Denoiser, preset
from genex.world_model.data import WindowDataset, load_recordings
from genex.world_model.synthetic import write_synthetic_recording


def time_steps(cfg, tc, data: WindowDataset, mode: str, precision: str, steps: int, seed: int = 0) -> list[float]:
    torch.manual_seed(seed)
    den = Denoiser(cfg)
    if mode == "compile":
        den.net = torch.compile(den.net)
    opt = torch.optim.AdamW(den.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    rng = np.random.default_rng(seed)
    times = []
    for _ in range(steps):
        batch = data.get(rng.integers(0, len(data), size=tc.batch_size))
        t = time.perf_counter()
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with ctx:
            loss, _ = den(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--data", default="data/wm/train/OccludedCrosswalk")
    ap.add_argument("--episodes", type=int, default=30, help="episodes to load (enough to draw batches from)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--precisions", default="fp32")
    args = ap.parse_args()
    if args.steps < 3:
        ap.error("--steps must be >= 3 (the first steps warm up)")
    torch.set_num_threads(args.threads)
    cfg, tc = preset(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(args.data)
        if not (data_dir / "manifest.json").exists():
            print(f"{data_dir} is not a recording: timing on a synthetic one of the preset's frame size")
            data_dir = write_synthetic_recording(Path(tmp) / "rec", episodes=4, steps=40, size=cfg.height, seed=0)
        data = WindowDataset(load_recordings([data_dir], cfg, limit=args.episodes), cfg.context)
    print(f"config {args.config}, batch {tc.batch_size}, {args.threads} threads, {args.steps} steps, "
          f"max_steps {tc.max_steps}")
    print("| mode | precision | first step (s) | median step (s) | max_steps at the median (min) |")
    print("|---|---|---|---|---|")
    for mode in args.modes.split(","):
        for precision in args.precisions.split(","):
            times = time_steps(cfg, tc, data, mode, precision, args.steps)
            med = float(np.median(times[args.steps // 3:]))
            print(f"| {mode} | {precision} | {times[0]:.2f} | {med:.3f} | {med * tc.max_steps / 60:.0f} |", flush=True)


if __name__ == "__main__":
    main()
