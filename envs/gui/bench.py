"""Speed of the GUI envs: steps per second under a seeded random clicker.

Usage (also called by the project's benchmark script)::

    python -m genex.envs.gui.bench            # all apps, 2000 steps each
    python -m genex.envs.gui.bench genex/TicketShop-v0 --steps 5000
"""

from __future__ import annotations

import argparse
import logging
import time

import gymnasium as gym

from . import GUI_ENV_IDS, register_gui_envs
from .users import RandomClicker

__all__ = ["gui_steps_per_second"]

logger = logging.getLogger(__name__)


def gui_steps_per_second(env_id: str, n_steps: int = 2000, seed: int = 0, **options) -> float:
    """Env steps per second (including resets) of ``env_id`` driven by :class:`RandomClicker`.

    Timed on the unwrapped env, so it measures the simulator and renderer, not
    Gymnasium's checker wrappers. ``options`` go to ``gym.make`` (e.g. ``screen_size``).
    """
    register_gui_envs()
    env = gym.make(env_id, **options).unwrapped
    driver = RandomClicker()
    obs, info = env.reset(seed=seed)
    driver.reset(env, seed=seed)
    episode = 0
    start = time.perf_counter()
    for _ in range(n_steps):
        obs, _, terminated, truncated, info = env.step(driver.act(obs, info))
        if terminated or truncated:
            episode += 1
            obs, info = env.reset(seed=seed + episode)
            driver.reset(env, seed=seed + episode)
    elapsed = time.perf_counter() - start
    env.close()
    return n_steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env_ids", nargs="*", default=list(GUI_ENV_IDS))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--screen-size", type=int, default=128)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for env_id in args.env_ids:
        sps = gui_steps_per_second(env_id, args.steps, args.seed, screen_size=args.screen_size)
        logger.info("%-26s %8.0f steps/s", env_id, sps)


if __name__ == "__main__":
    main()
