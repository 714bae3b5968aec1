"""Seconds per training step of a world-model preset: eager vs ``torch.compile``, fp32 vs bf16 autocast; or, with
``--processes``, samples/s of the real training command on 1, 2, ... processes.

    python bench/train_speed.py [--config small] [--threads 2] [--steps 60] [--modes eager,compile]
        [--precisions fp32] [--data data/wm/train/OccludedCrosswalk]
    python bench/train_speed.py --processes 1,2 [--config tiny] [--threads 2] [--steps 60]

Prints a table: the first step (``torch.compile`` compiles there) and the median of the steps after the first
third. It times the optimisation step alone (forward, backward, AdamW) on batches drawn from real recordings
(or from a synthetic recording when ``--data`` is missing), so it answers "will the preset's ``max_steps`` fit
the 60-minute budget on this CPU" without a full run. Measured 2026-11-27 on the 2-core AMD EPYC (no native
bf16), ``small``: eager fp32 0.77 s a step, compiled fp32 0.84 s after 127 s of compiling.

``--processes 1,2`` runs ``genex train-world-model`` under ``accelerate launch`` (``--multi_gpu``, i.e. torchrun
DDP, gloo on CPUs, for more than one process) with the preset's global batch and ``--threads`` split evenly
between the processes, and prints samples/s from the run's ``metrics.csv`` (training time only: start-up,
evaluation and checkpoints are left out; the first logged steps too).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import socket
import subprocess
import sys
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


def launch_training(data_dir: Path, out: Path, config: str, processes: int, threads: int, steps: int,
                    device: str = "cpu") -> dict[str, float]:
    """Run ``genex train-world-model`` on ``processes`` processes; seconds per step and samples/s from its
    ``metrics.csv`` (between the first and the last logged step)."""
    _, tc = preset(config)
    exe = Path(sys.executable).with_name("accelerate")
    cmd = [str(exe), "launch"] if exe.exists() else [sys.executable, "-m", "accelerate.commands.launch"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd += ["--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend",
            "no", "--main_process_port", str(port), *(["--multi_gpu"] if processes > 1 else []),
            "-m", "genex.cli", "train-world-model", "--data", str(data_dir), "--config", config, "--out", str(out),
            "--threads", str(threads), "--quiet", "--max-steps", str(steps), "--checkpoint-every", str(steps),
            "--eval-every", str(steps), "--device", device]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    with open(out / "metrics.csv", newline="") as f:
        rows = [(int(r["step"]), float(r["seconds"])) for r in csv.DictReader(f)]
    if len(rows) < 2:
        raise SystemExit(f"--steps {steps} logs fewer than 2 rows (one every {tc.log_every} steps): use more steps")
    (s0, t0), (s1, t1) = rows[0], rows[-1]
    per_step = (t1 - t0) / (s1 - s0)
    return {"step_s": per_step, "samples_s": tc.batch_size / per_step}


def scaling_table(data_dir: Path, config: str, processes: list[int], threads: int, steps: int, tmp: Path) -> None:
    _, tc = preset(config)
    print(f"config {config}, global batch {tc.batch_size}, {threads} threads in all, {steps} steps, CPU "
          f"({os.cpu_count()} cores)")
    print("| processes | threads each | batch per process | s/step | samples/s | vs 1 process |")
    print("|---|---|---|---|---|---|")
    base = None
    for n in processes:
        if tc.batch_size % n:
            print(f"| {n} | - | - | - | - | global batch {tc.batch_size} not divisible |")
            continue
        r = launch_training(data_dir, tmp / f"run{n}", config, n, max(1, threads // n), steps)
        base = base or r["samples_s"]
        print(f"| {n} | {max(1, threads // n)} | {tc.batch_size // n} | {r['step_s']:.3f} | {r['samples_s']:.1f} | "
              f"{r['samples_s'] / base:.2f}x |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="small")
    ap.add_argument("--data", default="data/wm/train/OccludedCrosswalk")
    ap.add_argument("--episodes", type=int, default=30, help="episodes to load (enough to draw batches from)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--precisions", default="fp32")
    ap.add_argument("--processes", default=None,
                    help="e.g. 1,2: samples/s of `genex train-world-model` on that many processes (CPU, gloo) instead")
    args = ap.parse_args()
    if args.steps < 3:
        ap.error("--steps must be >= 3 (the first steps warm up)")
    torch.set_num_threads(args.threads)
    cfg, tc = preset(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(args.data)
        if not (data_dir / "manifest.json").exists():
            print(f"{data_dir} is not a recording: timing on a synthetic one of the preset's frame size")
            data_dir = write_synthetic_recording(Path(tmp) / "rec", episodes=4 if args.processes is None else 24,
                                                 steps=40, size=cfg.height, seed=0)
        if args.processes is not None:
            scaling_table(data_dir, args.config, [int(n) for n in args.processes.split(",")], args.threads,
                          args.steps, Path(tmp))
            return
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
