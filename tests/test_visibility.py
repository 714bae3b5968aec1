"""Pictures: hidden agents are invisible in the occluded view and show up when the ego moves to look.

Checked two ways: by the visibility labels (segmentation) and by pixels (the
occluded frame is identical with and without the hidden agent in the scene).
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest

from genex.envs import EnvSnapshot

# scenario, hidden fact, prior that forces the hidden agent, action that moves the viewpoint
# (or, for the emergency vehicle, waiting: it shows as it crosses in front)
CASES = [
    ("genex/OccludedCrosswalk-v0", "pedestrian", 1.0, "creep"),
    ("genex/StoppedLeadCar-v0", "pedestrian", (1.0, 0.0, 0.0), "overtake"),  # peek left past the van
    ("genex/StoppedLeadCar-v0", "emergency_vehicle", (0.0, 1.0, 0.0), "wait"),  # shows as it crosses
    ("genex/OccludedLeftTurn-v0", "oncoming_vehicle", 1.0, "creep"),
]
SEEDS = (0, 1, 2)


def _without(env, snap: EnvSnapshot, role: str) -> EnvSnapshot:
    """The same moment with the hidden agent removed from the world."""
    state = copy.deepcopy(dict(snap.state))
    slot = env.scenario.slot(role)
    world = state["world"]
    present = world.agents.present.copy()
    present[slot] = False
    state["world"] = world._replace(agents=world.agents._replace(present=present))
    return EnvSnapshot(snap.env_id, snap.config_key, state)


def _first_visible(env, action: str, fact: str, max_steps: int = 45):
    a = env.action_names.index(action)
    for k in range(1, max_steps + 1):
        obs, _, term, trunc, info = env.step(a)
        if info["visible"][fact]:
            return k, obs, env.snapshot()
        if term or trunc:
            break
    return None, None, None


@pytest.mark.parametrize("env_id,fact,prior,action", CASES)
@pytest.mark.parametrize("seed", SEEDS)
def test_hidden_agent_invisible_then_revealed(env_id, fact, prior, action, seed):
    env = gym.make(env_id, hidden_prior=prior, cue_prob=0.0).unwrapped
    obs, info = env.reset(seed=seed)
    assert not info["visible"][fact], "the hidden agent must not be visible in the occluded view"
    assert info["visible_pixels"][fact] == 0
    # by pixels: the occluded frame is the same with and without the hidden agent
    start = env.snapshot()
    empty_obs, _ = env.restore(_without(env, start, fact))
    np.testing.assert_array_equal(obs["image"], empty_obs["image"])

    env.restore(start)
    k, seen_obs, seen_snap = _first_visible(env, action, fact)
    assert k is not None, f"{fact} never became visible after {action}"
    # by pixels: at the revealing frame the agent changes the picture
    no_agent_obs, _ = env.restore(_without(env, seen_snap, fact))
    changed = np.any(seen_obs["image"] != no_agent_obs["image"], axis=-1).sum()
    assert changed >= env.config.min_visible_pixels


@pytest.mark.parametrize("seed", SEEDS)
def test_crosswalk_waiting_far_away_reveals_nothing(seed):
    """The pedestrian is revealed by moving closer, not by time: a waiting car never sees one."""
    env = gym.make("genex/OccludedCrosswalk-v0", hidden_prior=1.0, cue_prob=0.0).unwrapped
    env.reset(seed=seed)
    wait = env.action_names.index("wait")
    for _ in range(40):
        _, _, _, _, info = env.step(wait)
        assert not info["visible"]["pedestrian"]


@pytest.mark.parametrize("seed", SEEDS)
def test_peeking_reveals_the_crossing_pedestrian_sooner_than_waiting(seed):
    make = lambda: gym.make("genex/StoppedLeadCar-v0", hidden_prior=(1.0, 0.0, 0.0)).unwrapped  # noqa: E731
    env = make()
    env.reset(seed=seed)
    k_peek, _, _ = _first_visible(env, "overtake", "pedestrian")
    env = make()
    env.reset(seed=seed)
    k_wait, _, _ = _first_visible(env, "wait", "pedestrian")
    assert k_peek is not None and (k_wait is None or k_peek < k_wait)


def test_feet_cue_shows_legs_under_the_truck():
    """With the 'feet' cue, some frames show the pedestrian under the truck before he steps out."""
    env = gym.make("genex/OccludedCrosswalk-v0", hidden_prior=1.0, cue_prob=1.0).unwrapped
    found = 0
    for seed in range(12):
        _, info = env.reset(seed=seed)
        if info["hidden"]["cue"] != "feet":
            continue
        for _ in range(30):
            _, _, term, trunc, info = env.step(env.action_names.index("creep"))
            ped_y = float(env.world_state.agents.y[env.scenario.slot("pedestrian")])
            if info["visible_pixels"]["pedestrian"] > 0 and ped_y < -6.0:
                found += 1
                break
            if term or trunc:
                break
    assert found >= 1


@pytest.mark.parametrize("env_id", ["genex/OccludedCrosswalk-v0", "genex/StoppedLeadCar-v0", "genex/OccludedLeftTurn-v0"])
def test_first_exploration_action_reveals_the_hidden_agent(env_id):
    prior = {"genex/StoppedLeadCar-v0": (1.0, 0.0, 0.0)}.get(env_id, 1.0)
    fact = {"genex/OccludedLeftTurn-v0": "oncoming_vehicle"}.get(env_id, "pedestrian")
    for seed in SEEDS:
        env = gym.make(env_id, hidden_prior=prior, cue_prob=0.0).unwrapped
        env.reset(seed=seed)
        assert env.exploration_actions and set(env.exploration_actions) <= set(env.action_names)
        k, _, _ = _first_visible(env, env.exploration_actions[0], fact)
        assert k is not None
