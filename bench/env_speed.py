"""Env throughput: rendered steps per second on one core, genex envs vs highway-env.

    python bench/env_speed.py [--steps 2000] [--all-cores]

Prints a Markdown table. Each rate is the best of three equal chunks of
steps (see ``best_rate``). Each genex driving row steps the env with random actions at 64x64 (resets included, visibility labels on: one RGB and one
segmentation render per step). The reference row is highway-env's
``intersection-v0`` with a 64x64 grayscale image observation, run in the same
process under the same core pinning. GUI rows are timed under the random
clicker and under the expert (whose every step redraws the screen).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

REPEATS = 3


def best_rate(env: gym.Env, steps: int, seed: int, driver=None) -> float:
    """Env steps/s under ``driver`` (a genex ScriptedDriver; default: uniform random discrete
    actions), timing only ``step`` and ``reset`` (not the driver's thinking): the best of
    ``REPEATS`` equal chunks.

    Timings on a shared machine only ever err on the slow side, so the best
    chunk is the fairest estimate for every row alike.
    """
    rng = np.random.default_rng(seed)
    ep = seed
    obs, info = env.reset(seed=ep)
    if driver is not None:
        driver.reset(env, seed=ep)
    rates = []
    clock = time.perf_counter
    for _ in range(REPEATS):
        spent = 0.0
        for _ in range(steps // REPEATS):
            action = driver.act(obs, info) if driver is not None else int(rng.integers(env.action_space.n))
            t0 = clock()
            obs, _, term, trunc, info = env.step(action)
            if term or trunc:
                ep += 1
                obs, info = env.reset(seed=ep)
            spent += clock() - t0
            if (term or trunc) and driver is not None:
                driver.reset(env, seed=ep)
        rates.append((steps // REPEATS) / spent)
    return max(rates)


def genex_rate(env_id: str, steps: int, seed: int = 0, driver: str | None = None, **kwargs) -> float:
    from genex.envs import make_driver

    env = gym.make(env_id, **kwargs)
    drv = make_driver(env_id, driver) if driver else None
    best_rate(env, 30, seed, drv)  # warm up: jit compile, GL context, caches
    rate = best_rate(env, steps, seed, drv)
    env.close()
    return rate


def highway_intersection_rate(steps: int, seed: int = 0) -> float | None:
    try:
        import highway_env  # noqa: F401
    except ImportError:
        return None
    config = {
        "observation": {
            "type": "GrayscaleObservation",
            "observation_shape": (64, 64),
            "stack_size": 1,
            "weights": [0.2989, 0.5870, 0.1140],
            "scaling": 1.75,
        },
    }
    env = gym.make("intersection-v0", config=config)
    obs, _ = env.reset(seed=seed)
    assert obs.shape[-2:] == (64, 64), obs.shape
    rate = best_rate(env, steps, seed)
    env.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000, help="steps per genex env")
    ap.add_argument("--highway-steps", type=int, default=300, help="steps for the highway-env reference")
    ap.add_argument("--all-cores", action="store_true", help="do not pin the process to one core")
    args = ap.parse_args()
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    import genex.envs

    rows: list[tuple[str, str, float]] = []
    for env_id in genex.envs.DRIVING_ENV_IDS:
        rows.append((env_id, "64x64 RGB + segmentation, random", genex_rate(env_id, args.steps)))
        rows.append((env_id, "64x64 RGB, no labels, random", genex_rate(env_id, args.steps, visibility_labels=False)))
    for env_id in genex.envs.GUI_ENV_IDS:
        # random clicks often hit nothing (a cached frame); the expert changes the screen every step
        rows.append((env_id, "128x128 screen, random clicker", genex_rate(env_id, args.steps, driver="random")))
        rows.append((env_id, "128x128 screen, expert", genex_rate(env_id, args.steps, driver="expert")))
    ref = highway_intersection_rate(args.highway_steps)

    cores = "1 core (pinned)" if not args.all_cores else f"{os.cpu_count()} cores"
    print(f"\nEnv throughput on {platform.processor() or platform.machine()}, {cores}, MUJOCO_GL={os.environ['MUJOCO_GL']}\n")
    print("| env | observation | steps/s | vs highway-env |")
    print("|---|---|---:|---:|")
    for env_id, obs, rate in rows:
        rel = f"{rate / ref:.1f}x" if ref else "n/a"
        print(f"| {env_id} | {obs} | {rate:,.0f} | {rel} |")
    if ref:
        print(f"| highway-env intersection-v0 | 64x64 grayscale | {ref:,.0f} | 1.0x |")
    else:
        print("| highway-env intersection-v0 | not installed (pip install -e '.[bench]') | | |")


if __name__ == "__main__":
    main()
