"""Scripted-driver baselines on every env: success, irreversible errors, steps, return.

    python bench/driver_baselines.py [--episodes 50] [--seed 10000] [--env ID ...]

Irreversible errors are collisions in the driving scenes and wrong buys /
deletes / resets in the GUI apps.

Held-out seeds ``seed .. seed+episodes-1``; every driver sees the same seeds.
Prints a Markdown table with 95% confidence half-widths (normal approximation).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import genex.envs  # noqa: E402

def run_episode(env, driver, seed: int) -> tuple[bool, bool, int, float]:
    obs, info = env.reset(seed=seed)
    driver.reset(env, seed=seed)
    total, steps = 0.0, 0
    while True:
        obs, r, term, trunc, info = env.step(driver.act(obs, info))
        total += r
        steps += 1
        if term or trunc:
            errors = info.get("collisions", info.get("irreversible_errors", 0))
            return bool(info["success"]), errors > 0, steps, total


def ci95(x: np.ndarray) -> float:
    return 1.96 * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=10_000)
    ap.add_argument("--env", action="append", help="env id (repeatable); default: all")
    args = ap.parse_args()
    rows = []
    for env_id in args.env or genex.envs.ENV_IDS:
        env = gym.make(env_id)
        for name in [d for d in genex.envs.drivers_for(env_id) if d != "mixed"]:
            driver = genex.envs.make_driver(env_id, name)
            res = np.array([run_episode(env, driver, args.seed + i)
                            for i in tqdm(range(args.episodes), desc=f"{env_id} {name}", leave=False)], float)
            rows.append((env_id, name, res))
        env.close()
    print(f"\n{args.episodes} episodes per cell, seeds {args.seed}..{args.seed + args.episodes - 1}\n")
    print("| env | driver | success | irreversible error | steps | return |")
    print("|---|---|---:|---:|---:|---:|")
    for env_id, name, r in rows:
        cells = [f"{r[:, k].mean():.2f} ± {ci95(r[:, k]):.2f}" for k in range(4)]
        print(f"| {env_id.split('/')[1]} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
