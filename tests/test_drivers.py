"""Scripted drivers: the expert is safe and quick, the aggressive driver pays for hidden agents."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import genex.envs
from genex.envs import make_driver


def _run(env, driver, seed):
    obs, info = env.reset(seed=seed)
    driver.reset(env, seed=seed)
    steps = 0
    while True:
        obs, r, term, trunc, info = env.step(driver.act(obs, info))
        steps += 1
        if term or trunc:
            return info, steps


FORCE_HIDDEN = {
    "genex/OccludedCrosswalk-v0": 1.0,
    "genex/StoppedLeadCar-v0": (0.6, 0.4, 0.0),
    "genex/OccludedLeftTurn-v0": 1.0,
}


@pytest.mark.parametrize("env_id", genex.envs.DRIVING_ENV_IDS)
def test_expert_succeeds_and_aggressive_collides_with_hidden_agents(env_id):
    env = gym.make(env_id, hidden_prior=FORCE_HIDDEN[env_id])
    expert, aggressive = make_driver(env_id, "expert"), make_driver(env_id, "aggressive")
    seeds = range(8)
    expert_ok = [_run(env, expert, s)[0]["success"] for s in seeds]
    crashes = [_run(env, aggressive, s)[0]["collisions"] > 0 for s in seeds]
    assert all(expert_ok)
    assert np.mean(crashes) >= 0.375, "hidden agents must be dangerous for a driver that does not look"


@pytest.mark.parametrize("env_id", genex.envs.DRIVING_ENV_IDS)
def test_cautious_never_collides(env_id):
    env = gym.make(env_id)
    driver = make_driver(env_id, "cautious")
    for s in range(4):
        info, _ = _run(env, driver, s)
        assert info["collisions"] == 0


def test_overtaking_is_right_only_for_a_breakdown():
    env_id = "genex/StoppedLeadCar-v0"
    env = gym.make(env_id, hidden_prior=(0.0, 0.0, 1.0))
    info, steps = _run(env, make_driver(env_id, "aggressive"), 0)
    assert info["success"] and info["collisions"] == 0
    env = gym.make(env_id, hidden_prior=(0.0, 0.0, 1.0))
    info, steps = _run(env, make_driver(env_id, "cautious"), 0)
    assert not info["success"] and steps == env.unwrapped.config.max_steps


def test_random_driver_is_seeded():
    env_id = genex.envs.DRIVING_ENV_IDS[0]
    env = gym.make(env_id, visibility_labels=False)
    d = make_driver(env_id, "random")
    acts = []
    for _ in range(2):
        obs, info = env.reset(seed=0)
        d.reset(env, seed=11)
        acts.append([d.act(obs, info) for _ in range(20)])
    assert acts[0] == acts[1]


def test_unknown_driver_is_rejected():
    with pytest.raises(ValueError, match="unknown driver"):
        make_driver(genex.envs.DRIVING_ENV_IDS[0], "kamikaze")
