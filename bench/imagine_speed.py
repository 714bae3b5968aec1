"""Imagined frames per second of the world models, with the oracle (the real simulator) in the same run.

    python bench/imagine_speed.py [--threads 2] [--horizon 8] [--batch-sizes 1,8,32] [--out bench_imagine.json]
                                  [--driving-checkpoint DIR]

For each family (driving 64x64, GUI 128x128) it loads the shipped checkpoint
(``checkpoints/world_model/{driving,gui}``; a randomly initialised model of the
same preset if missing: the speed is the same; ``--driving-checkpoint`` benches another driving checkpoint, e.g. the
v2 renderer with its layout stage), imagines ``horizon`` steps for
``B`` contexts at once, and reports frames/s = ``B * horizon / seconds``. The
oracle's frames/s is measured by stepping the env after ``restore`` (one
rollout at a time: the simulator is not batched).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
FAMILIES = {
    "driving": {"checkpoint": "checkpoints/world_model/driving", "preset": "small",
                "env": "genex/OccludedCrosswalk-v0", "action": lambda rng: int(rng.integers(5))},
    "gui": {"checkpoint": "checkpoints/world_model/gui", "preset": "gui-small",
            "env": "genex/SettingsTabs-v0",
            "action": lambda rng: {"type": 0, "x": int(rng.integers(128)), "y": int(rng.integers(128)), "text": "",
                                   "key": 0, "scroll": 0}},
}


def load_model(family: str, checkpoint: str | None = None):
    from genex.world_model import Denoiser, DiffusionWorldModel, load_world_model, preset

    path = REPO / (checkpoint or FAMILIES[family]["checkpoint"])
    if (path / "config.json").exists():
        return load_world_model(path, device="cpu"), str(checkpoint or FAMILIES[family]["checkpoint"])
    if checkpoint is not None:
        raise SystemExit(f"{checkpoint}: no config.json (not a world-model checkpoint folder)")
    torch.manual_seed(0)
    cfg, _ = preset(FAMILIES[family]["preset"])
    return DiffusionWorldModel(Denoiser(cfg), action_names=("accelerate", "cruise", "brake", "creep", "wait"),
                               device="cpu"), f"random init ({FAMILIES[family]['preset']})"


def bench_model(model, family: str, batch: int, horizon: int, repeats: int) -> float:
    cfg = model.cfg
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, 256, (batch, cfg.context, cfg.height, cfg.width, 3), dtype=np.uint8)
    acts = [[FAMILIES[family]["action"](rng) if cfg.action_family == "gui" else "cruise" for _ in range(horizon)]
            for _ in range(batch)]
    model.imagine_batch(ctx, [a[:1] for a in acts], seed=0)  # warm-up
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        model.imagine_batch(ctx, acts, seed=r)
        best = min(best, time.perf_counter() - t0)
    return batch * horizon / best


def bench_oracle(family: str, horizon: int, rollouts: int) -> float | None:
    import gymnasium as gym

    import genex.envs  # noqa: F401
    from genex.world_model import OracleWorldModel

    env_id = FAMILIES[family]["env"]
    if family == "gui":
        try:
            from genex.envs.gui import register_gui_envs

            register_gui_envs()
        except ImportError:
            return None
    env = gym.make(env_id)
    env.reset(seed=0)
    oracle = OracleWorldModel(env)
    snap = env.unwrapped.snapshot()
    rng = np.random.default_rng(0)
    acts = [FAMILIES[family]["action"](rng) for _ in range(horizon)]
    oracle.imagine(None, acts, snapshot=snap)
    t0 = time.perf_counter()
    for _ in range(rollouts):
        oracle.imagine(None, acts, snapshot=snap)
    dt = time.perf_counter() - t0
    env.close()
    return rollouts * horizon / dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--horizon", type=int, default=8)
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--families", default="driving,gui")
    p.add_argument("--out", default=None, help="also write the results as JSON")
    p.add_argument("--driving-checkpoint", default=None, help="driving checkpoint folder (default: the shipped one)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("MUJOCO_GL", "egl")
    rows = []
    for family in args.families.split(","):
        model, source = load_model(family, args.driving_checkpoint if family == "driving" else None)
        size = f"{model.cfg.height}x{model.cfg.width}"
        for b in (int(x) for x in args.batch_sizes.split(",")):
            fps = bench_model(model, family, b, args.horizon, args.repeats)
            rows.append({"family": family, "model": "diffusion", "frame": size, "batch": b, "fps": round(fps, 1),
                         "source": source, "steps": model.sampler.steps})
            print(f"{family:8s} diffusion {size:8s} batch {b:3d}: {fps:8.1f} frames/s  ({source})", flush=True)
        ofps = bench_oracle(family, args.horizon, rollouts=8)
        if ofps is not None:
            rows.append({"family": family, "model": "oracle", "frame": size, "batch": 1, "fps": round(ofps, 1)})
            print(f"{family:8s} oracle    {size:8s} batch   1: {ofps:8.1f} frames/s", flush=True)
    print(f"torch threads: {args.threads}, horizon {args.horizon}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
