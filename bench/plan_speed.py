"""Decisions per second and per-decision latency of each planner (shipped checkpoints, one torch thread).

    python bench/plan_speed.py [--decisions 40] [--samples 4] [--horizon 8]

Prints a Markdown table: env, planner, decisions/s, median and p90 latency, and the
share of each decision spent in the world model and in the policy.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

import genex.envs  # noqa: F401
from genex.envs.spec import public_info
from genex.planners import make_planner

PLANNERS = {
    "genex/OccludedCrosswalk-v0": ("react", "imagine", "lookahead", "oracle-imagine", "explore", "particle", "amortized"),
    "genex/SettingsTabs-v0": ("react", "oracle-imagine", "oracle-lookahead", "explore"),
}


def bench(env_id: str, name: str, decisions: int, samples: int, horizon: int) -> dict[str, float]:
    env, oracle_env = gym.make(env_id), gym.make(env_id)
    try:
        planner = make_planner(name, env, oracle_env=oracle_env, samples=samples, horizon=horizon)
    except FileNotFoundError as e:
        return {"error": str(e)}
    lat, wm, pol = [], 0.0, 0.0
    seed = 0
    warm = True
    while len(lat) < decisions:
        obs, info = env.reset(seed=seed)
        oracle_env.reset(seed=seed)
        planner.reset(env, seed=seed)
        done = False
        while not done and len(lat) < decisions:
            t0 = time.perf_counter()
            action, trace = planner.act(obs, public_info(info))
            dt = time.perf_counter() - t0
            if trace is not None:
                if warm:  # the first decision pays for lazy initialisation
                    warm = False
                else:
                    lat.append(dt)
                    wm += trace.seconds.get("world_model", 0.0)
                    pol += trace.seconds.get("policy", 0.0)
            obs, _, term, trunc, info = env.step(action)
            done = term or trunc
        seed += 1
    total = float(np.sum(lat))
    return {"per_s": len(lat) / total, "median_ms": 1000 * float(np.median(lat)),
            "p90_ms": 1000 * float(np.percentile(lat, 90)), "wm_share": wm / total, "policy_share": pol / total}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--decisions", type=int, default=40)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--horizon", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads {args.threads}, S={args.samples}, horizon={args.horizon}, {args.decisions} decisions each\n")
    print("| env | planner | decisions/s | median ms | p90 ms | world model | policy |")
    print("|---|---|---|---|---|---|---|")
    for env_id, names in PLANNERS.items():
        for name in names:
            r = bench(env_id, name, args.decisions, args.samples, args.horizon)
            short = env_id.split("/")[-1]
            if "error" in r:
                print(f"| {short} | {name} | – | – | – | {r['error'][:60]} | |")
                continue
            print(f"| {short} | {name} | {r['per_s']:.1f} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | "
                  f"{100 * r['wm_share']:.0f}% | {100 * r['policy_share']:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
